"""Video in and out with PyAV (the ``video`` extra): probe, decode, pair by presentation time, encode.

Frames are converted as the image path reads files (RGB, then PIL's luma for gray), so a video fuses
exactly like its frames extracted to PNG. FFmpeg reports most corruption and truncation as log lines,
not exceptions; decoding captures them and turns the first into one error naming the file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from lutfuse_deploy.errors import InputError, MissingDependency

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".ts", ".mts", ".mpg", ".mpeg", ".flv",
                  ".wmv", ".y4m", ".nut")
# Encoders whose quality knob is the private option ``crf`` (FFmpeg has no way to list private options).
CRF_ENCODERS = ("libx264", "libx265", "libvpx-vp9", "libaom-av1", "libsvtav1")
AV_LOG_ERROR = 16


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def import_av() -> Any:
    try:
        import av
    except ImportError:
        raise MissingDependency("av (PyAV)", "video") from None
    return av


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    rate: Fraction | None  # average frame rate; None when the container does not say
    frames: int  # from the container header; 0 when unknown
    codec: str

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def ffmpeg_reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.strip().splitlines()[0] if text and text.strip() else type(exc).__name__


def probe(path: str | Path) -> VideoInfo:
    """The first video stream's size, rate and frame count; one error for a file that has none."""
    av = import_av()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such video file")
    try:
        with av.open(str(path)) as container:
            streams = container.streams.video
            if not streams:
                kinds = ", ".join(s.type for s in container.streams) or "none"
                raise InputError(f"{path}: no video stream (streams: {kinds})")
            s = streams[0]
            rate = s.average_rate or s.guessed_rate
            return VideoInfo(path, s.codec_context.width, s.codec_context.height,
                             Fraction(rate) if rate else None, int(s.frames or 0), s.codec_context.name)
    except av.error.FFmpegError as exc:
        raise InputError(f"{path}: cannot read as a video ({ffmpeg_reason(exc)})") from None


@contextlib.contextmanager
def ffmpeg_errors() -> Iterator[None]:
    """Let FFmpeg's error-level log lines reach ``decode``'s capture (PyAV drops all logs by default);
    lines from elsewhere (the encoder, which raises on failure anyway) are not printed."""
    import logging

    av = import_av()
    before = av.logging.get_level()
    quiet = logging.NullHandler()
    logging.getLogger("libav").addHandler(quiet)
    av.logging.set_level(av.logging.ERROR)
    try:
        yield
    finally:
        av.logging.set_level(before)
        logging.getLogger("libav").removeHandler(quiet)


def decode(info: VideoInfo, mode: str, ir16: str | None = None) -> Generator[tuple[float, np.ndarray], None, None]:
    """(seconds since the first frame, uint8 image) per frame; ``mode`` is ``RGB`` (H x W x 3) or ``L``.

    ``ir16`` (IR streams only) maps gray frames of more than 8 bits (radiometric cameras' gray16le,
    gray12le, ...) as the image path maps 16-bit IR, and ``refuse`` refuses them; FFmpeg would
    otherwise keep only their top 8 bits without a word.
    """
    av = import_av()
    n = 0
    t0: float | None = None
    with av.logging.Capture() as logs, av.open(str(info.path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1  # FFmpeg's worker threads would log outside the capture
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                raise InputError(f"{info.path}: corrupt stream near frame {n} ({ffmpeg_reason(exc)})") from None
            _check_logs(info, logs, n)
            t = float(frame.time) if frame.time is not None else n / float(info.rate or 1)
            t0 = t if t0 is None else t0
            yield t - t0, frame_array(frame, mode, ir16, str(info.path))
            n += 1
        _check_logs(info, logs, n)
    if info.frames and n < info.frames:
        raise InputError(f"{info.path}: truncated stream, {n} of the {info.frames} frames its header lists")


def frame_array(frame: Any, mode: str, ir16: str | None, where: str) -> np.ndarray:
    """One decoded frame as ``decode`` yields it (shared with live cameras, so both fuse the same)."""
    from PIL import Image

    from lutfuse_deploy.io.images import normalise_16bit

    fmt = frame.format.name
    if ir16 is not None and fmt.startswith("gray") and fmt != "gray":
        if ir16 == "refuse":
            raise InputError(f"{where}: {fmt} IR video (more than 8 bits per pixel); choose a "
                             "conversion with --ir16 minmax|percentile|linear")
        return normalise_16bit(frame.to_ndarray(format="gray16le"), ir16)
    rgb = frame.to_ndarray(format="rgb24")
    return rgb if mode == "RGB" else np.asarray(Image.fromarray(rgb).convert("L"))


def _check_logs(info: VideoInfo, logs: list[tuple[int, str, str]], n: int) -> None:
    errors = [(name, msg.strip()) for level, name, msg in logs if level <= AV_LOG_ERROR]
    if errors:
        name, msg = errors[0]
        raise InputError(f"{info.path}: corrupt or truncated stream near frame {n} ({name}: {msg})")


class VideoWriter:
    """Encode uint8 RGB (H x W x 3) or gray (H x W) frames at a constant ``rate`` into ``path``."""

    def __init__(self, path: Path | str, rate: Fraction, width: int, height: int, encoder: str,
                 crf: int | None = None, bitrate: str | None = None, pix_fmt: str | None = None,
                 container_format: str | None = None, codec_options: dict[str, str] | None = None) -> None:
        av = import_av()
        self.av = av
        try:
            codec = av.codec.Codec(encoder, "w")
        except (av.codec.codec.UnknownCodecError, av.error.FFmpegError):
            raise InputError(f"--encoder {encoder}: not an encoder this FFmpeg build has") from None
        if codec.type != "video":
            raise InputError(f"--encoder {encoder}: a {codec.type} encoder, not a video one")
        if crf is not None and encoder not in CRF_ENCODERS:
            raise InputError(f"--crf is for {', '.join(CRF_ENCODERS)}; for {encoder} set --bitrate instead")
        formats = [f.name for f in codec.video_formats or ()]
        if pix_fmt is None:
            even = width % 2 == 0 and height % 2 == 0
            pix_fmt = next((f for f in (("yuv420p",) if even else ()) + ("yuv444p", "bgr0") if f in formats),
                           formats[0] if formats else "yuv420p")
        elif formats and pix_fmt not in formats:
            raise InputError(f"--pix-fmt {pix_fmt}: {encoder} takes {', '.join(formats)}")
        options = {**(codec_options or {}), **({"crf": str(crf)} if crf is not None else {})}
        self.rate = rate
        self.count = 0
        try:
            self.container = av.open(str(path), "w", format=container_format)
            self.stream = self.container.add_stream(encoder, rate=rate, options=options)
            self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, pix_fmt
            if bitrate:
                self.stream.bit_rate = parse_bitrate(bitrate)
        except (av.error.FFmpegError, ValueError) as exc:
            where = Path(path).suffix if isinstance(path, Path) else path
            raise InputError(f"{where}: cannot write {encoder} video there ({ffmpeg_reason(exc)})") from None

    def write(self, image: np.ndarray, pts: int | None = None) -> None:
        """Frames follow one another at ``rate`` unless ``pts`` (in frame periods, increasing) places them."""
        frame = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(image),
                                                format="rgb24" if image.ndim == 3 else "gray")
        frame.pts = self.count if pts is None else pts
        frame.time_base = 1 / self.rate
        self._mux(frame)
        self.count += 1

    def _mux(self, frame: Any) -> None:
        try:
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        except self.av.error.FFmpegError as exc:
            raise InputError(f"encoding with {self.stream.codec_context.name} failed ({ffmpeg_reason(exc)})") from None

    def close(self) -> None:
        """Flush the encoder and write the trailer."""
        self._mux(None)
        self.container.close()

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - the file is being discarded; the first error is the one to report
            pass


def parse_bitrate(text: str) -> int:
    """``4M``, ``800k`` or ``2500000`` as bits per second."""
    units = {"k": 1_000, "m": 1_000_000}
    t = text.strip().lower()
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise InputError(f"--bitrate {text!r}: expected bits per second such as 4M, 800k or 2500000") from None
    if value <= 0:
        raise InputError(f"--bitrate {text!r}: must be positive")
    return int(value)
