"""The frames every backend is timed on: one real pair resized to each size, or synthetic pixels.

All runners of the same kind and io get the *same* array objects, so a ratio between backends
compares the same work. Real content matters little for these models' speed but is the honest
default when a folder is given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lutfuse_deploy.errors import InputError
from lutfuse_deploy.profile.timing import Resolution
from lutfuse_deploy.runtime.base import Runner, vi_channels

Frame = tuple[np.ndarray, np.ndarray]  # (ir uint8 H x W, vi uint8 H x W x 3)


def synthetic_frame(res: Resolution, seed: int = 0) -> Frame:
    """Smooth gradients plus noise, so per-image normalisations (Sobel min-max) are not degenerate."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : res.height, 0 : res.width].astype(np.float32)
    base = 127.5 + 100.0 * np.sin(xx / 37.0) * np.cos(yy / 23.0)
    ir = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    vi = np.stack([np.clip(base * f + rng.normal(0, 12, base.shape), 0, 255) for f in (1.0, 0.8, 0.6)], -1)
    return ir, vi.astype(np.uint8)


def first_pair(data_dir: str | Path) -> tuple[Path, Path]:
    """The first ``ir/`` + ``vi/`` pair (by name) in ``data_dir``."""
    root = Path(data_dir)
    ir_dir, vi_dir = root / "ir", root / "vi"
    if not ir_dir.is_dir() or not vi_dir.is_dir():
        raise InputError(f"--data {root}: expected sub-folders ir/ and vi/ with matching file names")
    from lutfuse_deploy.io.images import find_pairs

    pairs, problems = find_pairs(ir_dir, vi_dir)
    if not pairs:
        why = f" ({problems[0]})" if problems else ""
        raise InputError(f"--data {root}: no ir/vi pair found{why}")
    pair = min(pairs, key=lambda p: p.name)
    return Path(pair.ir), Path(pair.vi)


def resized_frame(ir_path: Path, vi_path: Path, res: Resolution, ir16: str = "refuse") -> Frame:
    """Read a pair with the project's readers (16-bit IR mapped by ``ir16``) and resize both (bilinear) to ``res``."""
    from lutfuse_deploy.io.images import read_ir, read_vi

    return resize_frame((read_ir(ir_path, ir16), read_vi(vi_path, mode="RGB")), res)


def resize_frame(frame: Frame, res: Resolution) -> Frame:
    from PIL import Image

    ir, vi = (Image.fromarray(a).resize((res.width, res.height), Image.Resampling.BILINEAR) for a in frame)
    return np.asarray(ir, dtype=np.uint8), np.asarray(vi, dtype=np.uint8)


def first_video_frames(ir_path: str | Path, vi_path: str | Path, ir16: str = "refuse") -> Frame:
    """The first frame of each video, decoded as ``fuse`` decodes video (IR to luma, visible RGB)."""
    from lutfuse_deploy.io.video import decode, ffmpeg_errors, probe

    frames = []
    with ffmpeg_errors():
        for path, mode, bits in ((ir_path, "L", ir16), (vi_path, "RGB", None)):
            decoded = decode(probe(path), mode, bits)
            first = next(decoded, None)
            decoded.close()
            if first is None:
                raise InputError(f"--video {path}: the stream holds no frames")
            frames.append(first[1])
    ir, vi = frames
    if ir.shape[:2] != vi.shape[:2]:
        raise InputError(f"--video: {ir_path} is {ir.shape[1]}x{ir.shape[0]} but {vi_path} is "
                         f"{vi.shape[1]}x{vi.shape[0]}")
    return ir, vi


def to_batch(frame: Frame, kind: str, io: str) -> tuple[np.ndarray, np.ndarray]:
    """(ir, vi) as the Runner contract wants them: N=1, NCHW, float32 0..255 or uint8."""
    ir, vi = frame
    if vi_channels(kind) == 1:
        from PIL import Image

        vi = np.asarray(Image.fromarray(vi).convert("L"))  # ITU-R 601-2 luma, as docs/semantics.md §1 says
        vi_b = vi[None, None]
    else:
        vi_b = np.ascontiguousarray(vi.transpose(2, 0, 1))[None]
    ir_b = ir[None, None]
    dtype = np.uint8 if io == "uint8" else np.float32
    return np.ascontiguousarray(ir_b, dtype=dtype), np.ascontiguousarray(vi_b, dtype=dtype)


class InputSource:
    """``source(res, runner) -> (ir, vi)``, cached per (resolution, kind, io) for identical inputs."""

    def __init__(self, data_dir: str | Path | None = None, seed: int = 0,
                 video: tuple[str, str] | None = None, ir16: str = "refuse") -> None:
        if data_dir is not None and video:
            raise InputError("--data and --video exclude each other: give one frame source")
        if ir16 != "refuse" and data_dir is None and not video:
            raise InputError(f"--ir16 {ir16}: for --data or --video frames; synthetic inputs are 8-bit")
        self.ir16 = ir16
        self.pair = first_pair(data_dir) if data_dir is not None else None
        self.video = video or None
        self.video_frames = first_video_frames(*video, ir16) if video else None
        self.seed = seed
        self._res: Resolution | None = None
        self._frame: Frame | None = None
        self._batches: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    @property
    def description(self) -> str:
        if self.video:
            return f"first frames of {self.video[0]} + {self.video[1]}, resized (bilinear)"
        if self.pair is None:
            return f"synthetic (seed {self.seed})"
        return f"{self.pair[0]} + {self.pair[1]}, resized (bilinear)"

    def frame(self, res: Resolution) -> Frame:
        if res != self._res:  # keep one size in memory at a time
            self._res, self._batches = res, {}
            if self.video_frames is not None:
                self._frame = resize_frame(self.video_frames, res)
            else:
                self._frame = (resized_frame(*self.pair, res, self.ir16) if self.pair
                               else synthetic_frame(res, self.seed))
        assert self._frame is not None
        return self._frame

    def __call__(self, res: Resolution, runner: Runner) -> tuple[np.ndarray, np.ndarray]:
        frame = self.frame(res)
        ir_size = tuple(runner.rig.ir_size) if runner.rig is not None else (res.width, res.height)
        key = (runner.kind, runner.io, *ir_size)
        if key not in self._batches:
            if ir_size != (res.width, res.height):  # a rig lane: the same IR frame at the thermal camera's size
                from PIL import Image

                frame = (np.asarray(Image.fromarray(frame[0]).resize(ir_size, Image.Resampling.BILINEAR)), frame[1])
            self._batches[key] = to_batch(frame, runner.kind, runner.io)
        return self._batches[key]
