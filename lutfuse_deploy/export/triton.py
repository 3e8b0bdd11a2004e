"""A Triton Inference Server model repository from an exported graph or a built TensorRT engine.

Writes ``REPO/<name>/config.pbtxt`` and ``REPO/<name>/1/model.onnx`` (or ``model.plan`` with the
engine's ``manifest.json``). The config is built as tritonclient's own ``ModelConfig`` protobuf from
the inputs and outputs the ONNX file declares, and its text is parsed back with ``text_format.Parse``
and checked against the graph before anything is written; the whole model folder then replaces any
old one in one rename.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lutfuse_deploy.errors import ExportError, MissingDependency

MAX_QUEUE_DELAY_US = 500  # how long Triton may hold a request to batch it with others (0.5 ms)
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Tensor:
    name: str
    data_type: str  # Triton's name, e.g. TYPE_FP32
    dims: tuple[int, ...]  # -1 where the graph has a symbolic (dynamic) dimension


def model_config_pb2() -> Any:
    try:
        from tritonclient.grpc import model_config_pb2
    except (ImportError, RuntimeError):  # RuntimeError: tritonclient without its grpc part
        raise MissingDependency("tritonclient[grpc]", "triton") from None
    return model_config_pb2


def graph_tensors(onnx_path: str | Path) -> tuple[list[Tensor], list[Tensor]]:
    """The graph's real inputs and outputs: names, Triton data types, dims (batch included)."""
    try:
        import onnx
        from onnx.helper import tensor_dtype_to_np_dtype
    except ImportError:
        raise MissingDependency("onnx", "onnx") from None
    model_config_pb2()  # tritonclient present, or the one-line error naming the extra
    from tritonclient.utils import np_to_triton_dtype

    try:
        graph = onnx.load(str(onnx_path), load_external_data=False).graph
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise ExportError(f"{onnx_path}: not a readable ONNX file ({type(exc).__name__})") from None
    initializers = {i.name for i in graph.initializer}

    def tensor(v: Any) -> Tensor:
        t = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
        return Tensor(v.name, "TYPE_" + np_to_triton_dtype(tensor_dtype_to_np_dtype(t.elem_type)), dims)

    return ([tensor(v) for v in graph.input if v.name not in initializers], [tensor(v) for v in graph.output])


def model_config(name: str, platform: str, inputs: list[Tensor], outputs: list[Tensor], max_batch_size: int,
                 instances: int = 1) -> str:
    """config.pbtxt text. With ``max_batch_size`` > 0 the leading (batch) dim is Triton's and is left
    out of ``dims``, and requests are batched dynamically; with 0 the dims are the full shapes."""
    pb = model_config_pb2()
    cfg = pb.ModelConfig(name=name, platform=platform, max_batch_size=max_batch_size)
    for field, tensors in ((cfg.input, inputs), (cfg.output, outputs)):
        for t in tensors:
            entry = field.add()
            entry.name = t.name
            entry.data_type = pb.DataType.Value(t.data_type)
            entry.dims.extend(t.dims[1:] if max_batch_size > 0 else t.dims)
    if max_batch_size > 0:
        cfg.dynamic_batching.max_queue_delay_microseconds = MAX_QUEUE_DELAY_US
    group = cfg.instance_group.add()
    group.count = instances
    group.kind = pb.ModelInstanceGroup.KIND_GPU
    from google.protobuf import text_format

    return str(text_format.MessageToString(cfg))


def validate_config(text: str, inputs: list[Tensor], outputs: list[Tensor]) -> Any:
    """Parse ``text`` with tritonclient's ModelConfig and check it names exactly the graph's tensors."""
    from google.protobuf import text_format

    pb = model_config_pb2()
    try:
        cfg = text_format.Parse(text, pb.ModelConfig())
    except text_format.ParseError as exc:
        raise ExportError(f"config.pbtxt does not parse as a Triton ModelConfig ({exc})") from None
    batched = cfg.max_batch_size > 0
    for kind, declared, wanted in (("input", cfg.input, inputs), ("output", cfg.output, outputs)):
        got = [(t.name, pb.DataType.Name(t.data_type), tuple(t.dims)) for t in declared]
        want = [(t.name, t.data_type, t.dims[1:] if batched else t.dims) for t in wanted]
        if got != want:
            raise ExportError(f"config.pbtxt {kind}s {got} differ from the graph's {want}")
    if batched and not all(t.dims and t.dims[0] == -1 for t in inputs + outputs):
        raise ExportError("max_batch_size > 0 needs a dynamic leading (batch) dimension on every tensor")
    return cfg


def onnx_repository(onnx_path: str | Path, repo: str | Path, name: str | None = None, max_batch_size: int = 8,
                    instances: int = 1) -> Path:
    """REPO/<name>/ for Triton's ONNX Runtime backend; batching only if the graph's batch is dynamic."""
    onnx_path = Path(onnx_path)
    inputs, outputs = graph_tensors(onnx_path)
    if not all(t.dims and t.dims[0] == -1 for t in inputs + outputs):
        max_batch_size = 0  # a static batch: Triton must not add its own
    name = check_model_name(name or onnx_path.stem)
    text = model_config(name, "onnxruntime_onnx", inputs, outputs, max_batch_size, instances)
    validate_config(text, inputs, outputs)
    return _write(Path(repo) / name, text, {"model.onnx": onnx_path})


def engine_repository(engine: str | Path, manifest: dict[str, Any], onnx_path: str | Path, repo: str | Path,
                      name: str | None = None, instances: int = 1) -> Path:
    """REPO/<name>/ for Triton's TensorRT backend: the engine's profile is batch 1, so dims are full
    shapes with the batch fixed at 1 and height/width -1 unless the profile fixes them."""
    inputs, outputs = graph_tensors(onnx_path)
    shapes = manifest.get("shapes") or {}
    try:
        static = shapes["min"] == shapes["max"]
        hw = (shapes["min"]["height"], shapes["min"]["width"]) if static else (-1, -1)
    except (KeyError, TypeError):
        raise ExportError("the engine's manifest has no shapes {min, max: {width, height}}") from None

    def engine_dims(t: Tensor) -> Tensor:
        fixed = len(t.dims) == 4 and min(t.dims[2:]) > 0  # a rig graph's inputs keep their cameras' sizes
        return Tensor(t.name, t.data_type, (1, t.dims[1], *(t.dims[2:] if fixed else hw)))

    inputs, outputs = [engine_dims(t) for t in inputs], [engine_dims(t) for t in outputs]
    name = check_model_name(name or Path(engine).stem)
    text = model_config(name, "tensorrt_plan", inputs, outputs, 0, instances)
    validate_config(text, inputs, outputs)
    from lutfuse_deploy.io.files import write_json_atomic

    with tempfile.TemporaryDirectory() as tmp:
        side = Path(tmp) / "manifest.json"
        write_json_atomic(side, manifest)
        return _write(Path(repo) / name, text, {"model.plan": Path(engine), "manifest.json": side})


def check_model_name(name: str) -> str:
    """A Triton model name (the repository's folder name), refused before any work when unusable."""
    if not NAME_RE.match(name):
        raise ExportError(f"Triton model name {name!r}: use letters, digits, '_', '-' and '.' only")
    return name


def _write(folder: Path, config: str, files: dict[str, Path]) -> Path:
    """config.pbtxt and version 1's files, swapped in for any old ``folder`` in one rename."""
    from lutfuse_deploy.io.files import staged_dir

    with staged_dir(folder) as tmp:
        (tmp / "config.pbtxt").write_text(config, encoding="utf-8")
        (tmp / "1").mkdir()
        for dest, src in files.items():
            shutil.copyfile(src, tmp / "1" / dest)
        umask = os.umask(0)
        os.umask(umask)
        for p in [tmp, *tmp.rglob("*")]:  # mkdtemp's 0700: a repository is read by the server's user
            p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)
    return folder
