"""The training loop shared by every kind: optimiser, schedule, DDP, progress, checkpoints, resume.

A kind (teacher, lut, mini) is a ``Task``: its model, its data stream, its loss terms and how it
fuses a validation pair. The loop owns everything else, so ``--resume``, DDP and the best/last
checkpoints behave the same for all three.

Files in the output folder: ``<name>-last.safetensors`` and ``<name>-best.safetensors`` (project
checkpoints), ``train_state.pt`` (what ``--resume`` needs), ``log.jsonl`` (one line per log
interval and per validation) and ``recipe.yaml`` (the validated recipe as run).
"""

from __future__ import annotations

import json
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lutfuse_deploy.errors import ConfigError, LutfuseError
from lutfuse_deploy.io.files import atomic_path, write_text_atomic
from lutfuse_deploy.train.config import Recipe, disk_bytes
from lutfuse_deploy.train.data import CropStream, make_loader
from lutfuse_deploy.train.distributed import RunContext

STATE_FILE = "train_state.pt"
# Keys that may differ between a run and its --resume (they do not change what is computed).
_RESUME_FREE = ("steps", "threads", "log_every", "save_every", "val")


class Task(ABC):
    """One trainable kind. ``model`` is the module being trained (unwrapped)."""

    name: str
    model: nn.Module
    stream: CropStream
    provenance: dict[str, Any]

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        return [{"params": [p for p in self.model.parameters() if p.requires_grad], "lr_scale": 1.0}]

    @abstractmethod
    def losses(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """Weighted loss terms for one batch (``model`` may be the DDP wrapper)."""

    def train_module(self) -> nn.Module:
        """The module whose forward the loss calls (DDP syncs gradients only through forward)."""
        return self.model

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        return None

    def flush(self) -> None:
        """Make on-disk side state (refresh banks) durable before the resume state is written."""


@dataclass
class RunResult:
    last: Path
    best: Path | None
    steps: int
    best_step: int
    best_score: float
    wall_s: float
    log: Path
    val: dict[str, float] = field(default_factory=dict)
    start_step: int = 0  # where this run began: 0, or the step --resume continued from

    @property
    def new_steps(self) -> int:
        return self.steps - self.start_step


def check_out_dir(out: Path, resume: bool) -> None:
    """Refuse to resume nothing, and to start afresh over an earlier run (it would be clobbered)."""
    state = Path(out) / STATE_FILE
    if resume and not state.is_file():
        raise ConfigError(f"--resume: {out} holds no {STATE_FILE} (nothing to resume)")
    if not resume and state.exists():
        raise ConfigError(
            f"{out} already holds a training run: pass --resume to continue it, or choose another --out"
        )


def learning_rate(recipe: Recipe, step: int) -> float:
    """Linear warm-up, then cosine from ``lr`` to ``lr_min`` at the last step."""
    o = recipe.optim
    if o.warmup and step < o.warmup:
        return o.lr * (step + 1) / o.warmup
    span = max(recipe.steps - o.warmup, 1)
    t = min(max(step - o.warmup, 0) / span, 1.0)
    return o.lr_min + 0.5 * (o.lr - o.lr_min) * (1.0 + math.cos(math.pi * t))


def _comparable(recipe: dict[str, Any]) -> dict[str, Any]:
    d = {k: v for k, v in recipe.items() if k not in _RESUME_FREE}
    d["data"] = {k: v for k, v in d["data"].items() if k != "workers"}
    return d


def _batch_to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    for k in ("ir", "rgb", "gray"):
        out[k] = out[k].float()  # 0..255, as the models take them
    return out


class Trainer:
    def __init__(
        self, task: Task, recipe: Recipe, out_dir: Path, ctx: RunContext, progress: bool = True
    ) -> None:
        self.task, self.recipe, self.out, self.ctx = task, recipe, Path(out_dir), ctx
        self.progress = progress and ctx.is_main
        self.state_path = self.out / STATE_FILE
        self.log_path = self.out / "log.jsonl"
        self.last_path = self.out / f"{task.name}-last.safetensors"
        self.best_path = self.out / f"{task.name}-best.safetensors"
        self.start_step, self.best_score, self.best_step, self.elapsed = 0, -math.inf, -1, 0.0
        self.last_val: dict[str, float] = {}

    # ---------------------------------------------------------------- state
    def prepare(self, resume: bool, optimizer: torch.optim.Optimizer) -> None:
        check_out_dir(self.out, resume)
        if resume:
            state = torch.load(self.state_path, map_location="cpu", weights_only=True)
            if _comparable(state["recipe"]) != _comparable(self.recipe.to_dict()):
                raise ConfigError(
                    f"--resume: the recipe differs from the one {self.out} was trained with "
                    "(only steps, threads, log_every, save_every, val and data.workers may change)"
                )
            self.task.model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optim"])
            self.start_step, self.elapsed = int(state["step"]), float(state["elapsed_s"])
            self.best_score, self.best_step = float(state["best_score"]), int(state["best_step"])
            self.task.load_extra_state(state.get("task", {}))
            torch.set_rng_state(state["rng"])
        if self.ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            import yaml

            write_text_atomic(
                self.out / "recipe.yaml", yaml.safe_dump(self.recipe.to_dict(), sort_keys=False)
            )

    def _save(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        from lutfuse_deploy.io.checkpoints import save_checkpoint

        self.task.flush()
        if not self.ctx.is_main:
            return
        save_checkpoint(self.task.model, self.last_path, provenance=self._provenance(step))
        state = {
            "step": step,
            "model": self.task.model.state_dict(),
            "optim": optimizer.state_dict(),
            "best_score": self.best_score,
            "best_step": self.best_step,
            "recipe": self.recipe.to_dict(),
            "elapsed_s": self.elapsed,
            "task": self.task.extra_state(),
            "rng": torch.get_rng_state(),  # dropout in the LUT context net: resume must continue its stream
        }
        with atomic_path(self.state_path) as tmp:
            torch.save(state, tmp)

    def _provenance(self, step: int) -> dict[str, Any]:
        return {
            "trained_by": "lutfuse-deploy train",
            "train_kind": self.recipe.kind,
            "steps": step,
            "world_size": self.ctx.world,
            "recipe": self.recipe.to_dict(),
            **self.task.provenance,
        }

    def _log(self, record: dict[str, Any]) -> None:
        if self.ctx.is_main:
            with open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    # ---------------------------------------------------------------- validation
    def validate(self, step: int) -> None:
        from lutfuse_deploy.io.checkpoints import save_checkpoint
        from lutfuse_deploy.train.validate import validate

        if not self.ctx.is_main:
            return
        self.task.model.eval()
        v = self.recipe.val
        means, score = validate(self.task.model, self.val_pairs, v.score, v.tanh_map, self.ctx.device)
        self.task.model.train()
        self.last_val = means
        self._log({"step": step, "val": means, "score": score})
        if score > self.best_score:
            self.best_score, self.best_step = score, step
            save_checkpoint(
                self.task.model,
                self.best_path,
                provenance={**self._provenance(step), "val_score": score, "val": means},
            )

    # ---------------------------------------------------------------- loop
    def run(self, resume: bool, val_pairs: list) -> RunResult:
        from tqdm import tqdm

        r, ctx, task = self.recipe, self.ctx, self.task
        self.val_pairs = val_pairs
        model = task.model.to(ctx.device)
        groups = task.param_groups(r.optim.lr)
        optimizer = torch.optim.AdamW(
            [{k: v for k, v in g.items() if k != "lr_scale"} for g in groups],
            lr=r.optim.lr,
            weight_decay=r.optim.weight_decay,
        )
        self.prepare(resume, optimizer)
        model.to(ctx.device)
        wrapped = ctx.wrap(task.train_module())
        model.train()
        loader = make_loader(task.stream, r.batch_size, self.start_step, r.steps, r.data.workers, r.seed)
        bar = tqdm(
            total=r.steps,
            initial=self.start_step,
            disable=None if self.progress else True,  # None: tqdm draws only on a terminal, never into logs
            unit="step",
            desc=f"train {r.kind}",
            dynamic_ncols=True,
            mininterval=1.0,
        )
        disk = disk_bytes(r)
        if disk and self.progress:
            bar.write(
                f"{r.kind}: on disk in {self.out}: "
                + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in disk.items())
            )
        sums: dict[str, float] = {}
        t0 = time.perf_counter() - self.elapsed
        step = self.start_step
        for step, batch in enumerate(loader, start=self.start_step):
            lr = learning_rate(r, step)
            for group, spec in zip(optimizer.param_groups, groups):
                group["lr"] = lr * spec["lr_scale"]
            terms = task.losses(wrapped, _batch_to(batch, ctx.device), step)
            loss = torch.stack(list(terms.values())).sum()
            if not torch.isfinite(loss):
                raise LutfuseError(f"training diverged at step {step} (loss {loss.item()}); lower optim.lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if r.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), r.optim.grad_clip)
            optimizer.step()
            for k, v in (("loss", loss), *terms.items()):
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            done = step + 1
            self.elapsed = time.perf_counter() - t0
            if done % r.log_every == 0 or done == r.steps:
                n = r.log_every if done % r.log_every == 0 else done % r.log_every
                means = {k: v / n for k, v in sums.items()}
                sums = {}
                self._log({"step": done, "lr": lr, "elapsed_s": round(self.elapsed, 2), **means})
                bar.set_postfix(loss=f"{means['loss']:.4f}", best=f"{self.best_score:.3f}")
            bar.update(1)
            if r.val.every and done % r.val.every == 0 and done != r.steps:
                self.validate(done)
            if done % r.save_every == 0 and done != r.steps:
                self._save(done, optimizer)
        bar.close()
        final = max(step + 1, self.start_step) if r.steps > self.start_step else self.start_step
        if final > self.start_step or not self.best_path.exists():
            self.validate(final)
        self._save(final, optimizer)
        ctx.barrier()
        return RunResult(
            self.last_path,
            self.best_path if self.best_path.exists() else None,
            final,
            self.best_step,
            self.best_score,
            self.elapsed,
            self.log_path,
            self.last_val,
            self.start_step,
        )
