"""Fuse an IR video with a visible video into one fused video, with any runner.

Three stages overlap: one thread per input decodes (and converts to the model's channels), the
calling thread pairs frames and runs the model (CUDA contexts stay on the thread that made them), and
one thread encodes and writes PNGs. Bounded queues between them keep memory flat. The output goes
through a temporary name and appears only when every frame is in it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from lutfuse_deploy.errors import InputError
from lutfuse_deploy.io.files import atomic_path
from lutfuse_deploy.io.video import (
    Pairing,
    VideoInfo,
    VideoWriter,
    decode,
    ffmpeg_errors,
    pair_by_index,
    pair_by_time,
    probe,
)
from lutfuse_deploy.pipeline import prepare, to_8bit
from lutfuse_deploy.runtime.base import Runner, vi_channels

T = TypeVar("T")
QUEUE_FRAMES = 4  # per stage: enough to hide jitter, small enough for 4K frames


@dataclass
class VideoOptions:
    encoder: str = "libx264"
    crf: int | None = None
    bitrate: str | None = None
    pix_fmt: str | None = None
    resample_to: str | None = None  # None: rates must match (pair by index); "ir"/"vi": nearest in time
    trim: bool = False  # different lengths: keep the pairs instead of refusing
    tanh_map: str = "clip"
    ir16: str = "refuse"  # IR frames of more than 8 bits: refuse, or minmax/percentile/linear as for images
    save_frames: Path | None = None


@dataclass
class VideoSummary:
    frames: int = 0
    seconds: float = 0.0
    rate: Fraction | None = None
    model_ms: list[float] = field(default_factory=list)
    leftover: str | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")

    @property
    def mean_model_ms(self) -> float:
        return float(np.mean(self.model_ms)) if self.model_ms else float("nan")

    def to_dict(self) -> dict[str, object]:
        return {"frames": self.frames, "seconds": self.seconds, "fps": self.fps,
                "frame_rate": str(self.rate) if self.rate else None,
                "mean_model_ms": self.mean_model_ms, "leftover": self.leftover}


class Background(Generic[T]):
    """Run an iterator in a thread and hand its items over a bounded queue; errors re-raise here."""

    def __init__(self, items: Iterable[T], name: str, maxsize: int = QUEUE_FRAMES) -> None:
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items,), name=name, daemon=True)
        self._thread.start()

    def _run(self, items: Iterable[T]) -> None:
        try:
            for item in items:
                if not self._put(("item", item)):
                    break
            else:
                self._put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            self._put(("error", exc))
        finally:
            close = getattr(items, "close", None)
            if close:
                close()

    def _put(self, message: tuple[str, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(message, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        while True:
            kind, value = self._queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class Sink(Generic[T]):
    """The consumer twin of ``Background``: ``put`` items, a thread applies ``consume`` in order."""

    def __init__(self, consume: Callable[[T], None], name: str, maxsize: int = QUEUE_FRAMES) -> None:
        self._items: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize)
        self._consume = consume
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            more, item = self._items.get()
            if not more:
                return
            if self._error is None:
                try:
                    self._consume(item)
                except BaseException as exc:  # noqa: BLE001 - re-raised on the producer's thread
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: T) -> None:
        self._raise()
        self._items.put((True, item))

    def stop(self) -> None:
        """Let the thread finish what is queued and end (idempotent; errors stay for ``close``)."""
        if self._thread.is_alive():
            self._items.put((False, None))
            self._thread.join()

    def close(self) -> None:
        self.stop()
        self._raise()


def check_streams(ir: VideoInfo, vi: VideoInfo, resample_to: str | None) -> Fraction:
    """Refuse what cannot be paired before decoding anything; returns the output frame rate."""
    if (ir.width, ir.height) != (vi.width, vi.height):
        raise InputError(f"{ir.path.name} is {ir.size} but {vi.path.name} is {vi.size}: "
                         "the streams must have the same frame size")
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


def fuse_video(runner: Runner, ir_path: str | Path, vi_path: str | Path, out_path: str | Path,
               options: VideoOptions | None = None, progress: bool = True) -> VideoSummary:
    """Fuse ``ir_path`` with ``vi_path`` into ``out_path`` (container from its suffix) at the input rate."""
    opts = options or VideoOptions()
    ir, vi = probe(ir_path), probe(vi_path)
    rate = check_streams(ir, vi, opts.resample_to)
    out = Path(out_path)
    if out.resolve() in (ir.path.resolve(), vi.path.resolve()):
        raise InputError(f"--out {out} is one of the inputs")
    summary = VideoSummary(rate=rate)
    with ffmpeg_errors(), atomic_path(out) as tmp, frames_folder(opts.save_frames) as frames_dir:
        writer = VideoWriter(tmp, rate, ir.width, ir.height, opts.encoder, opts.crf, opts.bitrate, opts.pix_fmt)
        try:
            _run(runner, ir, vi, writer, frames_dir, opts, summary, progress)
            writer.close()
        except BaseException:
            writer.abort()
            raise
    return summary


def _run(runner: Runner, ir: VideoInfo, vi: VideoInfo, writer: VideoWriter, frames_dir: Path | None,
         opts: VideoOptions, summary: VideoSummary, progress: bool) -> None:
    from tqdm import tqdm

    from lutfuse_deploy.io.images import save_png

    def consume(item: tuple[int, np.ndarray]) -> None:
        index, image = item
        writer.write(image)
        if frames_dir is not None:
            save_png(frames_dir / f"{index:06d}.png", image)

    vi_mode = "RGB" if vi_channels(runner.kind) == 3 else "L"
    ir_frames: Background[tuple[float, np.ndarray]] = Background(decode(ir, "L", opts.ir16), "decode-ir")
    vi_frames: Background[tuple[float, np.ndarray]] = Background(decode(vi, vi_mode), "decode-vi")
    sink: Sink[tuple[int, np.ndarray]] = Sink(consume, "encode")
    stats = Pairing(rates=(ir.rate, vi.rate))
    if opts.resample_to is None:
        pairs = pair_by_index(iter(ir_frames), iter(vi_frames), stats)
    else:
        lead_is_ir = opts.resample_to == "ir"
        lead, other = (ir_frames, vi_frames) if lead_is_ir else (vi_frames, ir_frames)
        lead_rate, other_rate = (ir.rate, vi.rate) if lead_is_ir else (vi.rate, ir.rate)
        assert lead_rate is not None and other_rate is not None  # check_streams refused unknown rates
        pairs = pair_by_time(iter(lead), iter(other), lead_rate, other_rate, stats, lead_is_ir)
    total = (ir if opts.resample_to != "vi" else vi).frames or None
    bar = tqdm(total=total, unit="frame", disable=not (progress and sys.stderr.isatty()), leave=False)
    t0 = time.perf_counter()
    try:
        with runner:
            for index, (a, b) in enumerate(pairs):
                if a.shape[:2] != b.shape[:2]:
                    raise InputError(f"frame {index}: {ir.path.name} is {a.shape[1]}x{a.shape[0]} but "
                                     f"{vi.path.name} is {b.shape[1]}x{b.shape[0]}")
                t_ir, t_vi = prepare(a, b, runner.io)
                t1 = time.perf_counter()
                fused = runner.infer(t_ir, t_vi)[0]
                summary.model_ms.append((time.perf_counter() - t1) * 1e3)
                sink.put((index, to_8bit(fused, runner.kind, opts.tanh_map)))
                bar.update(1)
        sink.close()
    finally:
        sink.stop()
        bar.close()
        ir_frames.close()
        vi_frames.close()
    summary.frames = stats.pairs
    summary.seconds = time.perf_counter() - t0
    summary.leftover = stats.leftover(ir.path, vi.path)
    if summary.leftover and not opts.trim:
        raise InputError(f"{summary.leftover}; nothing written (--trim keeps the {stats.pairs} fused frames)")
    if stats.pairs == 0:
        raise InputError(f"{ir.path.name} and {vi.path.name}: no frame pairs to fuse")


@contextlib.contextmanager
def frames_folder(target: Path | None) -> Iterator[Path | None]:
    """``--save-frames DIR``: PNGs go to a hidden folder inside DIR and move in only on success."""
    if target is None:
        yield None
        return
    if target.exists() and not target.is_dir():
        raise InputError(f"--save-frames {target}: exists and is not a folder")
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".frames.", dir=target))
    try:
        yield tmp
        for png in sorted(tmp.iterdir()):
            os.replace(png, target / png.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
