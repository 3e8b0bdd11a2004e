"""The CPUs a run has: cgroup quotas, other processes' load from /proc, and the default thread count."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from lutfuse_deploy.runtime import cpus
from lutfuse_deploy.runtime.cpus import CONTENTION_CPUS, Load, LoadMeter, default_threads


def test_quota_reads_cgroup_v2_and_v1(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cpus.quota_cpus(v2) == pytest.approx(1.5)
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cpus.quota_cpus(v2) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpus.quota_cpus(v1) == pytest.approx(3.0)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpus.quota_cpus(v1) is None
    assert cpus.quota_cpus(tmp_path / "none") is None


def test_available_cpus_is_capped_by_the_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "allowed_cpus", lambda: {0, 1, 2, 3})
    monkeypatch.setattr(cpus, "quota_cpus", lambda: None)
    assert cpus.available_cpus() == 4
    monkeypatch.setattr(cpus, "quota_cpus", lambda: 1.5)
    assert cpus.available_cpus() == 1
    monkeypatch.setattr(cpus, "quota_cpus", lambda: 0.2)
    assert cpus.available_cpus() == 1


@pytest.mark.parametrize(("other", "want"), [(0.0, 4), (CONTENTION_CPUS, 4), (0.3, 3), (1.0, 3), (1.3, 2),
                                             (3.9, 1), (8.0, 1)])
def test_default_threads_leaves_busy_cpus_to_their_owners(monkeypatch: pytest.MonkeyPatch, other: float,
                                                          want: int) -> None:
    monkeypatch.setattr(cpus, "available_cpus", lambda: 4)
    choice = default_threads(Load(wall_s=1.0, other_cpu_s=other))
    assert (choice.threads, choice.available) == (want, 4)
    assert f"{want} thread(s)" in choice.describe()


def test_load_flags_contention_above_the_threshold() -> None:
    assert not Load(2.0, 2 * CONTENTION_CPUS).contended
    assert Load(2.0, 2 * CONTENTION_CPUS + 0.02).contended
    assert Load(0.0, 1.0).other_cpus == 0.0
    assert Load(0.5, 0.25).as_dict() == {"wall_s": 0.5, "other_cpu_s": 0.25, "other_cpus": 0.5, "contended": True}


def test_load_meter_subtracts_this_process_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    busy, own = iter([1000, 1150]), iter([500, 540])  # ticks: machine +150, this process +40
    monkeypatch.setattr(cpus, "busy_ticks", lambda _cpus: next(busy))
    monkeypatch.setattr(cpus, "process_ticks", lambda: next(own))
    monkeypatch.setattr(cpus, "TICK_HZ", 100)
    meter = LoadMeter()
    meter.cpus = {0, 1}
    meter.start()
    meter._t0 -= 1.0  # one second of wall time
    load = meter.stop()
    assert load is not None
    assert load.other_cpu_s == pytest.approx(1.1) and load.other_cpus == pytest.approx(1.1, rel=0.01)


def test_load_meter_without_proc_says_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "busy_ticks", lambda _cpus: None)
    meter = LoadMeter()
    meter.start()
    assert meter.stop() is None
    monkeypatch.setattr(cpus, "available_cpus", lambda: 3)
    choice = default_threads()  # no load figure: every available CPU, and no claim about others
    assert (choice.threads, choice.other_cpus) == (3, None)
    assert "busy" not in choice.describe()


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs Linux /proc")
def test_load_meter_sees_a_busy_neighbour() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start
        meter = LoadMeter()
        meter.start()
        time.sleep(0.8)
        seen = meter.stop()
    finally:
        busy.kill()
        busy.wait()
    assert seen is not None and seen.wall_s >= 0.8
    assert seen.other_cpus > 0.5


def test_fuse_without_threads_says_what_it_chose(tmp_path: Path, pair_folders: tuple[Path, Path]) -> None:
    from conftest import run_cli

    from lutfuse_deploy.paths import pretrained_dir

    ir, vi = pair_folders
    proc = run_cli("fuse", "--model", pretrained_dir() / "mini.safetensors", "--ir", ir, "--vi", vi,
                   "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("threads: "))
    assert f"auto: {cpus.available_cpus()} CPU(s) available" in line
    chosen = int(line.split()[1])
    assert 1 <= chosen <= cpus.available_cpus()
    quiet = run_cli("fuse", "--model", pretrained_dir() / "mini.safetensors", "--ir", ir, "--vi", vi,
                    "--out", tmp_path / "q", "--json")
    assert quiet.returncode == 0 and "threads:" not in quiet.stderr
