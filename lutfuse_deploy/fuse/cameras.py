"""One live camera: open it the way its address says, decode on a thread, keep only the newest frames.

Addresses follow jetson-utils' videoSource: one scheme per kind of source, options per scheme.
``rtsp://`` (TCP transport unless ``rtsp_transport`` says otherwise: UDP loses frames on busy
networks), ``udp://`` (MPEG-TS; a late reader starts at the next key frame), ``srt://`` and
``rtp://`` where PyAV's FFmpeg has the protocol, ``/dev/videoN`` (V4L2: ``video_size``,
``framerate``, ``input_format`` options), and files, played at their own rate as a camera would
send them. Any FFmpeg demuxer or protocol option can be added per camera.

Capture time ("stream" clock, the default): each frame's own timestamp (PTS), mapped onto this
host's monotonic clock by the smallest arrival-minus-PTS offset seen so far, so network and
decoder jitter do not move it; the offset may creep up by 0.1 % of elapsed stream time to follow a
camera clock slower than the host's. Two cameras' clocks are unrelated, so only this mapping makes
them comparable; what it cannot see is a constant difference in the two cameras' own delays
(exposure to packet). The "arrival" clock is the moment the frame was decoded here. Either way,
MPEG-TS inputs (udp and srt URLs, .ts files) have two frame periods taken off: FFmpeg's demuxer hands
an H.264 frame over only when the next one starts (measured on 127.0.0.1: 2 periods + ~2 ms at 10,
25 and 30 fps), a delay that would otherwise pair cameras of different rates off by the difference.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lutfuse_deploy.errors import LutfuseError
from lutfuse_deploy.io.video import ffmpeg_reason, frame_array, import_av

NETWORK_SCHEMES = ("rtsp", "rtsps", "udp", "rtp", "srt", "tcp", "http", "https", "rtmp")
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)  # waits before reconnect attempts 1, 2, 3, ... (the last repeats)
CLOCK_CREEP = 1e-3
PACED_S = 0.002
PACED_RUN_S = 0.25
SETTLE_S = 2.0
OPEN_S = 5.0


def scheme(address: str) -> str:
    return address.split("://", 1)[0].lower() if "://" in address else ""


def is_live_address(address: str) -> bool:
    """A network camera or a V4L2 device (files are live only when asked for)."""
    return scheme(address) in NETWORK_SCHEMES or address.startswith("/dev/video")


def open_options(address: str, user: dict[str, str]) -> tuple[str | None, dict[str, str]]:
    """(FFmpeg format, options) for an address: per-scheme defaults, then the user's options on top."""
    kind = scheme(address)
    options: dict[str, str] = {}
    fmt = None
    if kind in ("rtsp", "rtsps"):
        options["rtsp_transport"] = "tcp"
    elif kind == "udp":
        options["overrun_nonfatal"] = "1"  # a burst that overflows FFmpeg's receive buffer loses frames, not the run
    if kind in NETWORK_SCHEMES:
        # find the stream within about one key-frame interval instead of FFmpeg's 5 s of probing
        options.update(analyzeduration="1000000", fflags="nobuffer")
    if address.startswith("/dev/video"):
        fmt = "v4l2"
    options.update(user)
    return fmt, options


@dataclass
class LiveFrame:
    index: int  # this camera's frames received so far, reconnects included
    pts: float | None  # stream seconds (None on the arrival clock)
    arrived: float  # host monotonic seconds
    image: np.ndarray
    steady: bool = True  # False: part of the backlog a (re)connect decodes in a burst (stale, never fused)
    t: float = 0.0  # capture time on the host clock, set when pairing looks at it


class StreamClock:
    """PTS seconds to host monotonic seconds (see the module docstring)."""

    def __init__(self) -> None:
        self.offset: float | None = None
        self.last: float | None = None

    def reset(self) -> None:
        self.offset = self.last = None

    def see(self, pts: float, arrived: float) -> None:
        if self.offset is None or self.last is None or not 0 <= pts - self.last < 10.0:
            self.offset = arrived - pts  # first frame, or a jump in the stream's clock
        else:
            self.offset = min(arrived - pts, self.offset + CLOCK_CREEP * (pts - self.last))
        self.last = pts

    def time(self, frame: LiveFrame) -> float:
        return frame.arrived if frame.pts is None or self.offset is None else frame.pts + self.offset


class CameraGone(LutfuseError):
    """The camera cannot be read (now): reconnect, or give up after the last attempt."""


@dataclass
class Camera:
    """A decoder thread filling ``frames`` (newest last, at most ``keep``), under the shared ``wake``."""

    name: str  # "IR" or "visible"
    address: str
    mode: str  # "L" or "RGB"
    ir16: str | None
    wake: threading.Condition
    user_options: dict[str, str] = field(default_factory=dict)
    clock: str = "stream"
    stall_s: float = 3.0
    open_s: float = OPEN_S  # opening waits for a connection and a key frame (one a second from a live sender)
    reconnect: int = 0
    keep: int = 8
    delay_s: float = 0.0  # this camera's frames are captured this long before their timestamps say (--sync-offset)
    frames: collections.deque[LiveFrame] = field(default_factory=collections.deque)
    received: int = 0
    paired: int = 0
    unmatched: int = 0
    late: int = 0
    before_start: int = 0  # frames dropped before the first pair was fused (opening, probing the streams)
    corrupt: int = 0
    reconnects: int = 0
    decode_s: float = 0.0
    rate: float | None = None
    size: tuple[int, int] | None = None
    failure: str | None = None
    ended: bool = False

    def __post_init__(self) -> None:
        self.stream_clock = StreamClock()
        self._paced = 0  # frames in a row that arrived about one frame period after the previous
        self._last: tuple[float, float | None] | None = None  # (arrival, pts) of the last frame
        self.framing_periods = 0
        self._first = 0.0  # arrival of the first frame since (re)connecting
        self._stop = threading.Event()
        self._is_file = not is_live_address(self.address)
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
        self.on_overflow: Any = None  # set by the source: classifies a frame pushed out of a full buffer

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self) -> None:
        """Reads that block return within ``stall_s``; the thread is a daemon, so a wedged read never hangs exit."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.stall_s + 2)

    def time(self, frame: LiveFrame) -> float:
        """Capture time on the host clock: the mapped stream time, less the demuxer's framing delay and
        the camera's own delay (``--sync-offset``)."""
        return self.stream_clock.time(frame) - self.framing_periods / (self.rate or 30.0) - self.delay_s

    def counts(self) -> dict[str, int]:
        return {"received": self.received, "paired": self.paired, "dropped": self.unmatched + self.late,
                "unmatched": self.unmatched, "late": self.late, "before_start": self.before_start,
                "corrupt": self.corrupt,
                "reconnects": self.reconnects}

    # --- the decoder thread ---------------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            received = self.received
            try:
                self._read()
                if self._is_file:
                    self._end(None)
                    return
                raise CameraGone("the stream ended")
            except CameraGone as exc:
                if self._stop.is_set():
                    return
                attempt = 1 if self.received > received else attempt + 1  # frames came: count afresh
                if attempt > self.reconnect:
                    tries = f"; gave up after {self.reconnect} reconnect attempts" if self.reconnect else \
                        " (--reconnect N retries)"
                    self._end(f"{self.name} camera {self.address}: {exc}{tries}")
                    return
                self.reconnects += 1
                if self._stop.wait(BACKOFF_S[min(attempt, len(BACKOFF_S)) - 1]):
                    return
            except LutfuseError as exc:
                self._end(str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - reported as the camera's failure, on the pairing thread
                self._end(f"{self.name} camera {self.address}: {type(exc).__name__}: {exc}")
                return

    def _end(self, failure: str | None) -> None:
        with self.wake:
            self.failure, self.ended = failure, True
            self.wake.notify_all()

    def _open(self) -> Any:
        av = import_av()
        fmt, options = open_options(self.address, self.user_options)
        if self._is_file and not Path(self.address).is_file():
            raise LutfuseError(f"{self.name} camera {self.address}: no such file, device or stream address")
        try:
            return av.open(self.address, format=fmt, options=options,
                           timeout=(max(self.open_s, self.stall_s), self.stall_s))
        except av.error.ProtocolNotFoundError:
            raise LutfuseError(f"{self.name} camera {self.address}: PyAV's FFmpeg has no {scheme(self.address)} "
                               "protocol") from None
        except (FileNotFoundError, PermissionError) as exc:
            raise LutfuseError(f"{self.name} camera {self.address}: {exc.strerror}") from None
        except av.error.ExitError:
            raise CameraGone(f"no stream within {max(self.open_s, self.stall_s):g} s of opening") from None
        except (av.error.FFmpegError, OSError) as exc:
            raise CameraGone(f"cannot open ({ffmpeg_reason(exc)})") from None

    def _read(self) -> None:
        av = import_av()
        container = self._open()
        self.stream_clock.reset()
        self._paced, self._last = 0, None
        try:
            streams = container.streams.video
            if not streams:
                raise LutfuseError(f"{self.name} camera {self.address}: no video stream")
            stream = streams[0]
            # frame threading holds each frame back until the next threads' frames are in: a frame of
            # delay per thread, and a different delay per camera rate; slices keep the output at once
            stream.codec_context.thread_type = "SLICE"
            nominal = stream.average_rate or stream.guessed_rate
            if nominal and self.rate is None:
                self.rate = float(nominal)
            # MPEG-TS hands a video frame over only once the next one starts (its PES packets carry no
            # length, and the parser splits frames at the next frame's start): two frame periods late.
            # A file is paced here by its timestamps, after demuxing: no such delay.
            mpegts = "mpegts" in container.format.name.split(",")
            self.framing_periods = 2 if mpegts and not self._is_file else 0
            paced_from: float | None = None
            packets = container.demux(stream)
            while not self._stop.is_set():
                try:
                    packet = next(packets)  # waiting for the network is not decoding: not timed
                    t0 = time.perf_counter()
                    decoded = packet.decode()
                except StopIteration:
                    return
                except av.error.ExitError:
                    raise CameraGone(f"no data for {self.stall_s:g} s") from None
                except av.error.InvalidDataError:
                    self.corrupt += 1  # a lost packet: the decoder conceals it; the next key frame restores it
                    continue
                except (av.error.FFmpegError, OSError) as exc:
                    raise CameraGone(f"read failed ({ffmpeg_reason(exc)})") from None
                for frame in decoded:
                    image = frame_array(frame, self.mode, self.ir16, f"{self.name} camera {self.address}")
                    self.decode_s += time.perf_counter() - t0
                    stream_t = float(frame.time) if frame.time is not None else None
                    if self._is_file and stream_t is not None:  # play a file at its own rate, as a camera sends
                        paced_from = paced_from if paced_from is not None else time.monotonic() - stream_t
                        self._stop.wait(max(0.0, paced_from + stream_t - time.monotonic()))
                    self._push(image, stream_t if self.clock == "stream" else None)
                    t0 = time.perf_counter()
        finally:
            container.close()

    def _push(self, image: np.ndarray, pts: float | None) -> None:
        size = (int(image.shape[1]), int(image.shape[0]))
        if self.size is not None and size != self.size:
            raise LutfuseError(f"{self.name} camera {self.address}: frame size changed from "
                               f"{self.size[0]}x{self.size[1]} to {size[0]}x{size[1]} at frame {self.received}; "
                               "a camera keeps one size for a run (restart to fuse the new size)")
        arrived = time.monotonic()
        with self.wake:
            self.size = size
            offset = self.stream_clock.offset
            if pts is not None:
                self.stream_clock.see(pts, arrived)
            self.frames.append(LiveFrame(self.received, pts, arrived, image, self._pacing(arrived, pts, offset)))
            self.received += 1
            if self.rate is None and self.received >= 5:
                self.rate = _measured_rate([self.time(f) for f in self.frames])
            while len(self.frames) > self.keep:
                dropped = self.frames.popleft()
                if self.on_overflow is not None:
                    self.on_overflow(self, dropped)
            self.wake.notify_all()


    def _pacing(self, arrived: float, pts: float | None, offset: float | None) -> bool:
        """Whether frames now come at the camera's pace. A reader that joins late, or was starved of
        CPU, first decodes a backlog in a burst, each frame less late than the one before, and the
        clock mapping has not seen a real arrival yet: those frames are stale. Frames come at pace
        once a quarter second of them in a row (at least 3) was no less late than the smallest delay
        seen (within 2 ms); on the arrival clock, once as many came at least half a period apart. A
        decoder that never catches up (a CPU too slow for the stream) is let through after
        ``SETTLE_S``: its frames are then judged by their age alone."""
        if self._is_file:
            return True  # played here at its own pace: no backlog
        last, self._last = self._last, (arrived, pts)
        self._first = arrived if last is None else self._first
        need = max(3, math.ceil(PACED_RUN_S * (self.rate or 30.0)))
        if self._paced >= need or arrived - self._first >= SETTLE_S:
            return True
        if pts is not None:
            paced = offset is not None and arrived - pts >= offset - PACED_S
        else:
            paced = last is not None and self.rate is not None and arrived - last[0] >= 0.5 / self.rate
        self._paced = self._paced + 1 if paced else 0
        return self._paced >= need


def _measured_rate(times: list[float]) -> float | None:
    steps = np.diff(times)
    steps = steps[steps > 0]
    return float(1.0 / np.median(steps)) if len(steps) else None
