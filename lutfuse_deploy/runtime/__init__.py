"""Runners: load an artifact (checkpoint, .onnx, .engine) and run it. They never build anything."""

from __future__ import annotations

from pathlib import Path

from lutfuse_deploy.errors import InputError
from lutfuse_deploy.runtime.base import Runner

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt", "numba")
#: File suffix -> backend, for a file given without a backend (``profile``, ``fuse --backend auto``).
SUFFIX_BACKENDS = {".onnx": "onnxruntime", ".engine": "tensorrt", ".plan": "tensorrt", ".trt": "tensorrt"}


#: What each backend loads, so a file given to the wrong one is named instead of failing deep inside.
ARTIFACTS = {
    "torch": ((".safetensors",), "a checkpoint (.safetensors or a folder holding one)"),
    "onnxruntime": ((".onnx",), "an ONNX graph (.onnx, from export)"),
    "openvino": ((".onnx",), "an ONNX graph (.onnx, from export)"),
    "tensorrt": ((".engine", ".plan", ".trt"), "a TensorRT engine (.engine/.plan/.trt, from build-engine)"),
    "numba": ((".safetensors",), "a checkpoint (.safetensors or a folder holding one)"),
}


def check_artifact(model: str | Path, backend: str) -> None:
    """Refuse a path the backend cannot load, saying what it is and what the backend needs."""
    path = Path(model)
    if backend not in ARTIFACTS or path.is_dir() and backend in ("torch", "numba"):
        return
    suffixes, needs = ARTIFACTS[backend]
    if path.is_dir() or path.suffix.lower() not in suffixes:
        raise InputError(f"{path}: the {backend} backend runs {needs}; this is {describe_path(path)}")


def describe_path(path: Path) -> str:
    """What a --model path is, in words: a build bundle (and its engine), a folder, a missing or typed file."""
    if path.is_dir():
        if (path / "manifest.json").is_file():
            return f"a build bundle folder{_bundle_engine(path)}"
        return "a folder"
    if not path.exists():
        return "not an existing file"
    return f"a {path.suffix} file" if path.suffix else "a file with no suffix"


def _bundle_engine(folder: Path) -> str:
    import json

    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        engine = manifest.get("engine_file") or f"{manifest['model']}.engine"
    except (OSError, ValueError, AttributeError, KeyError):
        return ""
    if (folder / str(engine)).is_file():
        return f" (its engine: --model {folder / str(engine)})"
    return f" with no engine built yet (its build.sh makes {engine} on the device)"


def create_runner(model: str | Path, backend: str = "torch", **options: object) -> Runner:
    """The runner for ``backend`` over the artifact at ``model`` (imports the backend lazily)."""
    check_artifact(model, backend)
    if backend == "torch":
        from lutfuse_deploy.runtime.torch import TorchRunner

        return TorchRunner(model, **options)  # type: ignore[arg-type]
    if backend == "onnxruntime":
        from lutfuse_deploy.runtime.onnxrt import OrtRunner

        return OrtRunner(model, **options)  # type: ignore[arg-type]
    if backend == "openvino":
        from lutfuse_deploy.runtime.openvino import OvRunner

        return OvRunner(model, **options)  # type: ignore[arg-type]
    if backend == "tensorrt":
        from lutfuse_deploy.runtime.tensorrt import TrtRunner

        return TrtRunner(model, **options)  # type: ignore[arg-type]
    if backend == "numba":
        from lutfuse_deploy.runtime.fused_cpu import FusedCpuRunner

        return FusedCpuRunner(model, **options)  # type: ignore[arg-type]
    raise InputError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
