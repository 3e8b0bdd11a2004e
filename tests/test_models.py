"""The model registry, parameter counts and shapes, parametrised over every kind (as timm does)."""

from __future__ import annotations

import pytest
import torch

from lutfuse_deploy import MODEL_KINDS
from lutfuse_deploy.models import MODELS, LutFuseConfig, create_model
from lutfuse_deploy.models.lut import analytic_lutfuse, quadrilinear

PARAMS = {"mmdrfuse-student": 113, "mmdrfuse-teacher": 556_489}


def test_registry_matches_kinds() -> None:
    assert tuple(MODELS) == MODEL_KINDS


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_forward_shapes(kind: str) -> None:
    model = create_model(kind).eval()
    c = 3 if kind == "lutfuse" else 1
    with torch.no_grad():
        out = model(torch.rand(2, 1, 32, 48) * 255, torch.rand(2, c, 32, 48) * 255)
    assert out.shape == (2, c, 32, 48)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("kind,count", PARAMS.items())
def test_mmdrfuse_parameter_counts(kind: str, count: int) -> None:
    assert sum(p.numel() for p in create_model(kind).parameters()) == count


def test_lutfuse_official_layout_sizes() -> None:
    model = create_model("lutfuse")
    assert sum(p.numel() for p in model.context.parameters()) == 7_825
    assert model.lut.shape == (16, 16, 16, 16)
    assert create_model("lutfuse", {"nodes": 17}).lut.shape == (17, 17, 17, 17)


@pytest.mark.parametrize("bad", [{"nodes": 15}, {"context_scale": 0}, {"context_scale": 1.5}, {"cse_width": 0}])
def test_bad_lutfuse_config_is_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        LutFuseConfig(**bad)


def test_quadrilinear_reproduces_a_multilinear_table_exactly() -> None:
    """A table that is linear in every axis is interpolated exactly anywhere inside the lattice."""
    n = 16
    idx = torch.arange(n, dtype=torch.float64)
    y, g, c, i = torch.meshgrid(idx, idx, idx, idx, indexing="ij")
    table = 0.5 * y - 0.25 * g + 2.0 * c + 0.125 * i + 0.01 * y * c
    coords = [torch.rand(1, 1, 8, 8, dtype=torch.float64) * 14.999 for _ in range(4)]
    want = 0.5 * coords[0] - 0.25 * coords[1] + 2.0 * coords[2] + 0.125 * coords[3] + 0.01 * coords[0] * coords[2]
    assert torch.allclose(quadrilinear(table, coords), want, atol=1e-10)


def test_lookup_above_top_node_reads_a_flat_cell() -> None:
    """Official semantics: raw intensity >= 240 reads the last node (hi is clamped to 15)."""
    table = torch.arange(16, dtype=torch.float32).reshape(16, 1, 1, 1).expand(16, 16, 16, 16).contiguous()
    xs = [torch.full((1, 1, 1, 1), v) for v in (15.5, 3.0, 3.0, 3.0)]
    assert quadrilinear(table, xs).item() == pytest.approx(15.0)


def test_analytic_model_takes_the_brighter_source_in_flat_regions() -> None:
    model = analytic_lutfuse()
    ir = torch.full((1, 1, 16, 16), 200.0)
    vi = torch.full((1, 3, 16, 16), 40.0)
    with torch.no_grad():
        out = model(ir, vi)
    # flat visible inside (zero padding makes the border an edge) -> g = 0 -> Y = max(y, ir) = 200/255;
    # the table is linear in ir between nodes 12 and 13, so the lookup is exact; chroma is neutral.
    assert out[..., 2:-2, 2:-2].min().item() == pytest.approx(200 / 255, abs=1e-5)
    assert out[..., 2:-2, 2:-2].max().item() == pytest.approx(200 / 255, abs=1e-5)
