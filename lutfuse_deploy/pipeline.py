"""Fuse image pairs with any runner and write 8-bit PNGs (and optionally the raw float output).

Per-pair problems are collected, not raised: one bad file never stops a folder, and nothing partial
is written (every file goes through a temporary name).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lutfuse_deploy.errors import InputError, LutfuseError, OutputError
from lutfuse_deploy.io.files import ensure_dir
from lutfuse_deploy.io.images import IMAGE_EXTS, ImagePair, load_pair, save_npy, save_png
from lutfuse_deploy.runtime.base import Runner, vi_channels

TANH_MAPS = ("minmax", "clip")


@dataclass
class FuseSummary:
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    model_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)

    @property
    def mean_model_ms(self) -> float:
        return float(np.mean(self.model_ms)) if self.model_ms else float("nan")

    @property
    def mean_total_ms(self) -> float:
        return float(np.mean(self.total_ms)) if self.total_ms else float("nan")

    def to_dict(self) -> dict[str, object]:
        return {"done": len(self.done), "failed": len(self.failed), "errors": self.failed,
                "mean_model_ms": self.mean_model_ms, "mean_total_ms": self.mean_total_ms}


def to_8bit(fused: np.ndarray, kind: str, tanh_map: str = "minmax") -> np.ndarray:
    """One output (C x H x W, float) to uint8 H x W x 3 (LUT-Fuse) or H x W (MMDRFuse).

    LUT-Fuse: clamp [0, 1], x255, round. MMDRFuse tanh: ``minmax`` stretches each image to 0..255
    as the official test script does (the papers' numbers use it); ``clip`` takes the [0, 1] part
    of tanh as intensity, keeping absolute brightness comparable across frames (video).
    """
    if fused.dtype == np.uint8:
        return fused.transpose(1, 2, 0) if kind == "lutfuse" else fused[0]
    if kind == "lutfuse":
        return np.clip(np.rint(fused.transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)
    t = fused[0].astype(np.float64)
    if tanh_map == "minmax":
        lo, hi = t.min(), t.max()
        t = (t - lo) / (hi - lo) if hi > lo else np.zeros_like(t)
    elif tanh_map != "clip":
        raise InputError(f"unknown tanh mapping {tanh_map!r}; choose one of {', '.join(TANH_MAPS)}")
    return np.clip(np.rint(t * 255.0), 0, 255).astype(np.uint8)


def prepare(ir: np.ndarray, vi: np.ndarray, io: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 H x W / H x W (x 3) images to a batch of one in the runner's io dtype."""
    vi_chw = vi.transpose(2, 0, 1) if vi.ndim == 3 else vi[None]
    dtype = np.uint8 if io == "uint8" else np.float32
    return ir[None, None].astype(dtype), vi_chw[None].astype(dtype)


def plan_outputs(pairs: list[ImagePair], out: str | Path, save_float: bool = False) -> list[tuple[Path, Path | None]]:
    """Where each pair's PNG (and raw ``.npy``) goes: ``OUT/NAME.png``, or OUT itself for one pair.

    ``--out fused.png`` with one pair names the file; with several pairs it is refused, since a
    folder called ``fused.png`` is never what was meant.
    """
    out = Path(out)
    if out.suffix.lower() in IMAGE_EXTS and not out.is_dir():
        if out.suffix.lower() != ".png":
            raise OutputError(f"{out}: fuse writes PNG; name the output NAME.png or give a folder")
        if len(pairs) != 1:
            raise OutputError(f"{out}: a file name takes one pair, these are {len(pairs)}; give a folder")
        return [(out, out.with_suffix(".npy") if save_float else None)]
    return [(out / f"{p.name}.png", out / f"{p.name}.npy" if save_float else None) for p in pairs]


def rig_sizes(runner: Runner) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The (W, H) of each camera a rig-carrying runner takes, or None (both frames one size)."""
    rig = runner.rig
    return None if rig is None else (tuple(rig.ir_size), tuple(rig.vi_size))


def fuse_pairs(
    runner: Runner,
    pairs: list[ImagePair],
    out_dir: str | Path,
    save_float: bool = False,
    tanh_map: str = "minmax",
    ir16: str = "refuse",
    progress: bool = True,
) -> FuseSummary:
    """Fuse every pair, writing ``OUT/NAME.png`` (+ ``NAME.npy`` raw output with ``save_float``).

    A pair that cannot be read is reported and skipped; an output that cannot be written (disk
    full, no permission) stops the run with ``OutputError``: every later pair would fail the same way.
    """
    from tqdm import tqdm

    if save_float and runner.io == "uint8":
        raise InputError("--save-float needs a float-io model; this one takes and returns uint8")
    targets = plan_outputs(pairs, out_dir, save_float)
    for folder in {png.parent for png, _ in targets}:
        ensure_dir(folder)
    summary = FuseSummary()
    vi_mode = "RGB" if vi_channels(runner.kind) == 3 else "L"
    bar = tqdm(pairs, unit="pair", disable=not progress or len(pairs) < 2, leave=False)
    with runner:
        for pair, (png, npy) in zip(bar, targets):
            t0 = time.perf_counter()
            try:
                ir, vi = load_pair(pair, vi_mode=vi_mode, ir16=ir16, sizes=rig_sizes(runner))
                t_ir, t_vi = prepare(ir, vi, runner.io)
                t1 = time.perf_counter()
                fused = runner.infer(t_ir, t_vi)[0]
                model_ms = (time.perf_counter() - t1) * 1e3
                if npy is not None:
                    raw = fused.transpose(1, 2, 0) if runner.kind == "lutfuse" else fused[0]
                    save_npy(npy, raw.astype(np.float32))
                save_png(png, to_8bit(fused, runner.kind, tanh_map))
            except OutputError:
                raise
            except LutfuseError as exc:
                summary.failed.append(str(exc))
                tqdm.write(f"error: {exc}", file=sys.stderr)
                continue
            summary.done.append(pair.name)
            summary.model_ms.append(model_ms)
            summary.total_ms.append((time.perf_counter() - t0) * 1e3)
    return summary
