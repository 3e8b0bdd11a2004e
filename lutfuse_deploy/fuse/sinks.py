"""Where fused images go: PNG (and raw .npy) files in a folder, a video file, a folder of frames.

A sink's ``write`` runs on the write-behind thread, in the order the pairs were read; it turns the
runner's output into 8 bits there, so the runner's thread only runs the model. ``finish`` completes
the output after the last pair; ``abort`` discards what cannot be completed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import numpy as np

from lutfuse_deploy.errors import InputError, OutputError
from lutfuse_deploy.fuse.convert import to_8bit
from lutfuse_deploy.io.images import IMAGE_EXTS, ImagePair, save_npy, save_png
from lutfuse_deploy.io.video import VideoWriter

#: zlib level of fused PNGs: level 1 wrote fused 640x480 RGB MSRS frames 4-5x faster than PIL's
#: default 6, for files 14 % larger (same pixels), so writing keeps up with the model (docs/performance.md).
PNG_LEVEL = 1


class Sink(Protocol):
    """What the pipeline needs from an output."""

    def write(self, key: str, fused: np.ndarray, t_capture: float | None = None) -> None:
        """One runner output (C x H x W); runs on the write-behind thread. ``t_capture``: when a live
        pair was captured (host monotonic seconds), else None."""
        ...

    def finish(self) -> None:
        """After the last pair, on success."""
        ...

    def abort(self) -> None:
        """After a fault: leave no partial output."""
        ...

    def interrupt(self) -> None:
        """After Ctrl-C, once every fused pair was written: keep what stands on its own (image files;
        a live recording would be finalized here) and discard the rest."""
        ...


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


@contextlib.contextmanager
def frames_folder(target: Path | None) -> Iterator[Path | None]:
    """``--save-frames DIR``: PNGs go to a hidden folder inside DIR and move in only on success; a
    DIR this run created is removed again when the run fails or is interrupted."""
    if target is None:
        yield None
        return
    if target.exists() and not target.is_dir():
        raise InputError(f"--save-frames {target}: exists and is not a folder")
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".frames.", dir=target))
    try:
        yield tmp
        for png in sorted(tmp.iterdir()):
            os.replace(png, target / png.name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                target.rmdir()  # only if empty: never removes what is not ours
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

class FolderSink:
    """``OUT/NAME.png`` per pair (+ ``NAME.npy``, the raw output), each written atomically."""

    def __init__(self, targets: dict[str, tuple[Path, Path | None]], kind: str, tanh_map: str) -> None:
        self.targets, self.kind, self.tanh_map = targets, kind, tanh_map

    def write(self, key: str, fused: np.ndarray, t_capture: float | None = None) -> None:
        png, npy = self.targets[key]
        if npy is not None:
            raw = fused.transpose(1, 2, 0) if self.kind == "lutfuse" else fused[0]
            save_npy(npy, raw.astype(np.float32))
        save_png(png, to_8bit(fused, self.kind, self.tanh_map), compress_level=PNG_LEVEL)

    def finish(self) -> None:
        """Every file was complete when it was renamed into place: nothing left to do."""

    def abort(self) -> None:
        """Files already written are complete fused pairs and stay; nothing else was written."""

    def interrupt(self) -> None:
        """Every file written is a complete fused pair: they stay, and --skip-existing continues."""


class VideoSink:
    """Encode each fused frame into an open ``VideoWriter`` (and ``frames_dir/NNNNNN.png``)."""

    def __init__(self, writer: VideoWriter, kind: str, tanh_map: str, frames_dir: Path | None = None) -> None:
        self.writer, self.kind, self.tanh_map, self.frames_dir = writer, kind, tanh_map, frames_dir

    def write(self, key: str, fused: np.ndarray, t_capture: float | None = None) -> None:
        image = to_8bit(fused, self.kind, self.tanh_map)
        self.writer.write(image)
        if self.frames_dir is not None:
            save_png(self.frames_dir / f"{key}.png", image, compress_level=PNG_LEVEL)

    def finish(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.abort()

    def interrupt(self) -> None:
        """A video file is written whole or not at all (the caller discards the temporary)."""
        self.writer.abort()


class LiveFramesSink:
    """Live pairs as ``OUT/NNNNNN.png`` (the pair's number) and one line per frame in ``OUT/frames.csv``
    (file, capture time in seconds from the first pair): each PNG written atomically, so whatever
    ends the run, every file there is a complete fused frame."""

    def __init__(self, folder: Path, kind: str, tanh_map: str) -> None:
        self.folder, self.kind, self.tanh_map = folder, kind, tanh_map
        self.t0: float | None = None
        self.index = open(folder / "frames.csv", "w", encoding="utf-8")  # noqa: SIM115 - closed in finish()
        self.index.write("file,capture_s\n")

    def write(self, key: str, fused: np.ndarray, t_capture: float | None = None) -> None:
        save_png(self.folder / f"{key}.png", to_8bit(fused, self.kind, self.tanh_map), compress_level=PNG_LEVEL)
        if t_capture is not None and self.t0 is None:
            self.t0 = t_capture
        when = "" if t_capture is None or self.t0 is None else f"{t_capture - self.t0:.6f}"
        self.index.write(f"{key}.png,{when}\n")
        self.index.flush()

    def finish(self) -> None:
        self.index.close()

    def abort(self) -> None:
        """Frames written are complete and stay (a camera that failed mid-run leaves what was fused)."""
        self.index.close()

    def interrupt(self) -> None:
        self.index.close()


class LiveVideoSink:
    """Encode live pairs as they come: the writer opens at the first frame (its size and the cameras'
    rate are known only then), and each frame is placed at its capture time in periods of ``rate``,
    so frames dropped upstream leave a gap in time, not a faster video."""

    def __init__(self, target: str, rate: Callable[[], float | None], encoder: str, crf: int | None,
                 bitrate: str | None, pix_fmt: str | None, container_format: str | None,
                 codec_options: dict[str, str], kind: str, tanh_map: str) -> None:
        self.target, self.rate, self.kind, self.tanh_map = target, rate, kind, tanh_map
        self.settings = (encoder, crf, bitrate, pix_fmt, container_format, codec_options)
        self.writer: VideoWriter | None = None
        self.t0 = 0.0
        self.last_pts = -1

    def write(self, key: str, fused: np.ndarray, t_capture: float | None = None) -> None:
        image = to_8bit(fused, self.kind, self.tanh_map)
        if self.writer is None:
            encoder, crf, bitrate, pix_fmt, fmt, options = self.settings
            rate = Fraction(self.rate() or 30).limit_denominator(1001)
            self.writer = VideoWriter(self.target, rate, image.shape[1], image.shape[0], encoder, crf, bitrate,
                                      pix_fmt, fmt, {"g": str(max(1, round(rate))), **options})
            self.t0 = t_capture or 0.0
        pts = self.last_pts + 1
        if t_capture is not None:
            pts = max(pts, round((t_capture - self.t0) * float(self.writer.rate)))
        self.writer.write(image, pts)
        self.last_pts = pts

    def finish(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()

    def interrupt(self) -> None:
        """A recording stopped by Ctrl-C is kept: finalized like one that ran its course."""
        self.finish()
