"""Fuse image pairs or two videos with any runner.

Image pairs: per-pair problems are collected, not raised: one bad file never stops a folder, and
nothing partial is written (every file goes through a temporary name).

Videos: three stages overlap: one thread per input decodes (and converts to the model's channels), the
calling thread pairs frames and runs the model (CUDA contexts stay on the thread that made them), and
one thread encodes and writes PNGs. Bounded queues between them keep memory flat. The output goes
through a temporary name and appears only when every frame is in it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from lutfuse_deploy.errors import InputError, LutfuseError, OutputError
from lutfuse_deploy.fuse.convert import prepare, to_8bit
from lutfuse_deploy.fuse.pairing import Pairing, pair_by_index, pair_by_time
from lutfuse_deploy.fuse.sinks import frames_folder, plan_outputs
from lutfuse_deploy.fuse.sources import check_streams
from lutfuse_deploy.fuse.threads import Background, Sink
from lutfuse_deploy.io.files import atomic_path, ensure_dir
from lutfuse_deploy.io.images import ImagePair, load_pair, save_npy, save_png
from lutfuse_deploy.io.video import VideoInfo, VideoWriter, decode, ffmpeg_errors, probe
from lutfuse_deploy.runtime.base import Runner, vi_channels


@dataclass
class FuseSummary:
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    model_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)

    @property
    def mean_model_ms(self) -> float:
        return float(np.mean(self.model_ms)) if self.model_ms else float("nan")

    @property
    def mean_total_ms(self) -> float:
        return float(np.mean(self.total_ms)) if self.total_ms else float("nan")

    def to_dict(self) -> dict[str, object]:
        return {"done": len(self.done), "failed": len(self.failed), "errors": self.failed,
                "mean_model_ms": self.mean_model_ms, "mean_total_ms": self.mean_total_ms}


def fuse_pairs(
    runner: Runner,
    pairs: list[ImagePair],
    out_dir: str | Path,
    save_float: bool = False,
    tanh_map: str = "minmax",
    ir16: str = "refuse",
    progress: bool = True,
) -> FuseSummary:
    """Fuse every pair, writing ``OUT/NAME.png`` (+ ``NAME.npy`` raw output with ``save_float``).

    A pair that cannot be read is reported and skipped; an output that cannot be written (disk
    full, no permission) stops the run with ``OutputError``: every later pair would fail the same way.
    """
    from tqdm import tqdm

    if save_float and runner.io == "uint8":
        raise InputError("--save-float needs a float-io model; this one takes and returns uint8")
    targets = plan_outputs(pairs, out_dir, save_float)
    for folder in {png.parent for png, _ in targets}:
        ensure_dir(folder)
    summary = FuseSummary()
    vi_mode = "RGB" if vi_channels(runner.kind) == 3 else "L"
    bar = tqdm(pairs, unit="pair", disable=not progress or len(pairs) < 2, leave=False)
    with runner:
        for pair, (png, npy) in zip(bar, targets):
            t0 = time.perf_counter()
            try:
                ir, vi = load_pair(pair, vi_mode=vi_mode, ir16=ir16)
                t_ir, t_vi = prepare(ir, vi, runner.io)
                t1 = time.perf_counter()
                fused = runner.infer(t_ir, t_vi)[0]
                model_ms = (time.perf_counter() - t1) * 1e3
                if npy is not None:
                    raw = fused.transpose(1, 2, 0) if runner.kind == "lutfuse" else fused[0]
                    save_npy(npy, raw.astype(np.float32))
                save_png(png, to_8bit(fused, runner.kind, tanh_map))
            except OutputError:
                raise
            except LutfuseError as exc:
                summary.failed.append(str(exc))
                tqdm.write(f"error: {exc}", file=sys.stderr)
                continue
            summary.done.append(pair.name)
            summary.model_ms.append(model_ms)
            summary.total_ms.append((time.perf_counter() - t0) * 1e3)
    return summary


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
    stats = Pairing()
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
