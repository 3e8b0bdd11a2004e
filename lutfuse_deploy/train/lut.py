"""LUT-Fuse distillation: table and context network optimised jointly against a frozen teacher.

Loss: L1 and SSIM between the LUT's fused Y and the teacher output, optional direct fusion terms,
total variation on the table (a smooth table generalises to colours the crops never showed) and
a monotonicity penalty (brighter visible or IR never makes the fused pixel darker).

Table start (``loss.init``): ``analytic`` (``models.lut.analytic_table``) or ``teacher``: teacher
outputs on training crops are splatted into the (y, g, ir) lattice with the lookup's own trilinear
weights and averaged (copied along the context axis, which has no meaning yet); nodes no crop
reached keep the analytic value through a weak prior.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from lutfuse_deploy.models.lut import LutFuse, LutFuseConfig, analytic_table
from lutfuse_deploy.train.config import Recipe
from lutfuse_deploy.train.data import CropStream
from lutfuse_deploy.train.engine import Task
from lutfuse_deploy.train.losses import (
    flat_detail_loss,
    fusion_terms,
    ssim,
    table_ir_curvature,
    table_monotonic,
    table_tv,
)
from lutfuse_deploy.train.teacher import loss_weights

PRIOR_WEIGHT = 0.5  # pseudo-count of the analytic value at every node (teacher init)


class _LutTrain(nn.Module):
    """Forward = what the loss needs: fused Y and the three table regularisers (DDP-safe)."""

    def __init__(self, lut: LutFuse) -> None:
        super().__init__()
        self.lut = lut

    def forward(self, ir: torch.Tensor, rgb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        table = self.lut.lut
        return self.lut.fused_y(ir, rgb), table_tv(table), table_monotonic(table), table_ir_curvature(table)


def _splat(coords: list[torch.Tensor], values: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Trilinear splat of ``values`` at (y, g, ir) coordinates into n^3 sums and weights."""
    num = torch.zeros(n**3, dtype=torch.float64)
    den = torch.zeros(n**3, dtype=torch.float64)
    los, his, ws = [], [], []
    for x in coords:
        x = x.flatten().double().cpu()
        lo = torch.floor(x)
        los.append(lo.long())
        his.append(torch.clamp(lo + 1, max=n - 1).long())
        ws.append(x - lo)
    v = values.flatten().double().cpu()
    for corner in range(8):
        idx = torch.zeros_like(los[0])
        w = torch.ones_like(ws[0])
        for axis in range(3):
            up = (corner >> (2 - axis)) & 1
            idx = idx * n + (his[axis] if up else los[axis])
            w = w * (ws[axis] if up else 1.0 - ws[axis])
        num.index_add_(0, idx, w * v)
        den.index_add_(0, idx, w)
    return num, den


@torch.no_grad()
def teacher_table(
    lut: LutFuse, teacher: nn.Module, stream: CropStream, batches: int, batch_size: int, device: torch.device
) -> torch.Tensor:
    """A table whose (y, g, ir) slices average what the teacher outputs at those coordinates."""
    n = lut.config.nodes
    num = torch.zeros(n**3, dtype=torch.float64)
    den = torch.zeros(n**3, dtype=torch.float64)
    for b in range(batches):
        items = [stream[b * batch_size + j] for j in range(batch_size)]
        ir = torch.stack([it["ir"] for it in items]).float().to(device)
        rgb = torch.stack([it["rgb"] for it in items]).float().to(device)
        gray = torch.stack([it["gray"] for it in items]).float().to(device)
        y, g, _c, i = lut.coordinates(ir, rgb)
        s_num, s_den = _splat([y, g, i], teacher(ir, gray), n)
        num += s_num
        den += s_den
    prior = analytic_table(lut.config)[:, :, 0, :].reshape(-1).double()  # the rule ignores the c axis
    t3 = ((num + PRIOR_WEIGHT * prior) / (den + PRIOR_WEIGHT)).float().reshape(n, n, n)
    return t3[:, :, None, :].expand(n, n, n, n).contiguous()


class LutTask(Task):
    name = "lut"

    def __init__(self, recipe: Recipe, stream: CropStream, device: torch.device, teacher: nn.Module) -> None:
        self.recipe = recipe
        assert recipe.model is not None  # recipe_from_dict always sets it for lut
        self.model = LutFuse(LutFuseConfig(**dataclasses.asdict(recipe.model)))
        self.stream = stream
        self.teacher = teacher.to(device).eval().requires_grad_(False)
        loss = recipe.loss
        self.weights = loss_weights(loss)
        self.provenance = {}
        with torch.no_grad():
            if loss.init == "analytic":
                self.model.lut.copy_(analytic_table(self.model.config))
            else:
                self.model.to(device)
                table = teacher_table(
                    self.model, self.teacher, stream, loss.init_batches, recipe.batch_size, device
                )
                self.model.lut.copy_(table)
        self._train = _LutTrain(self.model)

    def train_module(self) -> nn.Module:
        return self._train

    def param_groups(self, lr: float) -> list[dict]:
        ctx = [p for n, p in self.model.named_parameters() if n != "lut"]
        return [
            {"params": [self.model.lut], "lr_scale": self.recipe.optim.lut_lr_scale},
            {"params": ctx, "lr_scale": 1.0},
        ]

    def losses(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        w = self.weights
        with torch.no_grad():
            target = self.teacher(batch["ir"], batch["gray"])
        y, tv, mono, curv = model(batch["ir"], batch["rgb"])
        terms: dict[str, torch.Tensor] = {}
        if w["distill_l1"]:
            terms["distill_l1"] = w["distill_l1"] * (y - target).abs().mean()
        if w["distill_ssim"]:
            terms["distill_ssim"] = w["distill_ssim"] * (1.0 - ssim(y, target))
        terms.update(fusion_terms(y, batch["ir"] / 255.0, batch["gray"] / 255.0, w))
        if w["tv"]:
            terms["tv"] = w["tv"] * tv
        if w["monotonic"]:
            terms["monotonic"] = w["monotonic"] * mono
        if w["ir_curvature"]:
            terms["ir_curvature"] = w["ir_curvature"] * curv
        if w["flat_detail"]:
            flat = flat_detail_loss(y, batch["ir"] / 255.0, batch["gray"] / 255.0, self.recipe.loss.flat_edge)
            terms["flat_detail"] = w["flat_detail"] * flat
        return terms
