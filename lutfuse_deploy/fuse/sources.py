"""What fusion reads from: folders or single pairs of images, and pairs of video files.

A source yields ``Pair`` items on the read-ahead thread, in output order. A pair that cannot be used
(unreadable file, sizes the runner cannot fuse) comes as a ``Pair`` with ``error`` set, so the
pipeline reports it and goes on; a fault that ends the whole input (a corrupt video stream) raises.

Whether an IR and a visible size can be fused together is the runner's rule (``PairCheck``): equal
sizes for a plain model; a rig runner, which warps the IR onto the visible camera, accepts others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import numpy as np

from lutfuse_deploy.errors import InputError, LutfuseError
from lutfuse_deploy.fuse.pairing import Pairing, pair_by_index, pair_by_time
from lutfuse_deploy.fuse.threads import ReadAhead
from lutfuse_deploy.io.images import MIN_SIDE, ImagePair, read_pair
from lutfuse_deploy.io.video import VideoInfo, decode, probe
from lutfuse_deploy.runtime.base import same_size

#: (IR width, height), (visible width, height) -> why they cannot be fused together, or None
#: (``Runner.check_pair_sizes``).
PairCheck = Callable[[tuple[int, int], tuple[int, int]], "str | None"]
#: (width, height) of a pair about to be read -> raises ``InputError`` when it would not fit in memory.
MemoryCheck = Callable[[tuple[int, int]], None]


def _wh(image: np.ndarray) -> tuple[int, int]:
    return int(image.shape[1]), int(image.shape[0])


@dataclass
class Pair:
    """One IR/visible pair for the runner, or why it cannot be fused (``error``)."""

    key: str  # the output's name: the image pair's stem, or the frame index
    where: str  # the files it came from, for messages
    ir: np.ndarray | None = None
    vi: np.ndarray | None = None
    error: str | None = None
    looks_swapped: bool = False  # colour IR with a gray visible image
    t: float | None = None  # capture time on this host's monotonic clock (live cameras), for latency


class Source(Protocol):
    """What the pipeline needs from an input."""

    unit: str  # "pair" or "frame": the progress bar's unit
    total: int | None  # pairs expected, when known
    skips_bad: bool  # a bad pair is reported and skipped (folders), or ends the run (a video's frames)
    live: bool  # pairs come when asked for, newest first (live cameras): no read-ahead, nothing queued

    def pairs(self) -> Iterator[Pair]:
        """Runs on the read-ahead thread."""
        ...


@dataclass
class FolderSource:
    """Image pairs (two folders of same-named files, or one pair of files), read in order."""

    pairs_to_read: list[ImagePair]
    vi_mode: str = "RGB"
    ir16: str = "refuse"
    check: PairCheck = same_size
    memory: MemoryCheck | None = None
    unit: str = "pair"
    skips_bad: bool = True
    live: bool = False
    total: int | None = field(init=False)

    def __post_init__(self) -> None:
        self.total = len(self.pairs_to_read)

    def pairs(self) -> Iterator[Pair]:
        for image_pair in self.pairs_to_read:
            yield self.read(image_pair)

    def read(self, pair: ImagePair) -> Pair:
        where = f"{pair.ir} and {pair.vi}"
        try:
            if self.memory is not None:
                self._check_memory(pair, self.memory)
            images = read_pair(pair, vi_mode=self.vi_mode, ir16=self.ir16, check_swap=True)
            ir_wh, vi_wh = _wh(images.ir), _wh(images.vi)
            why = self.check(ir_wh, vi_wh)
            if why is not None:
                raise InputError(f"{pair.name}: size mismatch, ir {pair.ir.name} is {ir_wh[0]}x{ir_wh[1]} but "
                                 f"vi {pair.vi.name} is {vi_wh[0]}x{vi_wh[1]} ({why})")
            if min(ir_wh + vi_wh) < MIN_SIDE:
                small = ir_wh if min(ir_wh) < MIN_SIDE else vi_wh
                raise InputError(f"{pair.name}: image is {small[0]}x{small[1]}, smaller than 3x3")
        except LutfuseError as exc:
            return Pair(pair.name, where, error=str(exc))
        return Pair(pair.name, where, images.ir, images.vi, looks_swapped=images.looks_swapped)

    @staticmethod
    def _check_memory(pair: ImagePair, memory: MemoryCheck) -> None:
        """Before decoding: the larger image of the pair (the visible one's size is the output's with a
        rig) against the memory there is; the error names that file."""
        sized = [(s, p) for p in (pair.ir, pair.vi) if (s := header_size(p)) is not None]
        if not sized:
            return
        size, path = max(sized, key=lambda sp: sp[0][0] * sp[0][1])
        try:
            memory(size)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None


def header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the image header only, nothing decoded (EXIF rotation does not change
    the pixel count); None when it cannot be read (the reader then reports the file)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size
    except Exception:  # noqa: BLE001 - unreadable files are reported by the reader, with the reason
        return None


def check_streams(ir: VideoInfo, vi: VideoInfo, resample_to: str | None, check: PairCheck = same_size) -> Fraction:
    """Refuse what cannot be paired before decoding anything; returns the output frame rate."""
    why = check((ir.width, ir.height), (vi.width, vi.height))
    if why is not None:
        raise InputError(f"{ir.path.name} is {ir.size} but {vi.path.name} is {vi.size}: {why}")
    if resample_to is None:
        # containers round rates differently (30000/1001 vs 2997/100): within 0.1 % is the same rate
        if ir.rate and vi.rate and abs(ir.rate - vi.rate) > ir.rate / 1000:
            raise InputError(f"{ir.path.name} is {float(ir.rate):.6g} fps and {vi.path.name} {float(vi.rate):.6g} fps: "
                             "pass --resample-to ir (or vi) to pair frames by nearest timestamp")
    elif resample_to not in ("ir", "vi"):
        raise InputError(f"--resample-to {resample_to!r}: choose ir or vi")
    lead = vi if resample_to == "vi" else ir
    other = ir if resample_to == "vi" else vi
    for v in (lead, other) if resample_to else ():
        if v.rate is None:
            raise InputError(f"{v.path.name}: the container gives no frame rate to pair by time")
    rate = lead.rate or other.rate
    if rate is None:
        raise InputError(f"{lead.path.name}: the container gives no frame rate")
    return rate


class VideoSource:
    """Two video files, decoded on one thread each and paired by index or by nearest time."""

    unit = "frame"
    skips_bad = False  # a video with a frame missing is not the video asked for
    live = False

    def __init__(self, ir_path: str | Path, vi_path: str | Path, vi_mode: str, ir16: str = "refuse",
                 resample_to: str | None = None, check: PairCheck = same_size) -> None:
        self.ir, self.vi = probe(ir_path), probe(vi_path)
        self.rate = check_streams(self.ir, self.vi, resample_to, check)
        self.vi_mode, self.ir16, self.resample_to, self.check = vi_mode, ir16, resample_to, check
        self.total: int | None = (self.ir if resample_to != "vi" else self.vi).frames or None
        self.stats = Pairing(rates=(self.ir.rate, self.vi.rate))

    @property
    def size(self) -> tuple[int, int]:
        """The output frame size: the visible camera's (a rig warps the IR onto it)."""
        return self.vi.width, self.vi.height

    def pairs(self) -> Iterator[Pair]:
        ir_frames: ReadAhead[tuple[float, np.ndarray]] = ReadAhead(decode(self.ir, "L", self.ir16), "decode-ir")
        vi_frames: ReadAhead[tuple[float, np.ndarray]] = ReadAhead(decode(self.vi, self.vi_mode), "decode-vi")
        try:
            if self.resample_to is None:
                frames = pair_by_index(iter(ir_frames), iter(vi_frames), self.stats)
            else:
                lead_is_ir = self.resample_to == "ir"
                lead, other = (ir_frames, vi_frames) if lead_is_ir else (vi_frames, ir_frames)
                lead_rate, other_rate = (self.ir.rate, self.vi.rate) if lead_is_ir else (self.vi.rate, self.ir.rate)
                assert lead_rate is not None and other_rate is not None  # check_streams refused unknown rates
                frames = pair_by_time(iter(lead), iter(other), lead_rate, other_rate, self.stats, lead_is_ir)
            for index, (a, b) in enumerate(frames):
                why = self.check(_wh(a), _wh(b))
                if why is not None:
                    raise InputError(f"frame {index}: {self.ir.path.name} is {a.shape[1]}x{a.shape[0]} but "
                                     f"{self.vi.path.name} is {b.shape[1]}x{b.shape[0]} ({why})")
                yield Pair(f"{index:06d}", f"frame {index} of {self.ir.path.name} and {self.vi.path.name}", a, b)
        finally:
            ir_frames.close()
            vi_frames.close()

    def leftover(self) -> str | None:
        """The frames of either stream left without a partner, once the run is over."""
        return self.stats.leftover(self.ir.path, self.vi.path)
