"""export/ refusals at both sides of each boundary, and the uint8 rounding convention (half to even,
never truncation) of the uint8 graph, the parity reference and the torch runner, on exact inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lutfuse_deploy.errors import ExportError
from lutfuse_deploy.export import checks, parity
from lutfuse_deploy.export.graph import Uint8Io
from lutfuse_deploy.export.onnx import MIN_OPSET, _max_opset, validate_options
from lutfuse_deploy.runtime import torch as torch_runtime


def _ties(dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``x`` on [0, 1] whose ``x * 255`` is exactly k + 0.5 in ``dtype``, and round-half-even of it."""
    k = np.arange(255)
    x = ((k + 0.5) / 255.0).astype(dtype)
    exact = (x * dtype(255.0)) == (k + 0.5)
    assert exact[::2].sum() >= 20 and exact[1::2].sum() >= 20  # even and odd k: ties to both sides
    k = k[exact]
    return x[exact], np.where(k % 2 == 0, k, k + 1).astype(np.uint8)


# 0.75 -> 1 (not truncated), 254.6 -> 255, over 1 and below 0 clamp
NON_TIES = (np.array([0.75, 3.25, 254.6, 300.0, -4.0]) / 255.0, np.array([1, 3, 255, 255, 0], np.uint8))


def test_uint8_graph_rounds_half_to_even_and_never_truncates():
    class Fixed(torch.nn.Module):
        def __init__(self, values: np.ndarray) -> None:
            super().__init__()
            self.values = torch.from_numpy(values.astype(np.float32))

        def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
            return self.values

    x, want = _ties(np.float32)
    dummy = torch.zeros(1, dtype=torch.uint8)
    assert Uint8Io(Fixed(x))(dummy, dummy).numpy().tolist() == want.tolist()
    x, want = NON_TIES
    got = Uint8Io(Fixed(x))(dummy, dummy)
    assert got.dtype == torch.uint8 and got.numpy().tolist() == want.tolist()


@pytest.mark.parametrize("to_uint8", [parity.to_uint8, torch_runtime.to_uint8], ids=["parity", "torch-runner"])
def test_numpy_uint8_conventions_round_half_to_even(to_uint8):
    for dtype in (np.float32, np.float64):
        x, want = _ties(dtype)
        assert to_uint8(x).tolist() == want.tolist()
    x, want = NON_TIES
    got = to_uint8(x)
    assert got.dtype == np.uint8 and got.tolist() == want.tolist()


def _validate(opset=17, height=None, width=None, dynamic=True, multiple=1, kind="mmdrfuse-student"):
    return validate_options(kind, opset, "gather", "float", height, width, dynamic, multiple, False)


def test_opset_range_is_inclusive_at_both_ends():
    top = _max_opset()
    assert _validate(opset=MIN_OPSET) is None and _validate(opset=top) is None
    for bad in (MIN_OPSET - 1, top + 1):
        with pytest.raises(ExportError, match=f"opset {bad} is not supported"):
            _validate(opset=bad)


@pytest.mark.parametrize(("hw", "ok"), [((3, 3), True), ((2, 3), False), ((3, 2), False), ((480, 640), True)])
def test_static_size_at_least_3x3(hw, ok):
    if ok:
        assert _validate(height=hw[0], width=hw[1], dynamic=False) == hw
    else:
        with pytest.raises(ExportError, match="smaller than 3x3"):
            _validate(height=hw[0], width=hw[1], dynamic=False)


@pytest.mark.parametrize(("hw", "ok"), [((4, 6), True), ((4, 5), False), ((5, 4), False)])
def test_static_size_multiple_checked_on_both_axes(hw, ok):
    if ok:
        assert _validate(height=hw[0], width=hw[1], dynamic=False, multiple=2) == hw
    else:
        with pytest.raises(ExportError, match="multiples of 2"):
            _validate(height=hw[0], width=hw[1], dynamic=False, multiple=2)


@pytest.mark.parametrize(("h", "w"), [(64, None), (None, 64)])
def test_height_and_width_come_together(h, w):
    with pytest.raises(ExportError, match="give both --height and --width"):
        _validate(height=h, width=w, dynamic=False)
    with pytest.raises(ExportError, match="exclude each other"):
        _validate(height=64, width=64, dynamic=True)


@pytest.mark.parametrize(("value", "ok"), [(2**31 - 1, True), (-(2**31 - 1), True), (2**31, False), (-(2**31), False)])
def test_int64_initializers_must_fit_int32(value, ok):
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    k = numpy_helper.from_array(np.array([value], np.int64), "k")
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y], [k])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if ok:
        checks.check_types(model)
    else:
        with pytest.raises(ExportError, match="exceeds the int32 range"):
            checks.check_types(model)
