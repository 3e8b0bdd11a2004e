"""Export: a checkpoint to one ONNX graph (onnx.py), the LUT lowering (lowering.py), checks (checks.py).

``torch_to_onnx`` is the entry point; ``run_checks`` is what ``check-onnx`` prints. Attributes load
lazily so that ``runtime.onnxrt`` (which shares ``ort_options``) never imports torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_checks", "torch_to_onnx"]


def __getattr__(name: str) -> Any:
    if name == "torch_to_onnx":
        from lutfuse_deploy.export.onnx import torch_to_onnx

        return torch_to_onnx
    if name == "run_checks":
        from lutfuse_deploy.export.checks import run_checks

        return run_checks
    raise AttributeError(f"module 'lutfuse_deploy.export' has no attribute {name!r}")
