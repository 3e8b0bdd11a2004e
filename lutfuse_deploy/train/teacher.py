"""Teacher training: the MMDRFuse dense teacher (556k parameters) with an unsupervised fusion loss.

Intensity towards max(ir, vi), Sobel gradient towards the stronger source gradient, SSIM with both
sources, and an optional VGG-19 perceptual term (only with a local weights file). The output is
raw tanh; the loss reads it on the [0, 1] scale of the sources.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from lutfuse_deploy.models import MMDRTeacher
from lutfuse_deploy.train.config import Recipe
from lutfuse_deploy.train.data import CropStream
from lutfuse_deploy.train.engine import Task
from lutfuse_deploy.train.losses import fusion_terms


def loss_weights(loss: object) -> dict[str, float]:
    """The numeric and on/off settings of a loss section (bools count as 0/1)."""
    items = dataclasses.asdict(loss).items()  # type: ignore[call-overload]
    return {k: float(v) for k, v in items if isinstance(v, (float, bool))}


def perceptual_module(loss: object, device: torch.device) -> nn.Module | None:
    if not getattr(loss, "perceptual", 0.0):
        return None
    from lutfuse_deploy.train.perceptual import Perceptual

    return Perceptual(loss.vgg_weights).to(device)  # type: ignore[attr-defined]


class TeacherTask(Task):
    name = "teacher"

    def __init__(self, recipe: Recipe, stream: CropStream, device: torch.device) -> None:
        self.model = MMDRTeacher()
        self.stream = stream
        self.weights = loss_weights(recipe.loss)
        self.perceptual = perceptual_module(recipe.loss, device)
        self.provenance = {}

    def losses(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        out = model(batch["ir"], batch["gray"])
        return fusion_terms(out, batch["ir"] / 255.0, batch["gray"] / 255.0, self.weights, self.perceptual)
