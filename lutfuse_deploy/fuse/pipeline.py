"""The fusion loop, the same for every source and sink: read ahead -> runner -> write behind.

The source is read on one thread (PIL and FFmpeg decode outside the GIL; video inputs add one
decoder thread per stream), the runner runs on the calling thread (CUDA contexts stay on the thread
that made them) and the sink converts and writes on another (PNG compression and encoding also
release the GIL), so reading and writing overlap inference. Bounded queues keep memory flat.

Image pairs: a pair that cannot be read or fused is reported and skipped; an output that cannot be
written (disk full, no permission) stops the run, since every later pair would fail the same way.
Every file goes through a temporary name, so nothing partial is written. Videos: the output appears
only when every frame is in it.

Ctrl-C ends a run cleanly: what the runner already fused is written, the summary says what was done
and what is left (``interrupted``), and the caller reports it; a video is then discarded whole.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from lutfuse_deploy.errors import InputError, LutfuseError, OutputError
from lutfuse_deploy.fuse.convert import prepare
from lutfuse_deploy.fuse.plan import PairsPlan
from lutfuse_deploy.fuse.sinks import FolderSink, Sink, VideoSink, frames_folder
from lutfuse_deploy.fuse.sources import FolderSource, MemoryCheck, Pair, Source, VideoSource
from lutfuse_deploy.fuse.threads import QUEUE_FRAMES, ReadAhead, WriteBehind
from lutfuse_deploy.io.files import atomic_path, ensure_dir
from lutfuse_deploy.io.video import VideoWriter, ffmpeg_errors
from lutfuse_deploy.runtime.base import Runner, vi_channels


@dataclass
class FuseSummary:
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    model_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the whole run, reading and writing included
    total: int | None = None  # pairs the run set out to fuse, when known
    skipped: list[str] = field(default_factory=list)  # outputs already there (--skip-existing)
    looks_swapped: int = 0  # pairs with a colour IR and a gray visible image
    interrupted: bool = False
    out: str = ""

    @property
    def mean_model_ms(self) -> float | None:
        """None before any pair was fused (no mean of nothing)."""
        return float(np.mean(self.model_ms)) if self.model_ms else None

    @property
    def mean_total_ms(self) -> float | None:
        """Wall time per fused pair: with reading and writing overlapped, what a pair really costs."""
        return self.seconds * 1e3 / len(self.done) if self.done else None

    @property
    def left(self) -> int | None:
        """Pairs neither fused nor failed: those an interrupted run did not reach."""
        return None if self.total is None else self.total - len(self.done) - len(self.failed)

    def wrote(self, key: str, t_capture: float | None, write_s: float) -> None:
        """One output written (``t_capture``: live pairs' capture time; ``write_s``: time in the sink)."""
        self.done.append(key)

    def add_model_ms(self, ms: float) -> None:
        self.model_ms.append(ms)

    def to_dict(self) -> dict[str, object]:
        return {"done": len(self.done), "failed": len(self.failed), "skipped": len(self.skipped),
                "left": self.left, "interrupted": self.interrupted, "errors": self.failed,
                "mean_model_ms": self.mean_model_ms, "mean_total_ms": self.mean_total_ms,
                "seconds": self.seconds, "looks_swapped": self.looks_swapped, "out": self.out}


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
class VideoSummary(FuseSummary):
    rate: Fraction | None = None
    leftover: str | None = None

    @property
    def frames(self) -> int:
        return len(self.done)

    @property
    def fps(self) -> float | None:
        return self.frames / self.seconds if self.seconds > 0 and self.frames else None

    def to_dict(self) -> dict[str, object]:
        return {"frames": self.frames, "seconds": self.seconds, "fps": self.fps,
                "frame_rate": str(self.rate) if self.rate else None,
                "mean_model_ms": self.mean_model_ms, "leftover": self.leftover,
                "interrupted": self.interrupted, "out": self.out}


def run(runner: Runner, source: Source, sink: Sink, summary: FuseSummary, progress: bool = True) -> None:
    """Fuse every pair ``source`` gives into ``sink``; ``summary`` fills as pairs are written.

    Ctrl-C returns with ``summary.interrupted`` set, after writing what was fused (``Sink.interrupt``).
    """
    from tqdm import tqdm

    def consume(item: tuple[str, np.ndarray, float | None]) -> None:
        key, fused, t_capture = item
        t0 = time.perf_counter()
        sink.write(key, fused, t_capture)
        summary.wrote(key, t_capture, time.perf_counter() - t0)

    few = source.total is not None and source.total < 2
    bar = tqdm(total=source.total, unit=source.unit, disable=not (progress and sys.stderr.isatty()) or few,
               leave=False)
    # a live source is asked for its newest pair when the runner is free; anything else is read ahead
    reads: Iterator[Pair] | ReadAhead[Pair] = source.pairs() if source.live else ReadAhead(source.pairs(), "read")
    writes: WriteBehind[tuple[str, np.ndarray, float | None]] = WriteBehind(consume, "write",
                                                                            1 if source.live else QUEUE_FRAMES)
    t0 = time.perf_counter()
    try:
        with runner:
            for pair in reads:
                summary.looks_swapped += pair.looks_swapped
                fused = _infer(runner, pair, summary, source.skips_bad)
                if fused is not None:
                    writes.put((pair.key, fused, pair.t))
                bar.update(1)
                if source.live:
                    bar.set_postfix_str(source.progress(), refresh=False)  # type: ignore[attr-defined]
        writes.close()
        sink.finish()
    except KeyboardInterrupt:
        summary.interrupted = True
        _close(reads)
        try:
            writes.close()  # what the runner fused is written: complete outputs, counted as done
        except BaseException:
            sink.abort()
            raise
        sink.interrupt()
    except BaseException:
        writes.stop()
        sink.abort()
        raise
    finally:
        _close(reads)
        bar.close()
        summary.seconds = time.perf_counter() - t0


def _close(reads: Iterator[Pair] | ReadAhead[Pair]) -> None:
    """A live source's generator (which stops its cameras) or the read-ahead thread."""
    close = getattr(reads, "close", None)
    if close is not None:
        close()


def _infer(runner: Runner, pair: Pair, summary: FuseSummary, skips_bad: bool) -> np.ndarray | None:
    """The runner's output for ``pair``, or None after reporting why there is none."""
    from tqdm import tqdm

    error = pair.error
    if error is None:
        assert pair.ir is not None and pair.vi is not None
        try:
            t_ir, t_vi = prepare(pair.ir, pair.vi, runner.io)
            t1 = time.perf_counter()
            fused = runner.infer(t_ir, t_vi)[0]
            summary.add_model_ms((time.perf_counter() - t1) * 1e3)
            return fused
        except OutputError:
            raise
        except LutfuseError as exc:
            error = f"{pair.where}: {exc}"
    if not skips_bad:
        raise InputError(error)
    summary.failed.append(error)
    tqdm.write(f"error: {error}", file=sys.stderr)
    return None


def fuse_pairs(runner: Runner, plan: PairsPlan, save_float: bool = False, tanh_map: str = "minmax",
               ir16: str = "refuse", memory: MemoryCheck | None = None, progress: bool = True) -> FuseSummary:
    """Fuse the planned pairs, writing ``OUT/NAME.png`` (+ ``NAME.npy`` raw output with ``save_float``).

    ``memory`` checks each pair's size before it is decoded; a pair that would not fit is reported
    and skipped like any other bad pair.
    """
    if save_float and runner.io == "uint8":
        raise InputError("--save-float needs a float-io model; this one takes and returns uint8")
    for folder in {png.parent for png, _ in plan.targets.values()}:
        ensure_dir(folder)
    vi_mode = "RGB" if vi_channels(runner.kind) == 3 else "L"
    source = FolderSource(plan.pairs, vi_mode=vi_mode, ir16=ir16, check=runner.check_pair_sizes, memory=memory)
    summary = FuseSummary(failed=list(plan.problems), total=len(plan.pairs) + len(plan.problems),
                          skipped=list(plan.skipped), out=str(plan.out))
    run(runner, source, FolderSink(plan.targets, runner.kind, tanh_map), summary, progress)
    return summary


def memory_check(runner: Runner, device: str) -> MemoryCheck:
    """Each pair's estimated peak against the memory available when the run starts
    (``runtime.memory``; measured once, so the run's own use is not counted twice)."""
    from lutfuse_deploy.runtime.memory import available_mib, check_memory, memory_device

    where = memory_device(runner.backend, device)
    have = available_mib()

    def check(size: tuple[int, int]) -> None:
        check_memory(runner.kind, runner.backend, where, size, available=have)

    return check


class _Discard(Exception):
    """Raised inside ``atomic_path`` so an interrupted video is not renamed into place."""


def fuse_video(runner: Runner, ir_path: str | Path, vi_path: str | Path, out_path: str | Path,
               options: VideoOptions | None = None, memory: MemoryCheck | None = None,
               progress: bool = True) -> VideoSummary:
    """Fuse ``ir_path`` with ``vi_path`` into ``out_path`` (container from its suffix) at the input rate.

    ``memory`` checks the frame size once, before anything is decoded. Interrupted: nothing is written
    and the summary says so.
    """
    opts = options or VideoOptions()
    vi_mode = "RGB" if vi_channels(runner.kind) == 3 else "L"
    source = VideoSource(ir_path, vi_path, vi_mode, opts.ir16, opts.resample_to, runner.check_pair_sizes)
    out = Path(out_path)
    if out.resolve() in (source.ir.path.resolve(), source.vi.path.resolve()):
        raise InputError(f"--out {out} is one of the inputs")
    if memory is not None:
        try:
            memory(source.size)
        except InputError as exc:
            raise InputError(f"{source.vi.path}: {exc}") from None
    summary = VideoSummary(rate=source.rate, total=source.total, out=str(out))
    try:
        with ffmpeg_errors(), atomic_path(out) as tmp, frames_folder(opts.save_frames) as frames_dir:
            width, height = runner.output_size(source.size)
            writer = VideoWriter(tmp, source.rate, width, height, opts.encoder, opts.crf, opts.bitrate, opts.pix_fmt)
            run(runner, source, VideoSink(writer, runner.kind, opts.tanh_map, frames_dir), summary, progress)
            if summary.interrupted:
                raise _Discard
            summary.leftover = source.leftover()
            if summary.leftover and not opts.trim:
                raise InputError(f"{summary.leftover}; nothing written (--trim keeps the {summary.frames} fused "
                                 "frames)")
            if not summary.done:
                raise InputError(f"{source.ir.path.name} and {source.vi.path.name}: no frame pairs to fuse")
    except _Discard:
        pass
    return summary
