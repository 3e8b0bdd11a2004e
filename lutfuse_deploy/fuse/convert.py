"""Arrays between images and runners: uint8 images to a batch of one, a runner's output to 8 bits."""

from __future__ import annotations

import numpy as np

from lutfuse_deploy.errors import InputError

TANH_MAPS = ("minmax", "clip")


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
