"""Fake runners and a fake clock for the profiler tests: controlled cost, recorded calls."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

import numpy as np

from lutfuse_deploy.runtime.base import Runner, vi_channels


class FakeClock:
    """A ``perf_counter_ns`` stand-in that only moves when a fake runner says it worked."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now

    def advance(self, ns: int) -> None:
        self.now += ns


class FakeRunner(Runner):
    """Costs ``costs_ms`` in turn: on a FakeClock (deterministic) or as real sleeps (``clock=None``).

    Every call is appended to ``log`` as (name, ir, vi) so tests can check order and inputs.
    """

    def __init__(
        self,
        name: str = "a",
        *,
        kind: str = "lutfuse",
        backend: str = "torch",
        io: str = "float",
        costs_ms: Sequence[float] = (1.0,),
        clock: FakeClock | None = None,
        log: list[tuple[str, np.ndarray, np.ndarray]] | None = None,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        self.name, self.kind, self.backend, self.io, self.device = name, kind, backend, io, device
        self._costs = itertools.cycle(costs_ms)
        self.clock = clock
        self.log = log if log is not None else []
        self.activations = 0
        self.deactivations = 0

    def activate_impl(self) -> None:
        self.activations += 1

    def deactivate_impl(self) -> None:
        self.deactivations += 1

    def infer_impl(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        cost = next(self._costs)
        if self.clock is not None:
            self.clock.advance(round(cost * 1e6))
        elif cost > 0:
            time.sleep(cost / 1000)
        self.log.append((self.name, ir, vi))
        n, _, h, w = ir.shape
        return np.zeros((n, vi_channels(self.kind), h, w), np.float32)


def fake_measurement(
    kind: str = "lutfuse",
    backend: str = "torch",
    res: str = "640x480",
    ms: float | Sequence[float] = 10.0,
    *,
    mode: str = "e2e",
    artifact: str = "model.bin",
    index: int = 0,
    gpu_peak_mb: float | None = None,
    others: Sequence[float] = (),
):
    """A Measurement with known samples (a constant ``ms`` or the given list); ``others`` gives each
    round's busy CPUs, the samples then spread evenly over those rounds."""
    from lutfuse_deploy.profile.timing import Measurement, Resolution, summarize
    from lutfuse_deploy.runtime.cpus import Load

    samples = np.asarray([ms] * 5 if np.isscalar(ms) else ms, dtype=np.float64)
    rounds = np.arange(samples.size) * len(others) // samples.size if others else None
    return Measurement(
        runner_index=index,
        kind=kind,
        backend=backend,
        artifact=artifact,
        device="cpu",
        mode=mode,
        resolution=Resolution.parse(res),
        samples_ms=samples,
        stats=summarize(samples),
        warmup=1,
        peak_rss_mb=123.4,
        gpu_peak_mb=gpu_peak_mb,
        round_loads=tuple(Load(1.0, o) for o in others),
        sample_rounds=rounds,
    )
