"""Training: a recipe and data in, project checkpoints out (``lutfuse-deploy train``).

``train("teacher" | "lut" | "mini", recipe)`` builds the data stream, the task of that kind and the
shared loop (``engine.Trainer``). Same recipe and seed on CPU: same weights, also across
``--resume``. Under ``torchrun`` the same call trains with DDP.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from lutfuse_deploy.errors import ConfigError
from lutfuse_deploy.train.config import KINDS, Recipe, load_recipe
from lutfuse_deploy.train.engine import RunResult

if TYPE_CHECKING:
    from lutfuse_deploy.train.data import CropStream
    from lutfuse_deploy.train.distributed import RunContext
    from lutfuse_deploy.train.engine import Task

__all__ = ["KINDS", "Recipe", "RunResult", "load_recipe", "train"]


def _teacher(path: str | Path | None, kind: str) -> tuple[torch.nn.Module, dict]:
    from lutfuse_deploy.io.checkpoints import load_model, resolve_checkpoint
    from lutfuse_deploy.io.files import sha256_file

    if path is None:
        raise ConfigError(
            f"{kind} training distils a teacher: give --teacher CKPT or 'teacher:' in the recipe"
        )
    p = resolve_checkpoint(path)
    model, meta = load_model(p, kind="mmdrfuse-teacher")
    return model, {"teacher": {"file": p.name, "sha256": sha256_file(p), "weights_sha256": meta["weights_sha256"]}}


def train(
    kind: str,
    recipe: str | Path | Recipe,
    data: str | Path | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    device: str = "cpu",
    teacher: str | Path | None = None,
    steps: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    val: str | Path | None = None,
    ir16: str | None = None,
) -> RunResult:
    """Train ``kind`` with ``recipe``; returns the written checkpoints and the final validation.

    ``ir16`` (``train --ir16``) overrides the recipe's ``data.ir16``: it becomes part of the run's
    recipe, so a ``--resume`` that maps 16-bit IR differently is refused like any other recipe change.
    """
    from lutfuse_deploy.io.files import check_outputs
    from lutfuse_deploy.paths import data_root
    from lutfuse_deploy.train import distributed
    from lutfuse_deploy.train.data import (
        CropStream,
        PairStore,
        StreamSpec,
        collect_pairs,
        holdout_pairs,
        set_folders,
        split_holdout,
        validation_pairs,
    )
    from lutfuse_deploy.train.engine import Trainer, check_out_dir

    r = recipe if isinstance(recipe, Recipe) else load_recipe(recipe, kind)
    if r.kind != kind:
        raise ConfigError(f"kind: this recipe trains {r.kind!r}, not {kind!r}")
    if steps is not None:
        if steps < 1:
            raise ConfigError(f"--steps: expected a positive integer, got {steps}")
        r.steps = steps
    if ir16 is not None:
        from lutfuse_deploy.io.images import IR16_MODES

        if ir16 not in IR16_MODES:
            raise ConfigError(f"--ir16: expected one of {', '.join(IR16_MODES)}, got {ir16!r}")
        r.data.ir16 = ir16
    if val is not None and r.data.holdout:
        raise ConfigError("--val: this recipe validates on its held-out pairs (data.holdout)")
    if teacher is not None and not r.uses_teacher:
        why = " (loss.distill_feature and loss.distill_output are 0, loss.init is not teacher)"
        raise ConfigError(f"--teacher: this {r.kind} recipe distils no teacher{why if r.kind == 'mini' else ''}")
    ctx = distributed.setup(device)
    threads_before = torch.get_num_threads()
    try:
        if threads or r.threads:
            torch.set_num_threads(threads or r.threads)
        seed = r.seed + 1000 * ctx.rank  # ranks differ only where it matters (dropout); DDP syncs the init
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(r.seed)
        if ctx.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        root = Path(data) if data is not None else Path(r.data.root) if r.data.root else data_root() / "train"
        out_dir = Path(out) if out is not None else Path("runs") / kind
        # Everything that can be refused without the data is, before the data is decoded.
        check_out_dir(out_dir, resume)
        lut_teacher = r.loss.lut_teacher if r.kind == "mini" else None
        start = r.loss.init_checkpoint if r.kind == "mini" else None
        check_outputs(folders=[out_dir], inputs=[p for p in (recipe, teacher or r.teacher, lut_teacher, start, root, val)
                                                 if isinstance(p, (str, Path))])
        t_model, t_prov = _teacher(teacher or r.teacher, r.kind) if r.uses_teacher else (None, {})
        pairs, held = split_holdout(collect_pairs(set_folders(root, r.data.sets)), r.data.holdout)
        if val is not None:
            r.val.root = str(val)
        if held:
            val_from = f"{len(held)} pairs held out of {root} ({r.data.holdout} per set)"
            val_pairs = holdout_pairs(held, r.val.pairs, r.val.crop, r.data.ir16) if ctx.is_main else []
        else:
            val_root = Path(r.val.root) if r.val.root else data_root() / "ivif" / "llvip_test"
            val_from = str(val_root)
            val_pairs = validation_pairs(val_root, r.val.pairs, r.val.crop, r.data.ir16) if ctx.is_main else []
        pool = r.data.patches if r.kind == "mini" and r.loss.uses_pool else 0
        spec = StreamSpec(r.data.crop, r.data.flip, r.seed, ctx.rank, ctx.world, pool)
        stream = CropStream(PairStore(pairs, r.data.cache, r.data.ir16), spec)
        provenance = {
            "data": {"root": str(root), "sets": r.data.sets, "pairs": len(pairs),
                     **({"ir16": r.data.ir16} if r.data.ir16 != "refuse" else {})},
            "validation": val_from,
            **({"holdout": [p.name for p in held]} if held else {}),
        }
        task = _make_task(r, stream, ctx, out_dir, resume, t_model)
        task.provenance = {**provenance, **t_prov, **task.provenance}
        return Trainer(task, r, out_dir, ctx, progress).run(resume, val_pairs)
    finally:
        torch.set_num_threads(threads_before)  # a library call must not leave the process changed
        ctx.close()


def _make_task(
    r: Recipe, stream: CropStream, ctx: RunContext, out_dir: Path, resume: bool, t_model: torch.nn.Module | None
) -> Task:
    if r.kind == "teacher":
        from lutfuse_deploy.train.teacher import TeacherTask

        return TeacherTask(r, stream, ctx.device)
    if r.kind == "lut":
        from lutfuse_deploy.train.lut import LutTask

        assert t_model is not None
        return LutTask(r, stream, ctx.device, t_model)
    from lutfuse_deploy.train.mini import MiniTask

    return MiniTask(r, stream, ctx.device, t_model, out_dir, resume, ctx.is_main, ctx.barrier)
