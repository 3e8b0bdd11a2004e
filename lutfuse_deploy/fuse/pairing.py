"""Pairing two frame streams: by index when the rates match, by nearest presentation time otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np


@dataclass
class Pairing:
    """What pairing saw: how many pairs, and the frames of either stream left without a partner."""

    pairs: int = 0
    ir_frames: int = 0
    vi_frames: int = 0
    ir_left: list[int] | None = None
    vi_left: list[int] | None = None
    rates: tuple[Fraction | None, Fraction | None] = (None, None)  # (ir, vi) frames per second

    def leftover(self, ir: Path, vi: Path) -> str | None:
        parts = [f"{_span(left)} of {path.name}" for left, path in ((self.ir_left, ir), (self.vi_left, vi)) if left]
        if not parts:
            return None
        tail = f"fused {self.pairs}, left {' and '.join(parts)} unfused"
        ir_rate, vi_rate = self.rates
        if ir_rate and vi_rate and ir_rate != vi_rate:  # frame counts differ anyway: the durations are the cause
            return (f"{ir.name} lasts {self.ir_frames / float(ir_rate):.3g} s ({self.ir_frames} frames at "
                    f"{float(ir_rate):.6g} fps) and {vi.name} {self.vi_frames / float(vi_rate):.3g} s ({self.vi_frames} "
                    f"frames at {float(vi_rate):.6g} fps): different durations; {tail}")
        return f"{ir.name} has {self.ir_frames} frames and {vi.name} {self.vi_frames}: {tail}"


def _span(idx: list[int]) -> str:
    return f"frame {idx[0]}" if len(idx) == 1 else f"frames {idx[0]}-{idx[-1]}"


def pair_by_index(ir: Iterator[tuple[float, np.ndarray]], vi: Iterator[tuple[float, np.ndarray]],
                  stats: Pairing) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Equal frame rates: frame i with frame i; the longer stream's tail is counted, not fused."""
    while True:
        a, b = next(ir, None), next(vi, None)
        if a is None or b is None:
            break
        stats.pairs += 1
        yield a[1], b[1]
    n_ir, n_vi = (a is not None) + sum(1 for _ in ir), (b is not None) + sum(1 for _ in vi)
    stats.ir_frames, stats.vi_frames = stats.pairs + n_ir, stats.pairs + n_vi
    stats.ir_left = list(range(stats.pairs, stats.pairs + n_ir))
    stats.vi_left = list(range(stats.pairs, stats.pairs + n_vi))


def pair_by_time(lead: Iterator[tuple[float, np.ndarray]], other: Iterator[tuple[float, np.ndarray]],
                 lead_rate: Fraction, other_rate: Fraction, stats: Pairing,
                 lead_is_ir: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Different rates: each ``lead`` frame with the ``other`` frame nearest in time (both timed from
    their first frame). A frame is shown for one frame period, so a lead frame a whole ``other``
    period or more from every ``other`` frame is left, and so are ``other`` frames a whole lead
    period or more after the last lead frame."""
    other_period = (1 - 1e-6) / float(other_rate)
    frames = enumerate(other)
    cur, nxt = next(frames, None), next(frames, None)  # (index, (time, image)) around the lead frame
    lead_left: list[int] = []
    n_lead, t_last = 0, 0.0
    for t, img in lead:
        while cur is not None and nxt is not None and abs(nxt[1][0] - t) < abs(cur[1][0] - t):
            cur, nxt = nxt, next(frames, None)
        n_lead, t_last = n_lead + 1, t
        if cur is None or abs(cur[1][0] - t) >= other_period:
            lead_left.append(n_lead - 1)
            continue
        stats.pairs += 1
        yield (img, cur[1][1]) if lead_is_ir else (cur[1][1], img)
    end = t_last + (1 - 1e-6) / float(lead_rate)
    rest = [f for f in (cur, nxt) if f is not None] + list(frames)
    other_left = [j for j, (s, _) in rest if s >= end]
    n_other = rest[-1][0] + 1 if rest else 0
    if lead_is_ir:
        stats.ir_frames, stats.vi_frames, stats.ir_left, stats.vi_left = n_lead, n_other, lead_left, other_left
    else:
        stats.ir_frames, stats.vi_frames, stats.ir_left, stats.vi_left = n_other, n_lead, other_left, lead_left


def newest_match(ir_times: list[float], vi_times: list[float], tolerance: float,
                 oldest: bool = False) -> tuple[int, int] | None:
    """Live pairing: the indices of the newest IR/visible frames captured within ``tolerance`` of each
    other (times ascending), or None. Newest means the latest older-of-the-two capture; among equals,
    the closest in time. Frames older than the match are never fused afterwards (they would be late).
    ``oldest``: the oldest such pair instead (what a runner that never fell behind would have taken)."""
    sign = -1.0 if oldest else 1.0
    best: tuple[float, float, int, int] | None = None
    j0 = 0
    for i, t in enumerate(ir_times):
        while j0 < len(vi_times) and vi_times[j0] < t - tolerance:
            j0 += 1
        j = j0
        while j < len(vi_times) and vi_times[j] <= t + tolerance:
            key = (sign * min(t, vi_times[j]), -abs(t - vi_times[j]))
            if best is None or key > best[:2]:
                best = (*key, i, j)
            j += 1
    return None if best is None else (best[2], best[3])


def pairable(ir_times: list[float], vi_times: list[float], tolerance: float) -> tuple[set[int], set[int]]:
    """The frames a runner that never fell behind would have fused (IR indices, visible indices): skipped
    frames among them are late; the others had no partner."""
    ir_used: set[int] = set()
    vi_used: set[int] = set()
    i0 = j0 = 0
    while (found := newest_match(ir_times[i0:], vi_times[j0:], tolerance, oldest=True)) is not None:
        i0, j0 = i0 + found[0] + 1, j0 + found[1] + 1
        ir_used.add(i0 - 1)
        vi_used.add(j0 - 1)
    return ir_used, vi_used
