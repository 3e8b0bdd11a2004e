"""``onnx_to_engine``: an .onnx in, a serialized TensorRT engine out (TensorRT 10 and 11 Python API).

A plain function: paths and a precision plan in, a path and what was done out; no hidden state.
The builder gets an optimisation profile over the H x W range (batch 1), a workspace limit, and a
timing cache that is loaded before and saved after every build (same file across builds of a
target, so later builds skip tactic timing). Every ONNX parser error is reported, not only the first.
On TensorRT 10, reduced precision comes from builder flags, and the lookup/colour layers are pinned
to FP32 with per-layer precision + OBEY_PRECISION_CONSTRAINTS; on TensorRT 11 the network is
strongly typed and precision was decided in the ONNX (AutoCast / Q/DQ) before this function runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from lutfuse_deploy.engines.precision import GraphNode, PrecisionPlan, fp32_guard
from lutfuse_deploy.engines.targets import ShapeProfile
from lutfuse_deploy.errors import EngineError, MissingDependency
from lutfuse_deploy.io.files import atomic_path, write_bytes_atomic

if TYPE_CHECKING:
    import tensorrt as trt

# TensorRT layer types named as the ONNX ops the guard rules speak of.
_LAYER_OPS = {
    "GRID_SAMPLE": "GridSample",
    "CONVOLUTION": "Conv",
    "DECONVOLUTION": "ConvTranspose",
    "MATRIX_MULTIPLY": "MatMul",
    "NORMALIZATION": "InstanceNormalization",
    "QUANTIZE": "QuantizeLinear",
    "DEQUANTIZE": "DequantizeLinear",
}
_NEVER_PIN = ("CONSTANT", "SHAPE", "ASSERTION", "CAST", "QUANTIZE", "DEQUANTIZE")  # type-defined layers


def import_tensorrt() -> ModuleType:
    """The real ``tensorrt`` module; the type stubs alone import as an empty namespace package."""
    try:
        import tensorrt as trt
    except ImportError:
        raise MissingDependency("tensorrt", "tensorrt") from None
    if not hasattr(trt, "Builder"):
        raise MissingDependency("tensorrt", "tensorrt")
    return trt


def tensorrt_version() -> str | None:
    """The installed TensorRT version, or None where TensorRT cannot be used."""
    try:
        return str(import_tensorrt().__version__)
    except (MissingDependency, ImportError, OSError):  # OSError: libnvinfer missing or broken
        return None


def major_of(version: str) -> int:
    return int(version.split(".")[0])


@dataclass
class EngineBuild:
    engine: Path
    tensorrt_version: str
    build_seconds: float
    fp32_layers: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _logger() -> Any:
    import tensorrt as trt

    class CapturingLogger(trt.ILogger):
        """Keeps errors for the one-line failure message and warnings for the caller."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.warnings: list[str] = []

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(msg)
            elif severity == trt.ILogger.Severity.WARNING:
                self.warnings.append(msg)

    return CapturingLogger()


def parser_errors(parser: trt.OnnxParser) -> list[str]:
    """Every error the ONNX parser recorded, each with its node and operator where known."""
    out = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        try:
            where = f"node {err.node_name() or err.node()} ({err.node_operator()})"
        except AttributeError:  # node_name/node_operator arrived during TensorRT 10
            where = f"node #{err.node()}"
        out.append(f"{where}: {err.desc()}")
    return out


def network_nodes(network: trt.INetworkDefinition) -> list[GraphNode]:
    """The TensorRT network as ``GraphNode``s, so the same FP32 guard applies as on ONNX."""
    nodes = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        kind = str(layer.type).split(".")[-1]
        ins = tuple(t.name for t in (layer.get_input(j) for j in range(layer.num_inputs)) if t is not None)
        outs = tuple(layer.get_output(j).name for j in range(layer.num_outputs))
        nodes.append(GraphNode(layer.name, _LAYER_OPS.get(kind, kind), ins, outs))
    return nodes


def pin_fp32(network: trt.INetworkDefinition) -> list[str]:
    """Pin the lookup and the layers around it to FP32 (TensorRT 10, with OBEY_PRECISION_CONSTRAINTS)."""
    import tensorrt as trt

    names = set(fp32_guard(network_nodes(network)))
    pinned = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.name not in names or str(layer.type).split(".")[-1] in _NEVER_PIN:
            continue
        outs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if any(t.dtype != trt.float32 for t in outs):
            continue  # shape/index arithmetic: precision does not apply
        layer.precision = trt.float32
        for j in range(len(outs)):
            layer.set_output_type(j, trt.float32)
        pinned.append(layer.name)
    return pinned


def _timing_cache(config: trt.IBuilderConfig, path: Path | None) -> None:
    data = path.read_bytes() if path is not None and path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is None or not config.set_timing_cache(cache, False):
        # a cache from another TensorRT version or GPU is not an error: start a fresh one
        config.set_timing_cache(config.create_timing_cache(b""), False)


def onnx_to_engine(
    onnx_path: Path,
    engine_path: Path,
    *,
    plan: PrecisionPlan,
    shapes: ShapeProfile,
    vi_channels: int,
    workspace_gib: float,
    timing_cache: Path | None = None,
    calibrator: Any = None,
    dla_core: int | None = None,
) -> EngineBuild:
    """Build ``engine_path`` from ``onnx_path``; raises ``EngineError`` with the parser/builder errors."""
    import_tensorrt()
    import tensorrt as trt

    version = str(trt.__version__)
    if major_of(version) != plan.tensorrt_major:
        raise EngineError(
            f"the plan is for TensorRT {plan.tensorrt_major}, but TensorRT {version} is installed"
        )
    logger = _logger()
    builder = trt.Builder(logger)
    flags = 0  # explicit batch is the only mode since TensorRT 10
    if plan.strongly_typed and plan.tensorrt_major == 10:  # always on (flag deprecated) in TensorRT 11
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = parser_errors(parser) or logger.errors or ["unknown parser failure"]
        raise EngineError(
            f"TensorRT {version} could not parse {onnx_path.name} ({len(errors)} error(s)): "
            + "; ".join(errors)
        )
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for name in ("ir", "vi"):
        c = 1 if name == "ir" else vi_channels
        dims = [trt.Dims([1, c, h, w]) for h, w in (shapes.min, shapes.opt, shapes.max)]
        profile.set_shape(name, dims[0], dims[1], dims[2])
    config.add_optimization_profile(profile)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    _set_precision(builder, config, plan)
    if calibrator is not None:
        config.int8_calibrator = calibrator  # TensorRT 10 only (plan_precision refuses it on 11)
        config.set_calibration_profile(profile)
    if dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    pinned = pin_fp32(network) if plan.pin_fp32 and plan.tensorrt_major == 10 else []
    _timing_cache(config, timing_cache)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        detail = "; ".join(logger.errors[-3:]) or "no error message from TensorRT"
        raise EngineError(f"TensorRT {version} could not build {onnx_path.name}: {detail}")
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(memoryview(serialized))
    if timing_cache is not None:
        write_bytes_atomic(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    return EngineBuild(engine_path, version, seconds, pinned, list(logger.warnings))


def _set_precision(builder: trt.Builder, config: trt.IBuilderConfig, plan: PrecisionPlan) -> None:
    import tensorrt as trt

    if plan.no_tf32 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    for name in plan.builder_flags:
        flag = getattr(trt.BuilderFlag, name, None)
        if flag is None:
            raise EngineError(
                f"TensorRT {trt.__version__} has no BuilderFlag.{name} (removed in TensorRT 11)"
            )
        if name == "FP16" and not builder.platform_has_fast_fp16:
            raise EngineError("this GPU has no fast FP16: build fp32 (or int8) instead")
        if name == "INT8" and not builder.platform_has_fast_int8:
            raise EngineError("this GPU has no fast INT8: build fp32 or fp16 instead")
        config.set_flag(flag)
