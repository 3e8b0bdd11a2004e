"""What a calibration looks like: the IR warped into the visible frame, blended and as a checkerboard.

A number (a residual, a score) says little about whether a rig is right; edges that line up (or do
not) in an overlay say it at a glance. ``warp_to_visible`` is also the float64 truth of the warp that
graphs and ``fuse --rig`` carry (bilinear, zero outside the IR frame, pixel centres at integers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lutfuse_deploy.rig.file import Rig

CHECKER_PX = 40


def sample_grid(rig: Rig) -> tuple[np.ndarray, np.ndarray]:
    """IR pixel coordinates (x, y) sampled by every output pixel, float64, each H_out x W_out."""
    x0, y0, w, h = rig.output_box()
    yy, xx = np.mgrid[y0:y0 + h, x0:x0 + w].astype(np.float64)
    inv = rig.inverse
    den = inv[2, 0] * xx + inv[2, 1] * yy + inv[2, 2]
    return (inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2]) / den, (inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]) / den


def seen_mask(rig: Rig) -> np.ndarray:
    """True where the output pixel's IR sample has full bilinear support (the thermal camera sees it)."""
    sx, sy = sample_grid(rig)
    w, h = rig.ir_size
    return (sx >= 0) & (sx <= w - 1) & (sy >= 0) & (sy <= h - 1)


def warp_to_visible(ir: np.ndarray, rig: Rig) -> np.ndarray:
    """Float64 bilinear warp of an IR frame (H x W) into the output frame; 0 outside the IR frame."""
    from scipy.ndimage import map_coordinates

    sx, sy = sample_grid(rig)
    # grid-constant: interpolate with the zero beyond the edge (GridSample's padding_mode=zeros)
    return map_coordinates(np.asarray(ir, dtype=np.float64), [sy, sx], order=1, mode="grid-constant", cval=0.0)


def crop_visible(vi: np.ndarray, rig: Rig) -> np.ndarray:
    x0, y0, w, h = rig.output_box()
    return vi[y0:y0 + h, x0:x0 + w]


def overlay_image(ir: np.ndarray, vi: np.ndarray, rig: Rig) -> np.ndarray:
    """One RGB picture of two panels: a blend (IR magenta, visible green: grey where edges agree) and
    a checkerboard of the two, with the IR frame's outline drawn on both."""
    from PIL import Image, ImageDraw

    warped = np.clip(warp_to_visible(ir, rig), 0, 255)
    vis = crop_visible(vi, rig).astype(np.float64)
    gray = vis if vis.ndim == 2 else vis @ np.array([0.299, 0.587, 0.114])
    blend = np.stack([warped, gray, warped], axis=-1)
    rgb = np.repeat(gray[..., None], 3, axis=-1) if vis.ndim == 2 else vis
    yy, xx = np.mgrid[0:gray.shape[0], 0:gray.shape[1]]
    tiles = ((yy // CHECKER_PX + xx // CHECKER_PX) % 2 == 0)[..., None]
    checker = np.where(tiles, rgb, warped[..., None])
    gap = np.full((gray.shape[0], 8, 3), 255.0)
    picture = Image.fromarray(np.rint(np.concatenate([blend, gap, checker], axis=1)).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    x0, y0, _, _ = rig.output_box()
    quad = [(float(x - x0), float(y - y0)) for x, y in rig.ir_corners_in_vi()]
    for dx in (0, gray.shape[1] + 8):
        draw.line([(x + dx, y) for x, y in quad + quad[:1]], fill=(255, 220, 0), width=2)
    return np.asarray(picture)


def write_overlay(path: str | Path, ir: np.ndarray, vi: np.ndarray, rig: Rig) -> Path:
    from lutfuse_deploy.io.images import save_png

    save_png(path, overlay_image(ir, vi, rig))
    return Path(path)
