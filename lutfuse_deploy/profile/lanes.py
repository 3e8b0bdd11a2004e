"""A lane: one runner timed one way at one size. Shared by the host timing and the CUDA lanes.

Kept apart from ``timing`` so that ``cuda`` (which builds lanes) and ``timing`` (which runs them)
each import this module and never each other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from lutfuse_deploy.runtime.base import Runner

#: Modes a lane can time: ``e2e`` = ``runner.infer`` on NumPy arrays (host<->device copies included);
#: ``device`` = device-resident inputs and outputs (no copies); ``cuda-graph`` = a captured graph replay.
MODES = ("e2e", "device", "cuda-graph")

ClockNs = Callable[[], int]


class HostTimer:
    """Wall time of a call with ``perf_counter_ns`` (the call must be synchronous, as ``infer`` is)."""

    def __init__(self, clock_ns: ClockNs = time.perf_counter_ns) -> None:
        self.clock_ns = clock_ns

    def __call__(self, fn: Callable[[], object]) -> float:
        t0 = self.clock_ns()
        fn()
        return (self.clock_ns() - t0) / 1e6


@dataclass
class Lane:
    """One runner timed one way at one resolution: ``fn`` does one iteration, ``timer`` times it."""

    key: int
    runner: Runner
    mode: str
    fn: Callable[[], object]
    timer: Callable[[Callable[[], object]], float]
    samples: list[float] = field(default_factory=list)
    #: the round each sample was taken in, parallel to ``samples``
    sample_rounds: list[int] = field(default_factory=list)
    gpu_peak_mb: float | None = None
    before_chunk: Callable[[], None] | None = None
    after_chunk: Callable[[Lane], None] | None = None


def runner_device(runner: Runner) -> str:
    """The runner's device as a string (``cpu`` when the runner does not say)."""
    return str(getattr(runner, "device", "cpu") or "cpu")


def host_lane(key: int, runner: Runner, ir: np.ndarray, vi: np.ndarray, clock_ns: ClockNs) -> Lane:
    """The end-to-end lane: ``runner.infer`` on NumPy arrays, timed on the host."""
    return Lane(key, runner, "e2e", lambda: runner.infer(ir, vi), HostTimer(clock_ns))


#: The backend name of the upstream lane (``runtime.upstream``); budgets may take it as ``ratio_to``.
UPSTREAM = "upstream"


def upstream_runner(folder: str | None, threads: int | None, device: str) -> tuple[Runner | None, str]:
    """The upstream lane's runner and a line naming what it runs, or None and why the lane is skipped.

    Never replaced by anything else: without the upstream code there is no upstream lane.
    """
    from lutfuse_deploy.errors import InputError
    from lutfuse_deploy.runtime.upstream import UpstreamRunner, upstream_problem

    if device != "cpu":
        raise InputError(f"the upstream lane runs on the CPU only, not on {device}")
    problem = upstream_problem(folder)
    if problem:
        return None, f"upstream lane skipped: {problem}"
    runner = UpstreamRunner(folder, threads=threads)
    return runner, f"upstream lane: {runner.path} ({runner.metadata['source']})"
