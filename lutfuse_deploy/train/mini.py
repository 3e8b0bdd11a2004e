"""The 113-parameter MMDRFuse student: digestible distillation, comprehensive loss, dynamic refresh.

- Digestible distillation: the student's 4-channel feature and its output match the teacher's as
  channel-summed, L2-normalised attention maps (``losses.digestible_loss``).
- Comprehensive loss: the unsupervised fusion terms on the student's own output (intensity,
  gradient, SSIM, optional VGG-19 perceptual).
- Dynamic refresh: per-patch history banks (``refresh.RefreshBank``) pull the output back towards
  its best past self when it gets worse; they need a fixed patch pool (``data.patches``).
The student's last conv (4 -> 1) starts as a copy of the teacher's, as in the official training
(``loss.init: teacher``), or the whole student starts as the max rule (``loss.init: max``) or as a
trained student (``loss.init: checkpoint``, to fine-tune it).
The teacher's targets for the pool are computed once and kept on disk (``targets.TeacherTargets``).
Optionally a LUT-Fuse checkpoint is distilled too (``loss.lut_teacher``): on cameras outside the
training sets the shipped LUT-Fuse is the stronger fusion model, so its output and its context
network's features are offered as further targets, cached the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from lutfuse_deploy.models import MMDRStudent, MMDRTeacher
from lutfuse_deploy.models.lut import LutFuse
from lutfuse_deploy.train.config import Recipe
from lutfuse_deploy.train.data import CropStream
from lutfuse_deploy.train.engine import Task
from lutfuse_deploy.train.losses import digestible_loss, fusion_terms
from lutfuse_deploy.train.refresh import RefreshBank
from lutfuse_deploy.train.targets import TeacherTargets
from lutfuse_deploy.train.teacher import loss_weights, perceptual_module

T = TypeVar("T")


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Per-image min-max stretch to [0, 1]: what ``fuse.convert.to_8bit`` does to tanh by default.

    Training the content terms on the stretched output optimises what users and the metrics see;
    on the raw tanh, a student gains or loses contrast at test time depending on its extremes.
    """
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    return (x - lo) / (hi - lo + 1e-6)


def load_student(student: MMDRStudent, path: str) -> dict[str, str]:
    """Copy a trained student's weights into ``student`` (``loss.init: checkpoint``); its provenance.

    Why: fine-tuning the shipped student towards a new target moves it a short way from a model known to
    hold up, where a fresh start lands wherever its seed sends it (docs/training.md, seeds).
    """
    from lutfuse_deploy.io.checkpoints import load_model, resolve_checkpoint
    from lutfuse_deploy.io.files import sha256_file

    p = resolve_checkpoint(path)
    model, meta = load_model(p, kind="mmdrfuse-student")
    student.load_state_dict(model.state_dict())
    prov = {"file": p.name, "sha256": sha256_file(p), "weights_sha256": meta["weights_sha256"]}
    source = meta.get("provenance", {}).get("source")
    if source:
        prov["source"] = source  # an imported release: what it was derived from stays on record
    return prov


@torch.no_grad()
def init_max_rule(student: MMDRStudent) -> None:
    """Set the student to ``tanh(2 max(ir, vi) - 1)``: centre taps only, off-centre taps zero.

    The four ReLU features are ir, vi, (ir - vi)+ and (vi - ir)+, and max = (sum of the four) / 2.
    Why: from torch's random init, runs that differ only in the seed settle in two kinds of
    minimum — a symmetric, max-like rule, or one that nearly ignores the IR (measured on the flat
    response: f(vi=0, ir=255) = 0.28 against 0.78), and the second scores far lower on MI, EN and SD.
    Starting at the max rule leaves the detail (off-centre taps) to training.
    """
    conv1, conv2 = (cast(nn.Conv2d, seq[1]) for seq in (student.conv1, student.conv2))
    b1, b2 = conv1.bias, conv2.bias
    assert b1 is not None and b2 is not None  # the student's convs have biases
    for t in (conv1.weight, conv2.weight, b1, b2):
        t.zero_()
    for ch, (w_ir, w_vi) in enumerate(((1.0, 0.0), (0.0, 1.0), (1.0, -1.0), (-1.0, 1.0))):
        conv1.weight[ch, 0, 1, 1], conv1.weight[ch, 1, 1, 1] = w_ir, w_vi
    conv2.weight[0, :, 1, 1] = 1.0  # 2 x (sum / 2)
    b2.fill_(-1.0)


class _WithFeatures(nn.Module):
    def __init__(self, student: MMDRStudent) -> None:
        super().__init__()
        self.student = student

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.student.forward_with_features(ir, vi)


class MiniTask(Task):
    name = "mini"

    def __init__(
        self,
        recipe: Recipe,
        stream: CropStream,
        device: torch.device,
        teacher: nn.Module | None,
        out_dir: Path,
        resume: bool,
        is_main: bool,
        barrier: Callable[[], None],
    ) -> None:
        self.model = MMDRStudent()
        self.stream = stream
        # None when the recipe distils no teacher (recipe.uses_teacher): no term reads it
        self.teacher = teacher.to(device).eval().requires_grad_(False) if teacher is not None else None
        loss = recipe.loss
        self.weights = loss_weights(loss)
        self.output_map = loss.output_map
        self.perceptual = perceptual_module(loss, device)
        if loss.init == "teacher":
            assert teacher is not None
            with torch.no_grad():
                last = self.model.conv2[1]
                last.load_state_dict(cast(nn.Sequential, teacher.conv00)[1].state_dict())
        elif loss.init == "max":
            init_max_rule(self.model)
        self.provenance = {}
        if loss.init == "checkpoint":
            self.provenance["init_checkpoint"] = load_student(self.model, cast(str, loss.init_checkpoint))
        d = recipe.data

        def shared(make: Callable[[bool], T]) -> T:
            """Rank 0 makes (or, resuming, checks) the on-disk store; then every rank opens it."""
            if is_main:
                make(not resume)
            barrier()
            return make(False)

        self.bank: RefreshBank | None = None
        if loss.refresh:
            folder = Path(out_dir) / "refresh"
            self.bank = shared(lambda create: RefreshBank(folder, d.patches, d.crop, loss.refresh_dtype, create))
        self.targets: TeacherTargets | None = None
        if loss.keeps_teacher_targets:
            from lutfuse_deploy.io.checkpoints import weights_sha256

            sha = weights_sha256(cast(nn.Module, self.teacher).state_dict())
            folder_t = Path(out_dir) / "teacher_targets"
            self.targets = shared(lambda create: TeacherTargets(folder_t, d.patches, d.crop, d.flip, sha, create))
        self.distils = loss.distils
        self.lut: LutFuse | None = None
        self.lut_targets: TeacherTargets | None = None
        if loss.distils_lut:
            from lutfuse_deploy.io.checkpoints import load_model, resolve_checkpoint, weights_sha256
            from lutfuse_deploy.io.files import sha256_file

            path = resolve_checkpoint(cast(str, loss.lut_teacher))
            lut, meta = load_model(path, kind="lutfuse")
            self.lut = cast(LutFuse, lut.to(device).eval().requires_grad_(False))
            self.provenance["lut_teacher"] = {
                "file": path.name, "sha256": sha256_file(path), "weights_sha256": meta["weights_sha256"]
            }
            if loss.keeps_lut_targets:
                lut_sha = weights_sha256(self.lut.state_dict())
                folder_l = Path(out_dir) / "lut_targets"
                self.lut_targets = shared(
                    lambda create: TeacherTargets(folder_l, d.patches, d.crop, d.flip, lut_sha, create)
                )
        self._train = _WithFeatures(self.model)

    def train_module(self) -> nn.Module:
        return self._train

    def losses(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        w = self.weights
        ir01, vi01 = batch["ir"] / 255.0, batch["gray"] / 255.0
        raw, feat = model(batch["ir"], batch["gray"])
        out = minmax(raw) if self.output_map == "minmax" else raw
        terms = fusion_terms(out, ir01, vi01, w, self.perceptual)
        if self.distils:
            t_out, t_feat = self._teacher(batch, raw)
            if w["distill_feature"]:
                terms["distill_feature"] = w["distill_feature"] * digestible_loss(feat, t_feat)
            if w["distill_output"]:
                terms["distill_output"] = w["distill_output"] * digestible_loss(raw, t_out)
        if self.lut is not None:
            l_out, l_feat = self._lut_teacher(batch, raw)
            if w["lut_output"]:
                terms["lut_output"] = w["lut_output"] * F.l1_loss(minmax(raw), minmax(l_out))
            if w["lut_context"]:
                terms["lut_context"] = w["lut_context"] * digestible_loss(feat, l_feat)
        if self.bank is not None:
            terms["refresh"] = w["refresh"] * self.bank.loss(out, batch["patch"], batch["flips"], ir01, vi01)
        return terms

    @torch.no_grad()
    def _teacher(self, batch: dict[str, torch.Tensor], like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's (output, feature) for the batch: from the on-disk targets when cached."""
        teacher = cast(MMDRTeacher, self.teacher)
        if self.targets is None:
            return teacher.forward_with_features(batch["ir"], batch["gray"])

        def compute(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            m = mask.to(batch["ir"].device)
            return teacher.forward_with_features(batch["ir"][m], batch["gray"][m])

        return self.targets.get(batch["patch"], batch["flips"], compute, like)

    @torch.no_grad()
    def _lut_teacher(self, batch: dict[str, torch.Tensor], like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """LUT-Fuse's (fused Y clamped to [0, 1] as ``fuse`` writes it, context features) for the batch."""
        lut = cast(LutFuse, self.lut)

        def compute(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            m = mask.to(batch["ir"].device)
            ir, rgb = batch["ir"][m], batch["rgb"][m]
            return lut.fused_y(ir, rgb).clamp(0.0, 1.0), lut.context_features(ir, rgb)

        if self.lut_targets is None:
            out, feat = compute(torch.ones(len(batch["ir"]), dtype=torch.bool))
            return out, feat.sum(1, keepdim=True)
        return self.lut_targets.get(batch["patch"], batch["flips"], compute, like)

    def flush(self) -> None:
        for store in (self.bank, self.targets, self.lut_targets):
            if store is not None:
                store.flush()
