"""The fusion loop, the same for every source and sink: read ahead -> runner -> write behind.

The source is read on one thread (PIL and FFmpeg decode outside the GIL; video inputs add one
decoder thread per stream), the runner runs on the calling thread (CUDA contexts stay on the thread
that made them) and the sink converts and writes on another (PNG compression and encoding also
release the GIL), so reading and writing overlap inference. Bounded queues keep memory flat.

Image pairs: a pair that cannot be read or fused is reported and skipped; an output that cannot be
written (disk full, no permission) stops the run, since every later pair would fail the same way.
Every file goes through a temporary name, so nothing partial is written. Videos: the output appears
only when every frame is in it.
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
from lutfuse_deploy.fuse.sinks import FolderSink, Sink, VideoSink, frames_folder, plan_outputs
from lutfuse_deploy.fuse.sources import FolderSource, Pair, Source, VideoSource
from lutfuse_deploy.fuse.threads import QUEUE_FRAMES, ReadAhead, WriteBehind
from lutfuse_deploy.io.files import atomic_path, ensure_dir
from lutfuse_deploy.io.images import ImagePair
from lutfuse_deploy.io.video import VideoWriter, ffmpeg_errors
from lutfuse_deploy.runtime.base import Runner, vi_channels


@dataclass
class FuseSummary:
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    model_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the whole run, reading and writing included

    @property
    def mean_model_ms(self) -> float:
        return float(np.mean(self.model_ms)) if self.model_ms else float("nan")

    @property
    def mean_total_ms(self) -> float:
        """Wall time per fused pair: with reading and writing overlapped, what a pair really costs."""
        return self.seconds * 1e3 / len(self.done) if self.done else float("nan")

    def wrote(self, key: str, t_capture: float | None, write_s: float) -> None:
        """One output written (``t_capture``: live pairs' capture time; ``write_s``: time in the sink)."""
        self.done.append(key)

    def add_model_ms(self, ms: float) -> None:
        self.model_ms.append(ms)

    def to_dict(self) -> dict[str, object]:
        return {"done": len(self.done), "failed": len(self.failed), "errors": self.failed,
                "mean_model_ms": self.mean_model_ms, "mean_total_ms": self.mean_total_ms,
                "seconds": self.seconds}


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
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict[str, object]:
        return {"frames": self.frames, "seconds": self.seconds, "fps": self.fps,
                "frame_rate": str(self.rate) if self.rate else None,
                "mean_model_ms": self.mean_model_ms, "leftover": self.leftover}


def run(runner: Runner, source: Source, sink: Sink, summary: FuseSummary, progress: bool = True) -> None:
    """Fuse every pair ``source`` gives into ``sink``; ``summary`` fills as pairs are written."""
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
                fused = _infer(runner, pair, summary, source.skips_bad)
                if fused is not None:
                    writes.put((pair.key, fused, pair.t))
                bar.update(1)
                if source.live:
                    bar.set_postfix_str(source.progress(), refresh=False)  # type: ignore[attr-defined]
        writes.close()
        sink.finish()
    except BaseException:
        writes.stop()
        sink.abort()
        raise
    finally:
        close = getattr(reads, "close", None)  # a generator's close, or the read-ahead thread's
        if close is not None:
            close()
        bar.close()
        summary.seconds = time.perf_counter() - t0


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
            if not skips_bad:
                raise
            error = str(exc)
    if not skips_bad:
        raise InputError(error)
    summary.failed.append(error)
    tqdm.write(f"error: {error}", file=sys.stderr)
    return None


def fuse_pairs(
    runner: Runner,
    pairs: list[ImagePair],
    out_dir: str | Path,
    save_float: bool = False,
    tanh_map: str = "minmax",
    ir16: str = "refuse",
    progress: bool = True,
) -> FuseSummary:
    """Fuse every pair, writing ``OUT/NAME.png`` (+ ``NAME.npy`` raw output with ``save_float``)."""
    if save_float and runner.io == "uint8":
        raise InputError("--save-float needs a float-io model; this one takes and returns uint8")
    targets = plan_outputs(pairs, out_dir, save_float)
    for folder in {png.parent for png, _ in targets}:
        ensure_dir(folder)
    vi_mode = "RGB" if vi_channels(runner.kind) == 3 else "L"
    source = FolderSource(pairs, vi_mode=vi_mode, ir16=ir16, check=runner.check_pair_sizes)
    sink = FolderSink({p.name: t for p, t in zip(pairs, targets, strict=True)}, runner.kind, tanh_map)
    summary = FuseSummary()
    run(runner, source, sink, summary, progress)
    return summary


def fuse_video(runner: Runner, ir_path: str | Path, vi_path: str | Path, out_path: str | Path,
               options: VideoOptions | None = None, progress: bool = True) -> VideoSummary:
    """Fuse ``ir_path`` with ``vi_path`` into ``out_path`` (container from its suffix) at the input rate."""
    opts = options or VideoOptions()
    vi_mode = "RGB" if vi_channels(runner.kind) == 3 else "L"
    source = VideoSource(ir_path, vi_path, vi_mode, opts.ir16, opts.resample_to, runner.check_pair_sizes)
    out = Path(out_path)
    if out.resolve() in (source.ir.path.resolve(), source.vi.path.resolve()):
        raise InputError(f"--out {out} is one of the inputs")
    summary = VideoSummary(rate=source.rate)
    with ffmpeg_errors(), atomic_path(out) as tmp, frames_folder(opts.save_frames) as frames_dir:
        width, height = runner.output_size(source.size)
        writer = VideoWriter(tmp, source.rate, width, height, opts.encoder, opts.crf, opts.bitrate, opts.pix_fmt)
        run(runner, source, VideoSink(writer, runner.kind, opts.tanh_map, frames_dir), summary, progress)
        summary.leftover = source.leftover()
        if summary.leftover and not opts.trim:
            raise InputError(f"{summary.leftover}; nothing written (--trim keeps the {summary.frames} fused frames)")
        if not summary.done:
            raise InputError(f"{source.ir.path.name} and {source.vi.path.name}: no frame pairs to fuse")
    return summary
