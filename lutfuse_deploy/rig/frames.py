"""The frame pairs a calibration looks at: one pair of images, two folders of pairs, or two videos.

A rig is fixed, so every pair of the same two cameras shows the same warp, and a refinement may pool
pairs: more scenes give more edges, and an edge that misleads in one frame is outvoted. Videos are
paired by frame index (the two cameras' frames taken together, at one rate); ``max_pairs`` pairs
spread evenly over the stream are kept.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from lutfuse_deploy.errors import InputError

FramePairs = list[tuple[np.ndarray, np.ndarray]]


def read_frame_pairs(ir: Path, vi: Path, max_pairs: int, ir16: str = "refuse") -> tuple[FramePairs, list[str]]:
    """(IR gray, visible RGB) uint8 pairs and their names; at most ``max_pairs``, spread evenly. ``ir16``:
    how 16-bit IR frames become 8-bit (``io.images.IR16_MODES``), as ``fuse --ir16`` maps them."""
    from lutfuse_deploy.io.video import is_video

    if max_pairs < 1:
        raise InputError(f"--frames must be at least 1, got {max_pairs}")
    if is_video(ir) or is_video(vi):
        if not (is_video(ir) and is_video(vi)):
            raise InputError(f"--ir {ir} and --vi {vi} must both be videos, both images or both folders")
        return _video_pairs(ir, vi, max_pairs, ir16)
    return _image_pairs(ir, vi, max_pairs, ir16)


def _spread(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when ``n <= k``)."""
    if n <= k:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, k).round()})


def _image_pairs(ir: Path, vi: Path, max_pairs: int, ir16: str) -> tuple[FramePairs, list[str]]:
    from lutfuse_deploy.io.images import find_pairs, read_ir, read_vi

    pairs, problems = find_pairs(ir, vi)
    if problems:
        raise InputError(problems[0] + (f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""))
    if not pairs:
        raise InputError(f"{ir} and {vi}: no IR and visible images share a name")
    chosen = [pairs[i] for i in _spread(len(pairs), max_pairs)]
    return [(read_ir(p.ir, ir16), read_vi(p.vi)) for p in chosen], [p.name for p in chosen]


def _video_pairs(ir: Path, vi: Path, max_pairs: int, ir16: str) -> tuple[FramePairs, list[str]]:
    from lutfuse_deploy.fuse.pairing import Pairing, pair_by_index
    from lutfuse_deploy.io.video import decode, ffmpeg_errors, probe

    ir_info, vi_info = probe(ir), probe(vi)
    if ir_info.rate and vi_info.rate and ir_info.rate != vi_info.rate:
        raise InputError(f"{ir.name} runs at {float(ir_info.rate):g} fps and {vi.name} at {float(vi_info.rate):g} "
                         "fps: calibration pairs frames by index, so give videos of one rate (or frames as images)")
    known = min(ir_info.frames, vi_info.frames)
    step = max(1, math.ceil(known / max_pairs)) if known else 1
    out: FramePairs = []
    names: list[str] = []
    with ffmpeg_errors():
        for i, (a, b) in enumerate(pair_by_index(decode(ir_info, "L", ir16), decode(vi_info, "RGB"), Pairing())):
            if i % step == 0:
                out.append((a, b))
                names.append(f"frame {i}")
            if len(out) == max_pairs:
                break
    if not out:
        raise InputError(f"{ir} and {vi}: no frames to pair")
    return out, names


def read_frame_pair(ir: str | Path, vi: str | Path, ir16: str = "refuse") -> tuple[np.ndarray, np.ndarray]:
    """One frame of each camera, as calibration reads them (IR gray, visible RGB)."""
    from lutfuse_deploy.io.images import read_ir, read_vi

    return read_ir(ir, ir16), read_vi(vi)


def check_frames_match(rig: Any, ir: np.ndarray, vi: np.ndarray, ir_path: str | Path, vi_path: str | Path) -> None:
    """Frames whose sizes are not the rig's cameras' are refused, naming the file."""
    from lutfuse_deploy.errors import RigError

    for path, image, want, role in ((ir_path, ir, rig.ir_size, "IR"), (vi_path, vi, rig.vi_size, "visible")):
        if (int(image.shape[1]), int(image.shape[0])) != tuple(want):
            raise RigError(f"{path}: {role} frame is {image.shape[1]}x{image.shape[0]}, the rig says "
                           f"{want[0]}x{want[1]}")
