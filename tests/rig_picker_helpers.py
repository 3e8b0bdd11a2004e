"""Synthetic frames with a known homography, shared by the point picker's tests (server, CLI, browser)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lutfuse_deploy.rig.file import apply_homography, rig_from_dict

IR_SIZE, VI_SIZE = (320, 256), (400, 300)
# a projective warp: the 320x256 IR frame onto most of the 400x300 visible frame
H = np.array([[1.08, 0.03, 22.0], [-0.02, 1.05, 14.0], [1.5e-4, -1e-4, 1.0]])
TRUTH = rig_from_dict({"ir_size": list(IR_SIZE), "vi_size": list(VI_SIZE), "homography": H.tolist()})
# eight IR points spread over the frame (what a person clicks: corners of warm objects)
IR_POINTS = np.array([[18, 20], [160, 14], [300, 24], [292, 128], [304, 236], [150, 242], [24, 230], [110, 110]], float)


def make_frames() -> tuple[np.ndarray, np.ndarray]:
    """An IR frame of blocks and discs, and the visible frame it becomes through H (so the overlay lines up)."""
    import cv2

    rng = np.random.default_rng(3)
    ir = np.full((IR_SIZE[1], IR_SIZE[0]), 35, np.uint8)
    for _ in range(14):
        x, y = (int(v) for v in rng.integers(5, [290, 230]))
        cv2.rectangle(ir, (x, y), (x + int(rng.integers(12, 60)), y + int(rng.integers(12, 45))), int(rng.integers(90, 250)), -1)
    for _ in range(6):
        centre = (int(rng.integers(20, 300)), int(rng.integers(20, 236)))
        cv2.circle(ir, centre, int(rng.integers(6, 18)), int(rng.integers(120, 255)), -1)
    gray = cv2.warpPerspective(ir, H, VI_SIZE, flags=cv2.INTER_LINEAR)
    vi = np.stack([255 - gray, gray // 2 + 60, gray], axis=-1).astype(np.uint8)  # another modality's look
    return ir, vi


def write_frames(folder: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """The two frames as PNG files in ``folder`` (paths) and as arrays."""
    ir, vi = make_frames()
    Image.fromarray(ir).save(folder / "ir.png")
    Image.fromarray(vi).save(folder / "vi.png")
    return folder / "ir.png", folder / "vi.png", ir, vi


def pairs(ir_points: np.ndarray = IR_POINTS) -> np.ndarray:
    """Exact point pairs (ir_x, ir_y, vi_x, vi_y) through H."""
    return np.concatenate([ir_points, apply_homography(H, ir_points)], axis=1)
