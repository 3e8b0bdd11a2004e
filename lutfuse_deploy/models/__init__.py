"""The model registry: a literal dict from kind name to class (three models need no plugin system)."""

from __future__ import annotations

from typing import Any

from torch import nn

from lutfuse_deploy.models.lut import LutFuse, LutFuseConfig
from lutfuse_deploy.models.mmdrfuse import MMDRStudent, MMDRTeacher

MODELS: dict[str, type[nn.Module]] = {
    "lutfuse": LutFuse,
    "mmdrfuse-student": MMDRStudent,
    "mmdrfuse-teacher": MMDRTeacher,
}


def create_model(kind: str, config: dict[str, Any] | None = None) -> nn.Module:
    """A fresh model of ``kind``; ``config`` only applies to configurable kinds (LUT-Fuse)."""
    if kind not in MODELS:
        raise KeyError(f"unknown model kind {kind!r}; known: {', '.join(MODELS)}")
    if kind == "lutfuse":
        return LutFuse(LutFuseConfig(**(config or {})))
    if config:
        raise ValueError(f"{kind} takes no configuration, got {sorted(config)}")
    return MODELS[kind]()


def model_config(model: nn.Module) -> dict[str, Any]:
    """The configuration that ``create_model`` needs to rebuild ``model``."""
    return model.config.to_dict() if isinstance(model, LutFuse) else {}


__all__ = ["MODELS", "LutFuse", "LutFuseConfig", "MMDRStudent", "MMDRTeacher", "create_model", "model_config"]
