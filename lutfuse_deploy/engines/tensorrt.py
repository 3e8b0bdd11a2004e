"""``onnx_to_engine``: an .onnx in, a serialized TensorRT engine out (TensorRT 10 and 11 Python API).

A plain function: paths and a precision plan in, a path and what was done out. The builder gets an
optimisation profile over the image-size range (batch 1), a workspace limit, the compatibility
options, and a timing cache that is loaded before and saved after every build (same file across
builds of a target, so later builds skip tactic timing). Every ONNX parser error is reported, not
only the first. TensorRT keeps one logger per process, so there is one here too (``process_logger``)
and each build reads its own messages from it.
On TensorRT 10, reduced precision comes from builder flags, and the lookup/colour layers are pinned
to FP32 with per-layer precision + OBEY_PRECISION_CONSTRAINTS; on TensorRT 11 the network is
strongly typed and precision was decided in the ONNX (AutoCast / Q/DQ) before this function runs.
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from lutfuse_deploy.engines.precision import GraphNode, PrecisionPlan, fp32_guard
from lutfuse_deploy.engines.targets import Compatibility, ShapeProfile
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
        raise _missing_tensorrt() from None
    if not hasattr(trt, "Builder"):
        raise _missing_tensorrt()
    return trt


INSTALL_HINT = (
    "on x86_64 pip install 'lutfuse-deploy[tensorrt]' (TensorRT 10) or 'lutfuse-deploy[tensorrt11]' "
    "(TensorRT 11); on a Jetson TensorRT comes with JetPack (python3-libnvinfer; give the venv "
    "--system-site-packages)"
)


def _missing_tensorrt() -> MissingDependency:
    """Where TensorRT comes from depends on the machine, so the one-extra message would mislead."""
    exc = MissingDependency("tensorrt", "tensorrt")
    exc.args = (f"tensorrt is not installed: {INSTALL_HINT}",)
    return exc


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
    layer_report: Path | None = None


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def api_major(trt: ModuleType) -> int:
    """The TensorRT API generation of ``trt``: TensorRT-RTX (1.x) speaks TensorRT 11's strongly typed API."""
    if trt.__name__.startswith("tensorrt_rtx"):
        return 11
    return major_of(str(trt.__version__))


@dataclass
class BuildLog:
    """What TensorRT said during one build."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


_LOGGERS: dict[str, Any] = {}
_LOGGERS_LOCK = threading.Lock()


def process_logger(trt: ModuleType) -> Any:
    """The one logger this process gives TensorRT (``trt``'s builder, parser and runtime).

    TensorRT keeps the first logger a process hands it; objects made later with another logger
    still report to the first, so a fresh logger per build hears nothing. Messages go to every
    open ``capture()``; with none open, warnings and errors go to stderr as ``trt.Logger`` would.
    """
    with _LOGGERS_LOCK:
        if trt.__name__ not in _LOGGERS:
            _LOGGERS[trt.__name__] = _routing_logger(trt)
        return _LOGGERS[trt.__name__]


def _routing_logger(trt: ModuleType) -> Any:
    severity = trt.ILogger.Severity
    errors = (severity.ERROR, severity.INTERNAL_ERROR)

    class RoutingLogger(trt.ILogger):  # type: ignore[name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.min_severity = severity.WARNING
            self._sinks: list[BuildLog] = []
            self._lock = threading.Lock()

        def log(self, level: Any, msg: str) -> None:
            with self._lock:
                sinks = list(self._sinks)
            for sink in sinks:
                if level in errors:
                    sink.errors.append(msg)
                elif level == severity.WARNING:
                    sink.warnings.append(msg)
            if not sinks and level in (*errors, severity.WARNING):
                print(f"[TensorRT] {msg}", file=sys.stderr)

        @contextlib.contextmanager
        def capture(self) -> Iterator[BuildLog]:
            sink = BuildLog()
            with self._lock:
                self._sinks.append(sink)
            try:
                yield sink
            finally:
                with self._lock:
                    self._sinks.remove(sink)

    return RoutingLogger()


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


def pin_fp32(trt: Any, network: trt.INetworkDefinition) -> list[str]:
    """Pin the lookup and the layers around it to FP32 (TensorRT 10, with OBEY_PRECISION_CONSTRAINTS)."""
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
    compatibility: Compatibility = Compatibility(),
    layer_report: Path | None = None,
    trt_module: ModuleType | None = None,
    input_hw: dict[str, tuple[int, int]] | None = None,
) -> EngineBuild:
    """Build ``engine_path`` from ``onnx_path``; raises ``EngineError`` with the parser/builder errors.

    ``trt_module`` defaults to ``tensorrt``; the tests pass TensorRT-RTX, which parses and builds
    without a GPU. ``layer_report`` receives the engine inspector's per-layer JSON where the engine
    can be loaded here (it needs the GPU that built it). ``input_hw`` fixes each input's (H, W) (a rig
    graph: the two cameras' sizes), otherwise both inputs follow ``shapes``.
    """
    trt = trt_module or import_tensorrt()
    version = str(trt.__version__)
    if api_major(trt) != plan.tensorrt_major:
        raise EngineError(
            f"the plan is for TensorRT {plan.tensorrt_major}, but TensorRT {version} is installed"
        )
    logger = process_logger(trt)
    with logger.capture() as log:
        built = _build(trt, log, onnx_path, plan, shapes, vi_channels, workspace_gib, timing_cache,
                       calibrator, dla_core, compatibility, input_hw)
        serialized, config, pinned, seconds = built
        with atomic_path(engine_path) as tmp:
            tmp.write_bytes(memoryview(serialized))
        if timing_cache is not None:
            write_bytes_atomic(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
        report = None
        if layer_report is not None:
            report = write_layer_report(trt, bytes(memoryview(serialized)), layer_report, compatibility)
    return EngineBuild(engine_path, version, seconds, pinned, list(log.warnings), report)


def _build(
    trt: Any,
    log: BuildLog,
    onnx_path: Path,
    plan: PrecisionPlan,
    shapes: ShapeProfile,
    vi_channels: int,
    workspace_gib: float,
    timing_cache: Path | None,
    calibrator: Any,
    dla_core: int | None,
    compatibility: Compatibility,
    input_hw: dict[str, tuple[int, int]] | None = None,
) -> tuple[Any, Any, list[str], float]:
    version = str(trt.__version__)
    builder = trt.Builder(process_logger(trt))
    flags = 0  # explicit batch is the only mode since TensorRT 10
    if plan.strongly_typed and plan.tensorrt_major == 10:  # always on (flag deprecated) in TensorRT 11
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, process_logger(trt))
    if not parser.parse_from_file(str(onnx_path)):
        errors = parser_errors(parser) or log.errors or ["unknown parser failure"]
        raise EngineError(
            f"TensorRT {version} could not parse {onnx_path.name} ({len(errors)} error(s)): "
            + "; ".join(errors)
        )
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for name in ("ir", "vi"):
        c = 1 if name == "ir" else vi_channels
        sizes = [input_hw[name]] * 3 if input_hw else [shapes.min, shapes.opt, shapes.max]
        dims = [trt.Dims([1, c, h, w]) for h, w in sizes]
        profile.set_shape(name, dims[0], dims[1], dims[2])
    config.add_optimization_profile(profile)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer names + tactics for the report
    _set_precision(trt, builder, config, plan)
    _set_compatibility(trt, config, compatibility)
    if calibrator is not None:
        config.int8_calibrator = calibrator  # TensorRT 10 only (plan_precision refuses it on 11)
        config.set_calibration_profile(profile)
    if dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    pinned = pin_fp32(trt, network) if plan.pin_fp32 and plan.tensorrt_major == 10 else []
    if timing_cache is not None:
        _timing_cache(config, timing_cache)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        detail = "; ".join(log.errors[-3:]) or "no error message from TensorRT"
        short = workspace_shortfall(log.warnings)
        if short is not None:
            detail += f"; tactics asked for {short / 1024:.1f} GiB of workspace: pass --workspace {_gib(short)}"
        raise EngineError(f"TensorRT {version} could not build {onnx_path.name}: {detail}")
    return serialized, config, pinned, seconds


def _gib(mib: float) -> str:
    return f"{-(-mib // 256) / 4:g}"  # rounded up to a quarter GiB


_SHORTFALL = re.compile(r"request:\s*(\d+)\s*MB\s*Available:\s*(\d+)\s*MB", re.IGNORECASE)


def workspace_shortfall(warnings: list[str]) -> float | None:
    """The largest workspace (MiB) a skipped tactic asked for, from TensorRT's "Tactic Device request:
    N MB Available: M MB" warnings; None when no tactic went without."""
    asked = [float(m.group(1)) for w in warnings for m in [_SHORTFALL.search(w)] if m]
    return max(asked) if asked else None


def _set_compatibility(trt: Any, config: Any, compat: Compatibility) -> None:
    if compat.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    level = getattr(trt.HardwareCompatibilityLevel, compat.hardware_level, None)
    if level is None:
        raise EngineError(
            f"TensorRT {trt.__version__} has no hardware compatibility level {compat.hardware}"
        )
    config.hardware_compatibility_level = level


def write_layer_report(trt: Any, plan: bytes, out: Path, compat: Compatibility) -> Path | None:
    """The engine inspector's per-layer JSON (precision, tactic, DLA or GPU) for ``plan``, or None
    where the engine cannot be loaded here (no GPU: TensorRT-RTX in CI)."""
    runtime = trt.Runtime(process_logger(trt))
    if compat.version_compatible:
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        return None
    inspector = engine.create_engine_inspector()
    text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return out


def _set_precision(trt: Any, builder: Any, config: Any, plan: PrecisionPlan) -> None:
    if plan.no_tf32 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    # platform_has_fast_fp16/int8 are deprecated from TensorRT 10.5 (every GPU it supports has both)
    check_fast = version_tuple(str(trt.__version__)) < (10, 5)
    for name in plan.builder_flags:
        flag = getattr(trt.BuilderFlag, name, None)
        if flag is None:
            raise EngineError(
                f"TensorRT {trt.__version__} has no BuilderFlag.{name} (removed in TensorRT 11)"
            )
        if check_fast and name == "FP16" and not builder.platform_has_fast_fp16:
            raise EngineError("this GPU has no fast FP16: build fp32 (or int8) instead")
        if check_fast and name == "INT8" and not builder.platform_has_fast_int8:
            raise EngineError("this GPU has no fast INT8: build fp32 or fp16 instead")
        config.set_flag(flag)
