"""Latency measurement: warm-up, then several backends interleaved on the same inputs.

Interleaving is the point: on a shared, noisy machine a slow minute hits every backend alike, so the
ratios between them stay meaningful even when the absolute numbers wander. Each resolution runs
``rounds`` rounds; in every round each *lane* (a runner in one timing mode) runs one chunk of
iterations, and the order of lanes rotates from round to round so no backend is always first.

* ``--iters N``: every lane gets exactly N timed iterations, split evenly over the rounds.
* ``--duration S``: every lane gets at least S seconds of *measured* time, S / rounds per round
  (at least one iteration per round), so a slow backend is not given 100x the wall time of a fast one.

Host timing uses ``time.perf_counter_ns``; the CUDA lanes (device-resident inputs, CUDA graphs) are
built in ``profile/cuda.py`` and time themselves with CUDA events.

Interleaving keeps ratios fair only while a neighbour slows every lane alike; it often does not (a
2-thread pool suffers far more from one busy process than a 1-thread one). So every round also
records the CPU time other processes used meanwhile (``runtime.cpus.LoadMeter``), a round where
they kept more than ``CONTENTION_CPUS`` busy is flagged *contended*, and each result carries the
statistics of its quiet rounds too (``Measurement.quiet_view``, ``profile --quiet-only``).
"""

from __future__ import annotations

import gc
import math
import re
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from lutfuse_deploy.errors import ConfigError, InputError
from lutfuse_deploy.profile.cuda import cuda_lanes
from lutfuse_deploy.profile.lanes import ClockNs, Lane, host_lane, runner_device
from lutfuse_deploy.runtime.base import Runner
from lutfuse_deploy.runtime.cpus import Load, LoadMeter

#: Per-lane iteration cap for ``--duration``, so a broken clock or a no-op runner cannot loop forever.
MAX_ITERS_PER_LANE = 100_000

#: Fewest samples each percentile needs: below 1 / (1 - q) samples it is an interpolation between
#: the largest few samples, not a tail estimate, and the report marks it.
MIN_SAMPLES = {"p90_ms": 10, "p95_ms": 20, "p99_ms": 100}

_RES_RE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")

@dataclass(frozen=True, order=True)
class Resolution:
    """An image size written ``WIDTHxHEIGHT`` (640x480 = 640 wide, 480 high)."""

    width: int
    height: int

    @classmethod
    def parse(cls, text: str) -> Resolution:
        m = _RES_RE.match(str(text))
        if not m:
            raise InputError(f"resolution {text!r}: expected WIDTHxHEIGHT, e.g. 640x480")
        w, h = int(m.group(1)), int(m.group(2))
        if w < 3 or h < 3 or w > 16384 or h > 16384:
            raise InputError(f"resolution {text!r}: width and height must be between 3 and 16384")
        return cls(w, h)

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


def parse_resolutions(text: str) -> list[Resolution]:
    """``"640x480,1280x720"`` -> resolutions in the given order, duplicates dropped."""
    out: list[Resolution] = []
    for part in str(text).split(","):
        if not part.strip():
            continue
        res = Resolution.parse(part)
        if res not in out:
            out.append(res)
    if not out:
        raise InputError("no resolution given: expected e.g. 640x480,1280x720")
    return out


@dataclass(frozen=True)
class Stats:
    """Summary of one lane's samples, in milliseconds; ``fps`` = batch * 1000 / mean (sequential)."""

    n: int
    min_ms: float
    mean_ms: float
    std_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    fps: float

    def as_dict(self) -> dict[str, float | int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def underpowered(self) -> list[str]:
        """The percentiles computed from fewer samples than ``MIN_SAMPLES`` asks for."""
        return [k for k, need in MIN_SAMPLES.items() if self.n < need]


def summarize(samples_ms: Sequence[float] | np.ndarray, batch: int = 1) -> Stats:
    """Percentiles by NumPy's default linear interpolation; std is the sample std (ddof 1)."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError("summarize needs a non-empty 1-D sequence of samples")
    p50, p90, p95, p99 = np.percentile(a, [50, 90, 95, 99])
    mean = float(a.mean())
    return Stats(
        n=int(a.size),
        min_ms=float(a.min()),
        mean_ms=mean,
        std_ms=float(a.std(ddof=1)) if a.size > 1 else 0.0,
        p50_ms=float(p50),
        p90_ms=float(p90),
        p95_ms=float(p95),
        p99_ms=float(p99),
        max_ms=float(a.max()),
        fps=batch * 1000.0 / mean if mean > 0 else math.inf,
    )


@dataclass
class Settings:
    """How long to measure: ``iters`` runs or ``duration`` seconds (default 1 s), never both."""

    warmup: int = 5
    iters: int | None = None
    duration: float | None = None
    rounds: int = 10

    def __post_init__(self) -> None:
        if self.iters is not None and self.duration is not None:
            raise ConfigError("give --iters or --duration, not both")
        if self.iters is None and self.duration is None:
            self.duration = 1.0
        if self.warmup < 0:
            raise ConfigError(f"--warmup must be >= 0, got {self.warmup}")
        if self.iters is not None and self.iters < 1:
            raise ConfigError(f"--iters must be >= 1, got {self.iters}")
        if self.duration is not None and not (self.duration > 0 and math.isfinite(self.duration)):
            raise ConfigError(f"--duration must be a positive number of seconds, got {self.duration}")
        if self.rounds < 1:
            raise ConfigError(f"rounds must be >= 1, got {self.rounds}")

    @property
    def rounds_run(self) -> int:
        """Rounds per resolution that actually run: --iters N below ``rounds`` runs N rounds of one."""
        return min(self.rounds, self.iters) if self.iters is not None else self.rounds

    def as_dict(self) -> dict[str, Any]:
        return {
            "warmup": self.warmup,
            "iters": self.iters,
            "duration_s": self.duration,
            "rounds": self.rounds_run,
        }


@dataclass
class Measurement:
    """The result for one (runner, mode, resolution); ``samples_ms`` are kept for the histogram."""

    runner_index: int
    kind: str
    backend: str
    artifact: str
    device: str
    mode: str
    resolution: Resolution
    samples_ms: np.ndarray
    stats: Stats
    warmup: int
    peak_rss_mb: float
    gpu_peak_mb: float | None = None
    #: other processes' CPU use in each round at this resolution (None where /proc is unreadable)
    round_loads: tuple[Load | None, ...] = ()
    #: the round of each sample, parallel to ``samples_ms``
    sample_rounds: np.ndarray | None = None
    #: which samples ``stats`` summarises: "all", "quiet" or "all (no quiet round)"
    selection: str = "all"

    @property
    def contended_rounds(self) -> int:
        return sum(1 for x in self.round_loads if x is not None and x.contended)

    @property
    def other_cpus(self) -> float | None:
        """Mean CPUs other processes kept busy over this resolution's rounds."""
        loads = [x.other_cpus for x in self.round_loads if x is not None]
        return float(np.mean(loads)) if loads else None

    def quiet_view(self) -> Measurement:
        """This result restricted to its samples from uncontended rounds (all, when none is quiet)."""
        if self.sample_rounds is None or not self.round_loads:
            return self
        quiet = [r for r, x in enumerate(self.round_loads) if x is not None and not x.contended]
        keep = np.isin(self.sample_rounds, quiet)
        if not keep.any():
            return replace(self, selection="all (no quiet round)")
        samples = self.samples_ms[keep]
        return replace(self, samples_ms=samples, sample_rounds=self.sample_rounds[keep],
                       stats=summarize(samples), selection="quiet")


class Meter(Protocol):
    def start(self) -> None: ...

    def stop(self) -> Load | None: ...


def peak_rss_mb() -> float:
    """The *process's* high-water mark of resident memory (MiB), all runners loaded so far together;
    ru_maxrss is KiB on Linux, bytes on macOS."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _chunk_sizes(total: int, rounds: int) -> list[int]:
    """Split ``total`` iterations over at most ``rounds`` rounds, as evenly as possible."""
    r = min(rounds, total)
    base, extra = divmod(total, r)
    return [base + (1 if i < extra else 0) for i in range(r)]


RoundHook = Callable[[int, int], None]


def run_interleaved(lanes: Sequence[Lane], settings: Settings, meter: Meter | None = None,
                    on_round: RoundHook | None = None) -> list[Load | None]:
    """Warm every lane up, then time them round-robin in rotating order; fills ``lane.samples``.

    Returns what ``meter`` measured over each round (other processes' CPU use); ``on_round(done,
    total)`` is called after each round. The cyclic garbage collector is paused while timing (as
    ``timeit`` does): a collection pause would land on whichever backend happens to run, which says
    nothing about that backend.
    """
    for lane in lanes:
        for _ in range(settings.warmup):
            lane.fn()
    if not lanes:
        return []
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        return _time_rounds(lanes, settings, meter or LoadMeter(), on_round)
    finally:
        if was_enabled:
            gc.enable()


def _time_rounds(lanes: Sequence[Lane], settings: Settings, meter: Meter,
                 on_round: RoundHook | None) -> list[Load | None]:
    if settings.iters is not None:
        plan: list[dict[str, Any]] = [{"count": c} for c in _chunk_sizes(settings.iters, settings.rounds_run)]
    else:
        assert settings.duration is not None
        plan = [{"min_ms": settings.duration * 1000.0 / settings.rounds_run}] * settings.rounds_run
    loads: list[Load | None] = []
    for r, chunk in enumerate(plan):
        meter.start()
        for lane in _rotated(lanes, r):
            _run_chunk(lane, r, **chunk)
        loads.append(meter.stop())
        if on_round:
            on_round(r + 1, len(plan))
    return loads


def _rotated(lanes: Sequence[Lane], r: int) -> list[Lane]:
    k = r % len(lanes)
    return list(lanes[k:]) + list(lanes[:k])


def _run_chunk(lane: Lane, round_index: int, count: int | None = None, min_ms: float | None = None) -> None:
    """Time ``count`` iterations of one lane, or at least one until ``min_ms`` of measured time."""
    if lane.before_chunk:
        lane.before_chunk()
    done, spent = 0, 0.0
    while True:
        if count is not None and done >= count:
            break
        if min_ms is not None and done >= 1 and (spent >= min_ms or len(lane.samples) >= MAX_ITERS_PER_LANE):
            break
        ms = lane.timer(lane.fn)
        lane.samples.append(ms)
        lane.sample_rounds.append(round_index)
        done += 1
        spent += ms
    if lane.after_chunk:
        lane.after_chunk(lane)


def profile_runners(
    runners: Sequence[Runner],
    resolutions: Sequence[Resolution],
    settings: Settings,
    inputs: Callable[[Resolution, Runner], tuple[np.ndarray, np.ndarray]],
    *,
    artifacts: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
    on_round: Callable[[Resolution, int, int], None] | None = None,
    clock_ns: ClockNs = time.perf_counter_ns,
    meter: Meter | None = None,
) -> list[Measurement]:
    """Measure every runner at every resolution, interleaved; one Measurement per lane.

    ``inputs(resolution, runner)`` returns the ``(ir, vi)`` batch for that runner; it should return
    the same arrays for runners of the same kind and io so every backend sees identical pixels.
    CUDA runners (``runner.device`` starting with ``cuda``) also get the ``device`` and
    ``cuda-graph`` lanes their hooks offer (see ``profile/cuda.py``). ``on_round(resolution,
    done, total)`` reports progress; ``meter`` measures other processes' load per round.
    """
    arts = list(artifacts) if artifacts is not None else [""] * len(runners)
    results: list[Measurement] = []
    for runner in runners:
        runner.activate()
    for res in resolutions:
        lanes: list[Lane] = []
        for i, runner in enumerate(runners):
            ir, vi = inputs(res, runner)
            lanes.append(host_lane(i, runner, ir, vi, clock_ns))
            if runner_device(runner).startswith("cuda"):
                lanes.extend(cuda_lanes(i, runner, ir, vi, lanes[-1]))
        if progress:
            names = ", ".join(f"{lane.runner.kind}/{lane.runner.backend}/{lane.mode}" for lane in lanes)
            progress(f"{res}: {len(lanes)} lane(s) interleaved ({names})")
        hook = (lambda done, total, res=res: on_round(res, done, total)) if on_round else None
        loads = tuple(run_interleaved(lanes, settings, meter, hook))
        rss = peak_rss_mb()
        for lane in lanes:
            runner = lane.runner
            results.append(
                Measurement(
                    runner_index=lane.key,
                    kind=runner.kind,
                    backend=runner.backend,
                    artifact=arts[lane.key],
                    device=runner_device(runner),
                    mode=lane.mode,
                    resolution=res,
                    samples_ms=np.asarray(lane.samples, dtype=np.float64),
                    stats=summarize(lane.samples),
                    warmup=settings.warmup,
                    peak_rss_mb=rss,
                    gpu_peak_mb=lane.gpu_peak_mb,
                    round_loads=loads,
                    sample_rounds=np.asarray(lane.sample_rounds, dtype=np.int64),
                )
            )
    return results
