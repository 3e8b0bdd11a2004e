"""Per-frame timings of a long run kept in fixed memory: a count, a sum and a log-spaced histogram.

A live run may last days; keeping every frame's milliseconds in a list would grow without bound, so
percentiles come from 1 %-wide buckets instead (a p95 within 1 % of the exact one).
"""

from __future__ import annotations

import math

import numpy as np

LOW_MS, HIGH_MS, STEP = 0.01, 600_000.0, 1.01  # 10 us .. 10 min in 1 % steps (~1,600 buckets)
_BUCKETS = int(math.log(HIGH_MS / LOW_MS) / math.log(STEP)) + 2


class Timing:
    """Milliseconds per event: count, mean and percentiles, in constant memory."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.worst = 0.0
        self._hist = np.zeros(_BUCKETS, np.int64)

    def add(self, ms: float) -> None:
        self.count += 1
        self.total += ms
        self.worst = max(self.worst, ms)
        b = 0 if ms <= LOW_MS else min(_BUCKETS - 1, int(math.log(ms / LOW_MS) / math.log(STEP)) + 1)
        self._hist[b] += 1

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")

    def percentile(self, q: float) -> float:
        """The upper edge of the bucket holding the q-th percentile (never below the true value)."""
        if not self.count:
            return float("nan")
        b = int(np.searchsorted(np.cumsum(self._hist), math.ceil(q / 100 * self.count)))
        return min(LOW_MS * STEP ** b, self.worst)

    def to_dict(self) -> dict[str, float | int]:
        return {"mean_ms": self.mean, "p50_ms": self.percentile(50), "p95_ms": self.percentile(95),
                "max_ms": self.worst if self.count else float("nan"), "count": self.count}
