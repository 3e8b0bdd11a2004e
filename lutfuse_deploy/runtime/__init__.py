"""Runners: load an artifact (checkpoint, .onnx, .engine) and run it. They never build anything."""

from __future__ import annotations

from pathlib import Path

from lutfuse_deploy.errors import InputError
from lutfuse_deploy.runtime.base import Runner

BACKENDS = ("torch", "onnxruntime", "tensorrt")


def create_runner(model: str | Path, backend: str = "torch", **options: object) -> Runner:
    """The runner for ``backend`` over the artifact at ``model`` (imports the backend lazily)."""
    if backend == "torch":
        from lutfuse_deploy.runtime.torch import TorchRunner

        return TorchRunner(model, **options)  # type: ignore[arg-type]
    if backend == "onnxruntime":
        from lutfuse_deploy.runtime.onnxrt import OrtRunner

        return OrtRunner(model, **options)  # type: ignore[arg-type]
    if backend == "tensorrt":
        from lutfuse_deploy.runtime.tensorrt import TrtRunner

        return TrtRunner(model, **options)  # type: ignore[arg-type]
    raise InputError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
