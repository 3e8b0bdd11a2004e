"""The CPUs a run really has: affinity, cgroup quota, and how much of them other processes use.

Read from /proc and /sys by hand: psutil would add a compiled dependency for a few counters, and it
does not read cgroup quotas. On systems without these files every function degrades to ``None`` or
to ``os.cpu_count()``, never to an error.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

#: A round or a start-up sample counts as *contended* when other processes kept more than this many
#: CPUs busy on average (0.25 = a quarter of one core). Quiet machines measure 0.00-0.05 here.
CONTENTION_CPUS = 0.25
#: How long ``default_threads`` watches the machine before choosing (ten kernel ticks).
SAMPLE_S = 0.1


def allowed_cpus() -> set[int] | None:
    """The CPU ids this process may run on (``None`` where the OS does not say)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def quota_cpus(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs the cgroup's CFS quota allows (cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), or None."""
    try:
        v2 = root / "cpu.max"
        if v2.is_file():
            quota, period = (v2.read_text().split() + ["100000"])[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1 = root / "cpu" / "cpu.cfs_quota_us"
        if v1.is_file():
            quota_us = int(v1.read_text())
            period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
            return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None
    return None


def available_cpus() -> int:
    """Whole CPUs this process can use: the affinity set, capped by a cgroup quota (at least 1)."""
    cpus = allowed_cpus()
    n = len(cpus) if cpus else (os.cpu_count() or 1)
    quota = quota_cpus()
    if quota is not None:
        n = min(n, max(1, math.floor(quota)))
    return max(1, n)


TICK_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def busy_ticks(cpus: set[int] | None) -> int | None:
    """Non-idle ticks (user, nice, system, irq, softirq, steal) summed over ``cpus`` from /proc/stat.

    Steal counts as busy: it is time the hypervisor gave to someone else, which contends as much.
    """
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    total = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        v = [int(x) for x in fields[:8]]
        total += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    return total


def process_ticks(pid: int | str = "self") -> int | None:
    """A process's user + system ticks, all its threads (fields 14 and 15 of /proc/PID/stat)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    return int(fields[11]) + int(fields[12])


@dataclass(frozen=True)
class Load:
    """CPU time other processes used on our CPUs over a wall-clock window."""

    wall_s: float
    other_cpu_s: float

    @property
    def other_cpus(self) -> float:
        """Average number of CPUs other processes kept busy (0.0 on an idle machine)."""
        return self.other_cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def contended(self) -> bool:
        return self.other_cpus > CONTENTION_CPUS

    def as_dict(self) -> dict[str, float | bool]:
        return {"wall_s": round(self.wall_s, 4), "other_cpu_s": round(self.other_cpu_s, 3),
                "other_cpus": round(self.other_cpus, 3), "contended": self.contended}


class LoadMeter:
    """``start()`` then ``stop() -> Load``: other processes' CPU time = machine busy - our own.

    Both counters are kernel ticks (1/100 s on Linux), so a window much shorter than ~0.2 s reads
    coarsely; ``stop`` returns None where /proc is missing.
    """

    def __init__(self) -> None:
        self.cpus = allowed_cpus()
        self._t0 = 0.0
        self._busy0: int | None = None
        self._own0: int | None = None

    def start(self) -> None:
        self._t0, self._busy0, self._own0 = time.perf_counter(), busy_ticks(self.cpus), process_ticks()

    def stop(self) -> Load | None:
        busy, own, wall = busy_ticks(self.cpus), process_ticks(), time.perf_counter() - self._t0
        if None in (busy, own, self._busy0, self._own0):
            return None
        assert busy is not None and own is not None and self._busy0 is not None and self._own0 is not None
        other = max(0, (busy - self._busy0) - (own - self._own0)) / TICK_HZ
        n = len(self.cpus) if self.cpus else (os.cpu_count() or 1)
        return Load(wall, min(other, n * wall))  # tick sampling can overshoot a short window


def sample_load(seconds: float = SAMPLE_S) -> Load | None:
    """Watch the machine for ``seconds`` (sleeping) and say what others used."""
    meter = LoadMeter()
    meter.start()
    time.sleep(seconds)
    return meter.stop()


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    available: int
    other_cpus: float | None

    def describe(self) -> str:
        busy = "" if self.other_cpus is None else f", {self.other_cpus:.2f} busy with other processes"
        return f"{self.threads} thread(s) (auto: {self.available} CPU(s) available{busy})"


def default_threads(load: Load | None = None) -> ThreadChoice:
    """Threads for a run nobody gave ``--threads``: the available CPUs less those others keep busy.

    Each CPU another process holds (above ``CONTENTION_CPUS``, rounded up) is left to it: a
    2-thread pool sharing 2 cores with one busy process waits at every barrier for the thread that
    was preempted, which measured 3-10x slower than 1 thread (docs/performance.md).
    """
    available = available_cpus()
    if load is None:
        load = sample_load()
    if load is None:
        return ThreadChoice(available, available, None)
    taken = max(0, math.ceil(load.other_cpus - CONTENTION_CPUS))
    return ThreadChoice(max(1, available - taken), available, load.other_cpus)
