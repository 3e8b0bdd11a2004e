"""``check-onnx``: is a graph valid ONNX, and will TensorRT (or ONNX Runtime) take it as meant?

One small ``check_*`` function per concern; each raises ExportError on a failure and may return a
note (a warning that does not fail the verdict). ``run_checks`` collects them into a verdict table;
``structural_problems`` is what export runs before its temporary file is renamed into place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lutfuse_deploy.errors import ExportError, InputError, MissingDependency

TARGETS = ("tensorrt", "onnxruntime", "openvino")  # every backend that runs an .onnx, and TensorRT's parser
# Operators marked supported in onnx/onnx-tensorrt docs/operators.md (TensorRT 10.x, opsets 9-24).
TENSORRT_OPS = frozenset({
    "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh",
    "Attention", "AveragePool", "BatchNormalization", "BlackmanWindow", "Cast", "CastLike", "Ceil", "Celu",
    "Clip", "Concat", "Constant", "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "Cosh", "CumSum",
    "DeformConv", "DepthToSpace", "DequantizeLinear", "Div", "Dropout", "Einsum", "Elu", "Equal", "Erf",
    "Exp", "Expand", "EyeLike", "Flatten", "Floor", "Gather", "GatherElements", "GatherND", "Gelu", "Gemm",
    "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "Greater", "GreaterOrEqual", "GridSample",
    "GroupNormalization", "GRU", "HammingWindow", "HannWindow", "HardSigmoid", "HardSwish", "Hardmax",
    "Identity", "If", "ImageScaler", "InstanceNormalization", "IsInf", "IsNaN", "LayerNormalization",
    "LeakyRelu", "Less", "LessOrEqual", "Log", "LogSoftmax", "Loop", "LRN", "LSTM", "LpNormalization",
    "LpPool", "MatMul", "Max", "MaxPool", "Mean", "MeanVarianceNormalization", "Min", "Mish", "Mod", "Mul",
    "Neg", "NonMaxSuppression", "NonZero", "Not", "OneHot", "Or", "Pad", "ParametricSoftplus", "Pow",
    "PRelu", "QuantizeLinear", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
    "Range", "Reciprocal", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
    "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare", "Relu", "Reshape", "Resize",
    "ReverseSequence", "RMSNormalization", "RNN", "RoiAlign", "RotaryEmbedding", "Round", "STFT",
    "ScaledTanh", "Scan", "Scatter", "ScatterElements", "ScatterND", "Selu", "Shape", "Shrink", "Sigmoid",
    "Sign", "Sin", "Sinh", "Size", "Slice", "Softmax", "Softplus", "Softsign", "SpaceToDepth", "Split",
    "Sqrt", "Squeeze", "Sub", "Sum", "Tan", "Tanh", "TensorScatter", "ThresholdedRelu", "Tile", "TopK",
    "Transpose", "Trilu", "Unsqueeze", "Upsample", "Where", "Xor",
})
TENSORRT_RESIZE_MODES = ("nearest", "linear")  # documented; "cubic" exists as kCUBIC since TensorRT 8.6
TENSORRT_RESIZE_TRANSFORMS = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric",
                              "align_corners")
INT32_MAX = 2**31 - 1
_UINT8, _INT64, _DOUBLE = 2, 7, 11  # onnx.TensorProto element types


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # "pass", "warn" or "fail"
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _attr(node: Any, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return a.s.decode() if a.type == a.STRING else a.i if a.type == a.INT else a
    return default


def opset_of(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _ranks(model: Any) -> dict[str, int]:
    g = model.graph
    return {v.name: len(v.type.tensor_type.shape.dim) for v in (*g.input, *g.value_info, *g.output)
            if v.type.tensor_type.HasField("shape")}


def _elem_types(model: Any) -> dict[str, int]:
    g = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.value_info, *g.output)}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


# -- checks ----------------------------------------------------------------------------------------
def check_model(model: Any) -> str | None:
    import onnx

    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"onnx.checker: {str(exc).strip().splitlines()[0]}") from None
    return None


def check_shape_inference(model: Any) -> Any:
    """Strict shape inference; returns the inferred model for the checks that need ranks and types."""
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises InferenceError, ValidationError, RuntimeError
        raise ExportError(f"shape inference: {str(exc).strip().splitlines()[0][:300]}") from None


def check_io_contract(model: Any) -> str | None:
    g = model.graph
    inits = {i.name for i in g.initializer}
    names = [i.name for i in g.input if i.name not in inits]
    outs = [o.name for o in g.output]
    if names != ["ir", "vi"] or outs != ["fused"]:
        raise ExportError(f"expected inputs ir, vi and output fused, got inputs {names} and outputs {outs}")
    ranks = _ranks(model)
    bad = [n for n in (*names, *outs) if ranks.get(n) != 4]
    if bad:
        raise ExportError(f"{', '.join(bad)} must be rank 4 (N x C x H x W)")
    return None


def check_tensorrt_ops(model: Any) -> str | None:
    bad = sorted({n.op_type for n in model.graph.node
                  if n.domain not in ("", "ai.onnx") or n.op_type not in TENSORRT_OPS})
    if bad:
        raise ExportError(f"not on TensorRT's ONNX operator list: {', '.join(bad)}")
    return None


def check_gridsample(model: Any, allow_opset_override: bool = False) -> str | None:
    """Rank-4 only, opset 16-19 mode names only (TensorRT's parser misreads the opset 20+ names)."""
    nodes = [n for n in model.graph.node if n.op_type == "GridSample"]
    if not nodes:
        return None
    from lutfuse_deploy.export import lowering  # imports torch: only for graphs that have GridSample

    ranks, problems = _ranks(model), []
    opset_problem = lowering.gridsample_opset_problem(opset_of(model))
    waived = allow_opset_override and opset_of(model) >= lowering.GRIDSAMPLE_TENSORRT_OPSETS.stop
    for n in nodes:
        rank = ranks.get(n.input[0]) or (ranks.get(n.input[1]) if len(n.input) > 1 else None)
        if rank != lowering.GRIDSAMPLE_RANK:
            problems.append(f"{n.name or 'GridSample'} has rank {rank or 'unknown'} (TensorRT: rank 4 only)")
        mode = _attr(n, "mode", "bilinear")
        if mode not in lowering.GRIDSAMPLE_TENSORRT_MODES and not waived:
            problems.append(f"{n.name or 'GridSample'} mode {mode!r} is not an opset 16-19 mode name")
    if opset_problem and not waived:
        problems.append(opset_problem)
    if problems:
        raise ExportError("; ".join(problems))
    return f"{len(nodes)} rank-4 GridSample node(s) at opset {opset_of(model)}"


def check_resize(model: Any) -> str | None:
    notes = []
    for n in model.graph.node:
        if n.op_type != "Resize":
            continue
        transform = _attr(n, "coordinate_transformation_mode", "half_pixel")
        if transform not in TENSORRT_RESIZE_TRANSFORMS:
            raise ExportError(f"Resize transformation {transform!r} is not supported by TensorRT")
        if _attr(n, "antialias", 0):
            raise ExportError("Resize with antialias is not supported by TensorRT")
        mode = _attr(n, "mode", "nearest")
        if mode not in TENSORRT_RESIZE_MODES:
            notes.append(f"Resize mode {mode!r} is not in the documented list (needs TensorRT >= 8.6)")
    return "; ".join(notes) or None


def check_reduce_axes(model: Any) -> str | None:
    """From opset 18 reduction axes are an input; TensorRT needs them constant."""
    consts = {t.name for t in model.graph.initializer}
    consts |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    bad = [n.name or n.op_type for n in model.graph.node
           if n.op_type.startswith("Reduce") and len(n.input) > 1 and n.input[1] and n.input[1] not in consts]
    if bad:
        raise ExportError(f"reduction axes must be constants for TensorRT: {', '.join(bad)}")
    return None


def check_types(model: Any) -> str | None:
    """uint8 only at the graph's edges, int64 within int32 range (TensorRT narrows), no float64."""
    import onnx.numpy_helper as nh

    g = model.graph
    types = _elem_types(model)
    edges = {v.name for v in (*g.input, *g.output)}
    inner_u8 = sorted(t for t, e in types.items() if e == _UINT8 and t not in edges)
    if inner_u8:
        raise ExportError(f"uint8 tensors inside the graph (TensorRT: uint8 only at inputs/outputs): {inner_u8[:3]}")
    if any(e == _DOUBLE for e in types.values()):
        raise ExportError("float64 tensors (TensorRT has no float64): re-export the model with this version's "
                          "`lutfuse-deploy export`, whose graphs are float32 only")
    for t in g.initializer:
        if t.data_type == _INT64 and t.dims and nh.to_array(t).size and abs(nh.to_array(t)).max() > INT32_MAX:
            raise ExportError(f"int64 initializer {t.name} exceeds the int32 range TensorRT narrows to")
    n64 = sum(1 for e in types.values() if e == _INT64)
    return f"{n64} int64 tensor(s) (shape arithmetic; TensorRT narrows them to int32)" if n64 else None


def check_dynamic_dims(model: Any) -> str | None:
    dyn = []
    for v in model.graph.input:
        for i, d in enumerate(v.type.tensor_type.shape.dim):
            if not d.HasField("dim_value"):
                dyn.append(f"{v.name}[{i}]={d.dim_param or '?'}")
    return f"dynamic {', '.join(dyn)}: build TensorRT with a shape profile (min/opt/max)" if dyn else None


def check_ort_session(path: Path) -> str | None:
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependency("onnxruntime", "onnx") from None
    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph/NotImplemented types
        raise ExportError(f"onnxruntime cannot load it: {str(exc).strip().splitlines()[0][:300]}") from None
    return None


def check_openvino_compile(path: Path) -> str | None:
    """OpenVINO reads the graph and compiles it for the CPU, as ``fuse --backend openvino`` will."""
    try:
        import openvino
    except ImportError:
        raise MissingDependency("openvino", "openvino") from None
    try:
        openvino.Core().compile_model(openvino.Core().read_model(str(path)), "CPU")
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses per frontend
        raise ExportError(f"openvino cannot compile it: {str(exc).strip().splitlines()[0][:300]}") from None
    return None


# -- drivers ---------------------------------------------------------------------------------------
def _run(name: str, fn: Callable[[], Any], results: list[CheckResult]) -> Any:
    try:
        value = fn()
    except ExportError as exc:
        results.append(CheckResult(name, "fail", str(exc)))
        return None
    note = value if isinstance(value, str) else ""
    results.append(CheckResult(name, "warn" if note and name in _WARN_ON_NOTE else "pass", note))
    return value


_WARN_ON_NOTE = frozenset({"resize", "dynamic dims", "types"})


def run_checks(path: str | Path, target: str = "tensorrt") -> list[CheckResult]:
    """Every check for ``target``; a check that cannot run (e.g. no shapes) is reported as failed."""
    if target not in TARGETS:
        raise InputError(f"unknown target {target!r}: choose one of {', '.join(TARGETS)}")
    try:
        import onnx
    except ImportError:
        raise MissingDependency("onnx", "onnx") from None
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    try:
        model = onnx.load(str(p))
    except Exception as exc:  # noqa: BLE001 - protobuf DecodeError and friends
        raise InputError(f"{p}: not a readable ONNX model ({type(exc).__name__})") from None
    results: list[CheckResult] = []
    _run("onnx.checker", lambda: check_model(model), results)
    inferred = _run("shape inference", lambda: check_shape_inference(model), results)
    graph = inferred if inferred is not None else model
    _run("io contract", lambda: check_io_contract(graph), results)
    if target == "tensorrt":
        _run("tensorrt operators", lambda: check_tensorrt_ops(graph), results)
        _run("gridsample", lambda: check_gridsample(graph), results)
        _run("resize", lambda: check_resize(graph), results)
        _run("reduce axes", lambda: check_reduce_axes(graph), results)
        _run("types", lambda: check_types(graph), results)
        _run("dynamic dims", lambda: check_dynamic_dims(graph), results)
    elif target == "onnxruntime":
        _run("onnxruntime session", lambda: check_ort_session(p), results)
    else:
        _run("openvino compile", lambda: check_openvino_compile(p), results)
    return results


def structural_problems(model: Any, target: str = "tensorrt", allow_opset_override: bool = False) -> list[str]:
    """The failures export must not write past (warnings are left to ``check-onnx``)."""
    problems = []
    checks: list[Callable[[Any], Any]] = [check_model, check_io_contract]
    if target == "tensorrt":
        checks += [check_tensorrt_ops, check_reduce_axes, check_types]
    try:
        inferred = check_shape_inference(model)
    except ExportError as exc:
        return [str(exc)]
    for fn in checks:
        try:
            fn(inferred)
        except ExportError as exc:
            problems.append(str(exc))
    try:
        check_gridsample(inferred, allow_opset_override)
    except ExportError as exc:
        problems.append(str(exc))
    return problems
