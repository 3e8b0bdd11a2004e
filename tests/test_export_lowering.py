"""The LUT lowerings (torch only, no ONNX): both reproduce ``quadrilinear``; the atlas layout, its
2^k padding and the GridSample opset rules; the export module equals the eager model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from lutfuse_deploy.errors import ExportError
from lutfuse_deploy.export import lowering
from lutfuse_deploy.export.graph import LutFuseGraph, RobustInstanceNorm, SingleOutputConv3x3, graph_module
from lutfuse_deploy.export.parity import to_uint8 as parity_to_uint8
from lutfuse_deploy.models.lut import LutFuseConfig, analytic_lutfuse, analytic_table, quadrilinear
from lutfuse_deploy.runtime.torch import to_uint8


def _coords(n: int, shape=(2, 1, 24, 40), seed: int = 0) -> list[torch.Tensor]:
    """Random in-range coordinates plus the awkward ones: integers, 0, and just below n (the model's
    clamp); ``_lookup`` clamps them to [0, n - 1] as the export graph does before its lookup."""
    g = torch.Generator().manual_seed(seed)
    top = n - 1 + 0.999999
    coords = [torch.rand(shape, generator=g) * top for _ in range(4)]
    for c in coords:
        c[0, 0, 0, :n] = torch.arange(n, dtype=torch.float32)
        c[0, 0, 1, :] = top
        c[0, 0, 2, :] = 0.0
    return coords


def _lookup(table: torch.Tensor, name: str, coords: list[torch.Tensor]) -> torch.Tensor:
    n = table.shape[0]
    return lowering.make_lookup(table, name)([torch.clamp(c, 0.0, n - 1.0) for c in coords])


@pytest.mark.parametrize("nodes", [16, 17])
@pytest.mark.parametrize("name", lowering.LOWERINGS)
def test_lowering_matches_quadrilinear(nodes: int, name: str) -> None:
    table = analytic_table(LutFuseConfig(nodes=nodes)) * 4.0 - 1.0  # spans beyond [0, 1] like the official one
    coords = _coords(nodes)
    want = quadrilinear(table.double(), [c.double() for c in coords])
    got = _lookup(table, name, coords)
    assert got.shape == coords[0].shape
    assert float((got.double() - want).abs().max()) <= 1e-5


def test_gather_lowering_is_exact_on_a_rough_table() -> None:
    table = torch.randn(16, 16, 16, 16, generator=torch.Generator().manual_seed(1)) * 3
    coords = _coords(16, seed=2)
    want = quadrilinear(table.double(), [c.double() for c in coords])
    assert float((_lookup(table, "gather", coords).double() - want).abs().max()) <= 5e-6


@pytest.mark.parametrize("nodes,side", [(16, 256), (17, 512)])
def test_atlas_is_padded_to_a_power_of_two(nodes: int, side: int) -> None:
    table = torch.randn(nodes, nodes, nodes, nodes)
    atlas = lowering.build_atlas(table)
    assert lowering.atlas_side(nodes) == side and atlas.shape == (1, 4, side, side)
    # layout: rows (y, g), columns (c, ir); channel 2*dy + dc holds the (y + dy, c + dc) corner
    y, g, c, i = 3, 5, nodes - 2, 7
    for dy in (0, 1):
        for dc in (0, 1):
            assert atlas[0, 2 * dy + dc, y * nodes + g, c * nodes + i] == table[y + dy, g, c + dc, i]
    # the upper corner is clamped at the last node
    top = nodes - 1
    assert atlas[0, 3, top * nodes + g, top * nodes + i] == table[top, g, top, i]
    # replicated edge: the padding repeats the last row and column
    assert torch.equal(atlas[0, :, -1, : nodes * nodes], atlas[0, :, nodes * nodes - 1, : nodes * nodes])
    assert torch.equal(atlas[0, :, :, -1], atlas[0, :, :, nodes * nodes - 1])


def test_corner_table_clamps_the_upper_corner() -> None:
    table = torch.arange(16.0**4).reshape(16, 16, 16, 16)
    corners = lowering.corner_table(table)
    assert corners.shape == (16**4, 16)
    last = 16**4 - 1  # cell (15, 15, 15, 15): every corner is the cell itself
    assert torch.all(corners[last] == table[15, 15, 15, 15])
    assert corners[0, 0b0001] == table[0, 0, 0, 1] and corners[0, 0b1000] == table[1, 0, 0, 0]


def test_gridsample_opset_rules() -> None:
    assert lowering.gridsample_opset_problem(15) is not None
    for opset in (16, 17, 18, 19):
        assert lowering.gridsample_opset_problem(opset) is None
    assert "nearest" in (lowering.gridsample_opset_problem(20) or "")
    with pytest.raises(ExportError):
        lowering.make_lookup(torch.zeros(16, 16, 16, 16), "trilinear")


def test_robust_instance_norm_equals_torch_and_is_accurate_on_offset_data() -> None:
    norm = torch.nn.InstanceNorm2d(4, affine=True)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.5, -0.5, 2.0, 0.1]))
        norm.bias.copy_(torch.tensor([0.2, 7.0, -3.0, 0.0]))
    g = torch.Generator().manual_seed(0)
    x = 3e4 + 200 * torch.randn(2, 4, 96, 128, generator=g).cumsum(3) / 30  # large mean, small spread
    with torch.no_grad():
        want = torch.nn.functional.instance_norm(x.double(), weight=norm.weight.double(), bias=norm.bias.double(),
                                                 eps=norm.eps)
        got = RobustInstanceNorm(norm)(x)
    assert float((got.double() - want).abs().max()) <= 2e-5


@pytest.mark.parametrize("name", lowering.LOWERINGS)
def test_graph_module_equals_the_eager_model(name: str) -> None:
    model = analytic_lutfuse(seed=3)
    g = torch.Generator().manual_seed(4)
    ir = torch.randint(0, 256, (1, 1, 40, 56), generator=g).float()
    vi = torch.randint(0, 256, (1, 3, 40, 56), generator=g).float()
    with torch.inference_mode():
        want = model(ir, vi)
        got = LutFuseGraph(model, name)(ir, vi)
        got_u8 = graph_module(model, name, "uint8")(ir.to(torch.uint8), vi.to(torch.uint8))
    assert float((got - want).abs().max()) <= 1e-4
    assert got_u8.dtype == torch.uint8
    assert int((got_u8.int() - torch.from_numpy(to_uint8(want.numpy())).int()).abs().max()) <= 1


def test_context_scale_must_be_one_over_an_integer() -> None:
    with pytest.raises(ExportError, match="1/k"):
        LutFuseGraph(analytic_lutfuse(LutFuseConfig(context_scale=0.3)), "gather")


def test_parity_uint8_convention_is_the_runtime_one() -> None:
    x = np.random.default_rng(0).normal(0.5, 0.6, size=(2, 3, 17, 19)).astype(np.float32)
    x[0, 0, 0, :4] = [0.5 / 255, 1.5 / 255, -0.1, 1.2]  # ties and out-of-range values
    assert np.array_equal(parity_to_uint8(x), to_uint8(x))


def test_single_output_conv_equals_the_conv_it_replaces() -> None:
    conv = torch.nn.Conv2d(16, 1, 3, padding=1).double()
    rewritten = SingleOutputConv3x3(copy.deepcopy(conv)).double()
    x = torch.randn(2, 16, 13, 17, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert float((rewritten(x) - conv(x)).abs().max()) <= 1e-12  # the border (zero padding) included
    with pytest.raises(ExportError, match="head"):
        SingleOutputConv3x3(torch.nn.Conv2d(16, 2, 3, padding=1))
