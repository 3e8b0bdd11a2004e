"""Precision plans per TensorRT major, and which nodes the FP32 guard keeps."""

from __future__ import annotations

from typing import Any

import pytest

from lutfuse_deploy.engines.precision import GraphNode, fp32_guard, plan_precision
from lutfuse_deploy.engines.targets import load_target
from lutfuse_deploy.errors import EngineError, InputError

NX = load_target("orin-nx")


def plan(precision: str, major: int = 10, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "has_lookup": True,
        "onnx_has_qdq": False,
        "onnx_has_fp16": False,
        "have_calibration": False,
    }
    args.update(kw)
    return plan_precision(precision, major, NX, **args)


def test_trt10_plans() -> None:
    p = plan("fp32")
    assert (p.builder_flags, p.no_tf32, p.pin_fp32, p.strongly_typed) == ((), True, False, False)
    p = plan("fp16")
    assert p.builder_flags == ("FP16", "OBEY_PRECISION_CONSTRAINTS") and p.pin_fp32 and not p.no_tf32
    assert plan("fp16", has_lookup=False).builder_flags == ("FP16",)
    p = plan("int8", have_calibration=True)
    assert p.builder_flags == ("INT8", "OBEY_PRECISION_CONSTRAINTS") and p.calibrator and not p.qdq
    p = plan("int8", onnx_has_qdq=True)  # explicit quantisation needs no calibration data
    assert p.qdq and not p.calibrator and not p.insert_qdq
    p = plan("int8", qdq=True, have_calibration=True)
    assert p.qdq and p.insert_qdq and not p.calibrator
    assert plan("best", have_calibration=True).builder_flags == ("FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS")
    assert plan("fp16").flags == ["FP16", "OBEY_PRECISION_CONSTRAINTS", "FP32_LOOKUP"]
    p = plan("fp16", onnx_has_fp16=True)  # an AutoCast model: strongly typed, no flags, no pinning
    assert p.strongly_typed and p.builder_flags == () and not p.pin_fp32 and p.flags == ["STRONGLY_TYPED"]


def test_trt11_plans_are_strongly_typed_without_builder_flags() -> None:
    p = plan("fp16", 11)
    assert p.strongly_typed and p.builder_flags == () and p.autocast_fp16 and p.pin_fp32
    assert not plan("fp16", 11, onnx_has_fp16=True).autocast_fp16  # already mixed precision
    p = plan("int8", 11, qdq=True, have_calibration=True)
    assert p.insert_qdq and p.qdq and not p.calibrator
    assert plan("int8", 11, onnx_has_qdq=True).qdq
    assert plan("fp32", 11).no_tf32


@pytest.mark.parametrize(
    ("precision", "major", "kw", "needle"),
    [
        ("int8", 11, {"have_calibration": True}, "TensorRT 11 has no INT8 calibrator"),
        ("best", 11, {}, "TensorRT 11 removed --best"),
        ("int8", 11, {"qdq": True}, "--qdq needs calibration data"),
        ("int8", 10, {}, "int8 needs calibration data"),
        ("int8", 10, {"qdq": True}, "--qdq needs calibration data"),
        ("fp16", 12, {}, "TensorRT 12 is not supported"),
        ("fp16", 10, {"dla_core": 2, "has_lookup": False}, "DLA cores 0..1, not 2"),
        ("fp32", 10, {"dla_core": 0, "has_lookup": False}, "the DLA runs fp16 or int8 only"),
        ("fp16", 10, {"dla_core": 0, "onnx_ops": frozenset({"GridSample"})}, "cannot run GridSample"),
    ],
)
def test_refusals(precision: str, major: int, kw: dict[str, Any], needle: str) -> None:
    with pytest.raises(EngineError) as err:
        plan(precision, major, **kw)
    assert needle in str(err.value)


def test_unknown_precision_and_qdq_misuse_are_input_errors() -> None:
    with pytest.raises(InputError, match="unknown precision 'fp8'"):
        plan("fp8")
    with pytest.raises(InputError, match="--qdq only applies"):
        plan("fp16", qdq=True, have_calibration=True)


def test_guard_keeps_lookup_colour_and_grid_math_but_not_the_heavy_ops() -> None:
    n = GraphNode
    nodes = [
        n("conv1", "Conv", ("x",), ("c1",)),
        n("norm", "InstanceNormalization", ("c1",), ("c2",)),
        n("conv2", "Conv", ("c2",), ("c3",)),
        n("sig", "Sigmoid", ("c3",), ("ctx",)),
        n("sobel", "Conv", ("y",), ("g",)),
        n("mag", "Sqrt", ("g",), ("m",)),
        n("minmax", "ReduceMax", ("m",), ("mx",)),
        n("div", "Div", ("m", "mx"), ("gn",)),
        n("luma", "ReduceSum", ("vi",), ("y",)),
        n("grid", "Concat", ("ctx", "gn", "y"), ("gr",)),
        n("lookup", "GridSample", ("atlas", "gr"), ("l",)),
        n("chroma", "Sub", ("vi", "y"), ("cbcr",)),
        n("rgb", "Add", ("l", "cbcr"), ("fused",)),
        n("unrelated", "Relu", ("x",), ("r",)),
    ]
    kept = fp32_guard(nodes)
    assert kept == ["sig", "mag", "minmax", "div", "luma", "grid", "lookup", "chroma", "rgb"]
    assert fp32_guard([x for x in nodes if x.op != "GridSample"]) == []


def test_autocast_node_patterns_match_exactly_one_name() -> None:
    import re

    from lutfuse_deploy.engines.precision import exact_name_patterns

    names = ["/lookup/Add_1", "/ctx/norm.0/Mul", "a+b"]
    patterns = exact_name_patterns(names)
    others = ["/lookup/Add_10", "x/lookup/Add_1", "/ctx/normX0/Mul", "aab"]
    for name, pattern in zip(names, patterns):
        assert re.match(pattern, name)  # AutoCast applies them with re.match
        assert not any(re.match(pattern, other) for other in others), pattern


def test_dla_on_tensorrt_11_for_agx_orin_on_jetpack_7() -> None:
    """TensorRT 11.4 brings the DLA to AGX Orin (JetPack 7.2.2+): FP16 through AutoCast, on DLA core 1."""
    jp7 = load_target("agx-orin-jp7")
    p = plan_precision("fp16", 11, jp7, has_lookup=False, onnx_has_qdq=False, onnx_has_fp16=False,
                       have_calibration=False, dla_core=1, onnx_ops=frozenset({"Conv", "Tanh"}))
    assert p.strongly_typed and p.autocast_fp16
