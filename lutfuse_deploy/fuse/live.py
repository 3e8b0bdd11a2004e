"""Two live cameras as a source of pairs: the newest pair captured together, taken when the runner asks.

GStreamer's ``appsink drop=true max-buffers=1`` is the model: nothing queues between the cameras and
the runner, so a runner slower than the cameras skips to the newest pair (the skipped frames are
counted as late) instead of fusing stale ones, and the latency stays bounded. Each camera's frame
is used once; frames of the faster camera with no partner within the tolerance are counted as
unmatched (at 30 and 25 fps, 5 IR frames a second). Frames dropped before the first pair are counted
apart (``before_start``): they queued while the other camera was still being opened. The output
follows the slower camera.

The source never raises mid-run: a camera that is gone for good, changes size or cannot be fused
ends the pairs with ``failure`` set, so the caller can finalize what was fused and then report it.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from lutfuse_deploy.fuse.cameras import OPEN_S, Camera, LiveFrame
from lutfuse_deploy.fuse.pairing import newest_match, pairable
from lutfuse_deploy.fuse.sources import Pair, PairCheck
from lutfuse_deploy.runtime.base import same_size

PAIR_LOG = 10_000  # (IR frame, visible frame, offset) of the last pairs, for tests and diagnostics


@dataclass
class LiveOptions:
    duration: float | None = None  # seconds of fusing, from the first pair
    tolerance_ms: float | None = None  # None: half the slower camera's frame period
    sync_offset_ms: float = 0.0  # the IR camera's timestamps run this much later than the visible's (--sync-offset)
    clock: str = "stream"  # "stream" (PTS mapped to this host) or "arrival"
    reconnect: int = 0  # attempts per outage before the run ends
    stall_s: float = 3.0  # no frame for this long: the camera stalled (reconnect, or end)
    open_s: float = OPEN_S  # opening a camera (connection, first key frame) may take this long
    max_age_s: float = 1.0  # frames older than this when paired are dropped as late
    keep: int = 8  # newest frames kept per camera
    ir_options: dict[str, str] = field(default_factory=dict)
    vi_options: dict[str, str] = field(default_factory=dict)


class LiveSource:
    """IR and visible cameras, each on its decoder thread; ``pairs`` pairs them on the caller's thread."""

    unit = "frame"
    total: int | None = None
    skips_bad = False
    live = True

    def __init__(self, ir: str, vi: str, vi_mode: str, ir16: str = "refuse", check: PairCheck = same_size,
                 options: LiveOptions | None = None) -> None:
        self.options = opts = options or LiveOptions()
        self.check = check
        self.wake = threading.Condition()
        common = {"wake": self.wake, "clock": opts.clock, "stall_s": opts.stall_s, "open_s": opts.open_s,
                  "reconnect": opts.reconnect, "keep": opts.keep}
        self.ir = Camera("IR", ir, "L", ir16, user_options=opts.ir_options, delay_s=opts.sync_offset_ms / 1e3,
                         **common)  # type: ignore[arg-type]
        self.vi = Camera("visible", vi, vi_mode, None, user_options=opts.vi_options, **common)  # type: ignore[arg-type]
        for cam in (self.ir, self.vi):
            cam.on_overflow = self._overflow
        self.failure: str | None = None
        self.stopped_by: str | None = None  # "duration", "end of input", or a signal's name
        self.pairs_made = 0
        self.pair_log: collections.deque[tuple[int, int, float]] = collections.deque(maxlen=PAIR_LOG)
        self.waited_s = 0.0
        self.first_pair_at: float | None = None  # host monotonic seconds
        self._stop = threading.Event()
        self._sizes_checked = False

    @property
    def tolerance(self) -> float | None:
        """Seconds; half the slower camera's period unless set, None until both rates are known."""
        if self.options.tolerance_ms is not None:
            return self.options.tolerance_ms / 1e3
        rates = [cam.rate for cam in (self.ir, self.vi)]
        return None if None in rates else 0.5 / min(r for r in rates if r is not None)

    @property
    def rate(self) -> float | None:
        """The output's rate: the slower camera's."""
        rates = [cam.rate for cam in (self.ir, self.vi)]
        return None if None in rates else min(r for r in rates if r is not None)

    def stop(self, reason: str) -> None:
        """End the pairs at the next frame (signal handlers call this; safe from any thread)."""
        self.stopped_by = self.stopped_by or reason
        self._stop.set()
        with self.wake:
            self.wake.notify_all()

    def progress(self) -> str:
        return " ".join(f"{cam.name} {cam.paired}/{cam.received} (-{cam.unmatched + cam.late})"
                        for cam in (self.ir, self.vi))

    def pairs(self) -> Iterator[Pair]:
        self.ir.start()
        self.vi.start()
        deadline: float | None = None
        try:
            while True:
                t0 = time.monotonic()
                found = self._next(deadline)
                if found is None:
                    return
                a, b = found
                if self.first_pair_at is None:
                    self.first_pair_at = time.monotonic()
                    if self.options.duration is not None:
                        deadline = self.first_pair_at + self.options.duration
                else:  # the runner waiting for cameras (opening them is not counted)
                    self.waited_s += time.monotonic() - t0
                key = f"{self.pairs_made:06d}"
                self.pairs_made += 1
                yield Pair(key, f"IR frame {a.index}, visible frame {b.index}", a.image, b.image, t=min(a.t, b.t))
        finally:
            for cam in (self.ir, self.vi):
                cam.stop()
            for cam in (self.ir, self.vi):
                cam.join()

    def _next(self, deadline: float | None) -> tuple[LiveFrame, LiveFrame] | None:
        with self.wake:
            while True:
                if self._stop.is_set():
                    return None
                if deadline is not None and time.monotonic() >= deadline:
                    self.stopped_by = self.stopped_by or "duration"
                    return None
                for cam in (self.ir, self.vi):
                    if cam.failure:
                        self.failure = cam.failure
                        return None
                if not self._sizes_ok():
                    return None
                found = self._match()
                if found is not None:
                    return found
                if any(cam.ended and not cam.failure for cam in (self.ir, self.vi)):
                    self.stopped_by = self.stopped_by or "end of input"
                    return None
                wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
                self.wake.wait(wait)

    def _sizes_ok(self) -> bool:
        """Refuse sizes the runner cannot fuse as soon as both cameras have sent a frame."""
        if self._sizes_checked or self.ir.size is None or self.vi.size is None:
            return True
        why = self.check(self.ir.size, self.vi.size)
        if why is not None:
            self.failure = (f"IR camera {self.ir.address} sends {self.ir.size[0]}x{self.ir.size[1]} but visible "
                            f"camera {self.vi.address} {self.vi.size[0]}x{self.vi.size[1]}: {why}")
            return False
        self._sizes_checked = True
        return True

    def _match(self) -> tuple[LiveFrame, LiveFrame] | None:
        """Under ``wake``: the newest pair within the tolerance; older frames of both cameras are dropped."""
        tol = self.tolerance
        if tol is None:
            return None
        now = time.monotonic()
        for cam in (self.ir, self.vi):
            fresh = []
            for f in cam.frames:  # a backlog (after a reconnect, behind older frames too) or too old: late
                f.t = cam.time(f)
                if f.steady and now - f.t <= self.options.max_age_s:
                    fresh.append(f)
            self._late(cam, len(cam.frames) - len(fresh))
            cam.frames.clear()
            cam.frames.extend(fresh)
        ir, vi = list(self.ir.frames), list(self.vi.frames)
        found = newest_match([f.t for f in ir], [f.t for f in vi], tol)
        if found is None:
            return None
        i, j = found
        skipped = pairable([f.t for f in ir[:i]], [f.t for f in vi[:j]], tol)
        for cam, k, late in ((self.ir, i, skipped[0]), (self.vi, j, skipped[1])):
            for n in range(k):
                cam.frames.popleft()
                if n in late:
                    self._late(cam, 1)
                else:
                    cam.unmatched += 1
            cam.frames.popleft()
            cam.paired += 1
        self.pair_log.append((ir[i].index, vi[j].index, ir[i].t - vi[j].t))
        return ir[i], vi[j]

    def _overflow(self, cam: Camera, frame: LiveFrame) -> None:
        """A frame pushed out of a full buffer: the runner, or the other camera, fell behind."""
        self._late(cam, 1)

    def _late(self, cam: Camera, n: int) -> None:
        """Count ``n`` frames a runner that kept up would have fused: late once fusing has begun; before
        the first pair they are the backlog of opening and probing the streams (FFmpeg reads up to its
        ``analyzeduration`` before the first frame), which no runner could have fused."""
        if self.first_pair_at is None:
            cam.before_start += n
        else:
            cam.late += n

    def counts(self) -> dict[str, dict[str, int]]:
        return {"ir": self.ir.counts(), "vi": self.vi.counts()}
