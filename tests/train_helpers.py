"""Synthetic training data for the training tests: tiny, structured (blobs and stripes), no shared data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SETS = ("msrs", "llvip", "roadscene")


def _pair(seed: int, h: int = 72, w: int = 80) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    ir = 30 + rng.normal(0, 4, (h, w))
    for _ in range(3):  # warm targets
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, 10)
        ir += 180 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    base = 120 + 60 * np.sin(xx / rng.uniform(3, 6)) * np.cos(yy / rng.uniform(4, 8))
    vi = np.stack([base + rng.normal(0, 6, (h, w)) + 10 * c for c in range(3)], axis=2)
    return np.clip(ir, 0, 255).astype(np.uint8), np.clip(vi, 0, 255).astype(np.uint8)


def make_train_data(root: Path, pairs_per_set: int = 2) -> Path:
    """``root/train/{msrs,llvip,roadscene}/{ir,vi}`` plus ``root/val/{ir,vi}``; returns root/train."""
    seed = 0
    for name in (*SETS, "val"):
        folder = root / "train" / name if name != "val" else root / "val"
        (folder / "ir").mkdir(parents=True, exist_ok=True)
        (folder / "vi").mkdir(parents=True, exist_ok=True)
        for i in range(pairs_per_set):
            ir, vi = _pair(seed)
            seed += 1
            Image.fromarray(ir).save(folder / "ir" / f"{i:03d}.png")
            Image.fromarray(vi).save(folder / "vi" / f"{i:03d}.png")
    return root / "train"
