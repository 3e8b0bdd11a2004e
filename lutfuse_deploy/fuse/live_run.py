"""``fuse`` on two live cameras: the one pipeline with a live source and a recording or stream sink.

A live run ends on --duration, at the end of an input (files), on Ctrl-C or SIGTERM, or when a
camera is gone for good; in every case what was fused is finalized (the file's trailer written and
the file renamed into place), and only then is a camera's failure raised, so the recording so far
is playable and the exit status still says the run did not end as asked.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lutfuse_deploy.errors import InputError
from lutfuse_deploy.fuse.cameras import scheme
from lutfuse_deploy.fuse.live import LiveOptions, LiveSource
from lutfuse_deploy.fuse.pipeline import FuseSummary, VideoOptions, run
from lutfuse_deploy.fuse.sinks import LiveFramesSink, LiveVideoSink
from lutfuse_deploy.fuse.stats import Timing
from lutfuse_deploy.io.files import atomic_path
from lutfuse_deploy.io.video import VIDEO_SUFFIXES, ffmpeg_errors
from lutfuse_deploy.runtime.base import Runner, vi_channels

#: stream outputs: the muxer each scheme takes
STREAM_FORMATS = {"udp": "mpegts", "tcp": "mpegts", "srt": "mpegts", "rtp": "rtp_mpegts", "rtsp": "rtsp"}
LIVE_ENCODER_OPTIONS = {"libx264": {"preset": "ultrafast", "tune": "zerolatency"},
                        "libx265": {"preset": "ultrafast", "tune": "zerolatency"}}
SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}


@dataclass
class LiveSummary(FuseSummary):
    """Counts and timings in constant memory (a live run may last days)."""

    frames: int = 0
    latency: Timing = field(default_factory=Timing)  # capture -> fused frame written
    model: Timing = field(default_factory=Timing)  # warp + fuse (the runner)
    encode: Timing = field(default_factory=Timing)  # 8-bit conversion + encode + mux
    decode_ms: dict[str, float] = field(default_factory=dict)  # mean per frame, per camera
    cameras: dict[str, dict[str, int]] = field(default_factory=dict)
    rate: float | None = None
    tolerance_ms: float | None = None
    max_offset_ms: float = 0.0
    waited_s: float = 0.0
    fusing_s: float = 0.0  # from the first pair to the end (``seconds`` adds opening the cameras)
    stopped_by: str | None = None
    failure: str | None = None
    out: str = ""

    def wrote(self, key: str, t_capture: float | None, write_s: float) -> None:
        self.frames += 1
        self.encode.add(write_s * 1e3)
        if t_capture is not None:
            self.latency.add((time.monotonic() - t_capture) * 1e3)

    def add_model_ms(self, ms: float) -> None:
        self.model.add(ms)

    @property
    def mean_model_ms(self) -> float:
        return self.model.mean

    @property
    def fps(self) -> float:
        return self.frames / self.fusing_s if self.fusing_s > 0 else float("nan")

    @property
    def exit_code(self) -> int:
        return SIGNAL_EXIT.get(self.stopped_by or "", 0)

    def to_dict(self) -> dict[str, object]:
        return {"frames": self.frames, "seconds": self.seconds, "fusing_seconds": self.fusing_s, "fps": self.fps,
                "frame_rate": self.rate,
                "tolerance_ms": self.tolerance_ms, "max_pair_offset_ms": self.max_offset_ms,
                "latency": self.latency.to_dict(), "decode_ms": self.decode_ms, "model": self.model.to_dict(),
                "encode": self.encode.to_dict(), "waiting_for_pairs_s": self.waited_s, "cameras": self.cameras,
                "stopped_by": self.stopped_by, "failure": self.failure, "out": self.out}

    def line(self) -> str:
        cams = "; ".join(f"{name} {c['paired']} of {c['received']} paired, {c['dropped']} dropped "
                         f"({c['unmatched']} unmatched, {c['late']} late), {c['before_start']} before the first pair"
                         + (f", {c['reconnects']} reconnects" if c["reconnects"] else "")
                         for name, c in self.cameras.items())
        return (f"{self.frames} frames fused in {self.fusing_s:.2f} s ({self.fps:.1f} fps); latency capture->out "
                f"p50 {self.latency.percentile(50):.1f} ms, p95 {self.latency.percentile(95):.1f} ms; per frame: "
                f"decode IR {self.decode_ms.get('ir', float('nan')):.1f} ms / visible "
                f"{self.decode_ms.get('vi', float('nan')):.1f} ms, warp+fuse {self.model.mean:.1f} ms, encode "
                f"{self.encode.mean:.1f} ms; {cams} -> {self.out}"
                + (f" (stopped by {self.stopped_by})" if self.stopped_by else ""))


def is_stream_address(out: str) -> bool:
    return scheme(out) in STREAM_FORMATS


def is_frames_folder(out: str) -> bool:
    """A live run's ``--out`` that is a folder of frames: an existing folder, or a name with no suffix."""
    return Path(out).is_dir() or not Path(out).suffix


@contextlib.contextmanager
def stop_on_signals(source: LiveSource) -> Iterator[None]:
    """Ctrl-C or SIGTERM ends the pairs (the recording is then finalized); a second Ctrl-C interrupts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, _frame: object) -> None:
        if signum == signal.SIGINT and source.stopped_by == "SIGINT":
            raise KeyboardInterrupt
        source.stop(signal.Signals(signum).name)

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def fuse_live(runner: Runner, ir: str, vi: str, out: str, live: LiveOptions | None = None,
              video: VideoOptions | None = None, codec_options: dict[str, str] | None = None,
              progress: bool = True) -> LiveSummary:
    """Fuse two live cameras into ``out`` (a video file, or a stream address such as udp://<host>:<port>).

    Raises ``InputError`` after finalizing the output when a camera failed; ``summary.exit_code`` is
    130/143 when a signal stopped the run.
    """
    opts = video or VideoOptions()
    if opts.resample_to or opts.trim or opts.save_frames:
        raise InputError("--resample-to, --trim and --save-frames are for video files; live cameras are paired "
                         "by capture time")
    stream = is_stream_address(out)
    frames = not stream and is_frames_folder(out)
    if not stream:
        if scheme(out):
            raise InputError(f"--out {out}: a stream output is one of {', '.join(s + '://' for s in STREAM_FORMATS)}")
        if not frames and Path(out).suffix.lower() not in VIDEO_SUFFIXES:
            raise InputError(f"--out {out}: a live run writes a video file ({', '.join(VIDEO_SUFFIXES)}), a stream, "
                             "or frames into a folder (a name without a suffix)")
        if Path(out).resolve() in {Path(a).resolve() for a in (ir, vi) if not scheme(a)}:
            raise InputError(f"--out {out} is one of the inputs")
        if frames and Path(out).is_dir() and any(Path(out).iterdir()):
            raise InputError(f"--out {out}: the folder is not empty; live frames go into a new or empty folder")
    vi_mode = "RGB" if vi_channels(runner.kind) == 3 else "L"
    warm_up(runner)
    source = LiveSource(ir, vi, vi_mode, opts.ir16, runner.check_pair_sizes, live)
    options = {**LIVE_ENCODER_OPTIONS.get(opts.encoder, {}), **(codec_options or {})}
    summary = LiveSummary(out=out)

    def sink(target: str) -> LiveVideoSink:
        return LiveVideoSink(target, lambda: source.rate, opts.encoder, opts.crf, opts.bitrate, opts.pix_fmt,
                             STREAM_FORMATS.get(scheme(out)), options, runner.kind, opts.tanh_map)

    def nothing_fused() -> None:
        if not summary.frames:
            raise InputError(source.failure or f"{ir} and {vi}: no frame pairs to fuse"
                             + (f" (stopped by {source.stopped_by})" if source.stopped_by else ""))

    with ffmpeg_errors(), stop_on_signals(source):
        if stream:
            run(runner, source, sink(out), summary, progress)
            nothing_fused()
        elif frames:
            folder = Path(out)
            created = not folder.exists()
            folder.mkdir(parents=True, exist_ok=True)
            try:
                run(runner, source, LiveFramesSink(folder, runner.kind, opts.tanh_map), summary, progress)
                nothing_fused()
            except BaseException:
                if not summary.frames:  # no frame fused: leave nothing behind
                    (folder / "frames.csv").unlink(missing_ok=True)
                    if created:
                        folder.rmdir()
                raise
        else:
            with atomic_path(out) as tmp:
                run(runner, source, sink(str(tmp)), summary, progress)
                nothing_fused()  # inside: no empty file is left
    _fill(summary, source)
    if source.failure:
        kept = f"; the {summary.frames} frames fused before are in {out}" if summary.frames and not stream else ""
        raise InputError(f"{source.failure}{kept}")
    return summary


def warm_up(runner: Runner) -> None:
    """One inference on black frames before the cameras open. A runner's first call loads and prepares
    its kernels (0.4 s measured for ``--backend numba``); in a live run the frames that queue meanwhile
    are dropped, and the run starts behind. Sizes: the rig's cameras, a graph's own, else 64x48 (the
    kernels are what is slow to prepare, not the size). A runner that refuses them (an engine built for
    other shapes) is left cold: the first real pair then says what does not fit, as without a warm-up."""
    (ih, iw), (vh, vw) = (48, 64), (48, 64)
    check_sizes = getattr(runner, "check_sizes", None)
    if runner.rig is not None:
        (iw, ih), (vw, vh) = runner.rig.ir_size, runner.rig.vi_size
    elif callable(check_sizes):
        (ih, iw), (vh, vw) = check_sizes()
    if runner.check_pair_sizes((iw, ih), (vw, vh)) is not None:
        return
    dtype = np.uint8 if runner.io == "uint8" else np.float32
    with contextlib.suppress(InputError):
        runner.infer(np.zeros((1, 1, ih, iw), dtype), np.zeros((1, vi_channels(runner.kind), vh, vw), dtype))


def _fill(summary: LiveSummary, source: LiveSource) -> None:
    summary.cameras = source.counts()
    summary.decode_ms = {key: cam.decode_s * 1e3 / cam.received if cam.received else float("nan")
                         for key, cam in (("ir", source.ir), ("vi", source.vi))}
    summary.rate = source.rate
    tol = source.tolerance
    summary.tolerance_ms = tol * 1e3 if tol is not None else None
    summary.max_offset_ms = max((abs(dt) * 1e3 for *_, dt in source.pair_log), default=0.0)
    summary.waited_s = source.waited_s
    if source.first_pair_at is not None:
        summary.fusing_s = time.monotonic() - source.first_pair_at
    summary.stopped_by = source.stopped_by
    summary.failure = source.failure




def profile_live(runner: Runner, ir: str, vi: str, seconds: float, live: LiveOptions | None = None,
                 video: VideoOptions | None = None) -> LiveSummary:
    """A live run of ``seconds`` into a temporary recording, deleted after: what fusing two cameras
    costs end to end (decode, warp+fuse, encode) and how far behind the cameras it falls."""
    import dataclasses
    import tempfile

    options = dataclasses.replace(live or LiveOptions(), duration=seconds)
    with tempfile.TemporaryDirectory(prefix="lutfuse-live-") as tmp:
        return fuse_live(runner, ir, vi, str(Path(tmp) / "profile.mkv"), options, video, progress=False)
