"""Timing logic: percentiles, resolutions, iteration and duration schedules, interleaving, inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from profile_fakes import FakeClock, FakeRunner

from lutfuse_deploy.errors import ConfigError, InputError
from lutfuse_deploy.profile import timing
from lutfuse_deploy.profile.inputs import InputSource, synthetic_frame, to_batch
from lutfuse_deploy.profile.timing import Resolution, Settings, parse_resolutions, profile_runners, summarize

RES = Resolution(24, 16)


def _run(runners, settings, clock, resolutions=(RES,)):
    return profile_runners(runners, list(resolutions), settings, InputSource(), clock_ns=clock)


# -- statistics ------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 7, 100, 1001])
def test_summarize_matches_numpy(n):
    a = np.random.default_rng(n).gamma(2.0, 3.0, size=n)
    s = summarize(a)
    for q, got in ((50, s.p50_ms), (90, s.p90_ms), (95, s.p95_ms), (99, s.p99_ms)):
        assert got == pytest.approx(np.percentile(a, q), rel=1e-12)
    assert (s.n, s.min_ms, s.max_ms) == (n, a.min(), a.max())
    assert s.mean_ms == pytest.approx(a.mean())
    assert s.std_ms == pytest.approx(a.std(ddof=1) if n > 1 else 0.0)
    assert s.fps == pytest.approx(1000.0 / a.mean())
    assert s.min_ms <= s.p50_ms <= s.p90_ms <= s.p95_ms <= s.p99_ms <= s.max_ms


def test_summarize_rejects_empty():
    with pytest.raises(ValueError):
        summarize([])


# -- resolutions -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["640x480", "640X480", " 640 x 480 ", "640×480"])
def test_resolution_is_width_by_height(text):
    r = Resolution.parse(text)
    assert (r.width, r.height) == (640, 480)
    assert str(r) == "640x480"
    assert r.megapixels == pytest.approx(0.3072)


@pytest.mark.parametrize(
    "text", ["640", "640x", "x480", "axb", "640x480x3", "0x480", "640x2", "-640x480", ""]
)
def test_malformed_resolution_is_a_clear_error(text):
    with pytest.raises(InputError, match="WIDTHxHEIGHT|between 3 and"):
        Resolution.parse(text)


def test_parse_resolutions_keeps_order_and_drops_duplicates():
    got = parse_resolutions("1280x720,640x480,1280x720,")
    assert got == [Resolution(1280, 720), Resolution(640, 480)]
    with pytest.raises(InputError):
        parse_resolutions(" , ")
    with pytest.raises(InputError, match="800by600"):
        parse_resolutions("640x480,800by600")


# -- settings --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"iters": 5, "duration": 1.0},
        {"iters": 0, "duration": None},
        {"iters": None, "duration": 0.0},
        {"iters": None, "duration": float("inf")},
        {"warmup": -1, "iters": 3, "duration": None},
        {"rounds": 0, "iters": 3, "duration": None},
    ],
)
def test_settings_reject_bad_combinations(kwargs):
    with pytest.raises(ConfigError):
        Settings(**kwargs)


def test_settings_default_to_one_second():
    assert Settings().duration == 1.0 and Settings().iters is None
    assert Settings(iters=4).duration is None


def test_garbage_collector_is_restored_after_timing():
    import gc

    clock = FakeClock()
    _run([FakeRunner(clock=clock)], Settings(warmup=0, iters=2), clock)
    assert gc.isenabled()


# -- schedules -------------------------------------------------------------------------------------
@pytest.mark.parametrize("iters", [1, 3, 10, 27])
def test_iters_gives_each_runner_exactly_n_timed_runs_after_warmup(iters):
    clock = FakeClock()
    log: list = []
    a = FakeRunner("a", costs_ms=(1.0,), clock=clock, log=log)
    b = FakeRunner("b", backend="onnxruntime", costs_ms=(5.0,), clock=clock, log=log)
    res = _run([a, b], Settings(warmup=2, iters=iters, duration=None), clock)
    assert [m.stats.n for m in res] == [iters, iters]
    assert [name for name, *_ in log].count("a") == 2 + iters
    assert [name for name, *_ in log].count("b") == 2 + iters
    assert [m.backend for m in res] == ["torch", "onnxruntime"]
    assert res[0].stats.p50_ms == pytest.approx(1.0) and res[1].stats.p50_ms == pytest.approx(5.0)


def test_duration_gives_each_runner_at_least_the_duration_of_measured_time():
    clock = FakeClock()
    fast = FakeRunner("fast", costs_ms=(3.0,), clock=clock)
    slow = FakeRunner("slow", backend="onnxruntime", costs_ms=(50.0,), clock=clock)
    settings = Settings(warmup=1, iters=None, duration=0.1, rounds=10)
    m_fast, m_slow = _run([fast, slow], settings, clock)
    # slice = 10 ms per round: fast needs 4 runs of 3 ms, slow 1 run of 50 ms (at least one per round)
    assert m_fast.stats.n == 40 and m_slow.stats.n == 10
    assert m_fast.samples_ms.sum() >= 100.0 and m_slow.samples_ms.sum() >= 100.0


def test_duration_stops_at_the_iteration_cap_when_the_clock_does_not_move(monkeypatch):
    monkeypatch.setattr(timing, "MAX_ITERS_PER_LANE", 30)
    clock = FakeClock()
    idle = FakeRunner("idle", costs_ms=(0.0,), clock=clock)
    (m,) = _run([idle], Settings(warmup=0, iters=None, duration=1.0, rounds=3), clock)
    assert m.stats.n == 32  # cap reached in round 1, then one run in each of the 2 other rounds


def test_percentiles_of_a_run_are_those_of_its_samples():
    clock = FakeClock()
    costs = (1.0, 2.0, 3.0, 4.0, 10.0)
    (m,) = _run(
        [FakeRunner("a", costs_ms=costs, clock=clock)], Settings(warmup=0, iters=50, duration=None), clock
    )
    want = np.tile(costs, 10)
    assert np.allclose(np.sort(m.samples_ms), np.sort(want))
    assert m.stats.p90_ms == pytest.approx(np.percentile(want, 90))
    assert m.stats.max_ms == pytest.approx(10.0)


def test_runners_are_interleaved_in_rotating_order():
    clock = FakeClock()
    log: list = []
    runners = [FakeRunner(n, costs_ms=(1.0,), clock=clock, log=log) for n in "abc"]
    _run(runners, Settings(warmup=1, iters=20, duration=None, rounds=10), clock)
    timed = [name for name, *_ in log][3:]  # after one warm-up call each
    assert len(timed) == 60
    rounds = [timed[i : i + 6] for i in range(0, 60, 6)]  # 2 runs per runner per round
    starts = [r[0] for r in rounds]
    assert starts[:4] == ["a", "b", "c", "a"]  # order rotates
    for r in rounds:
        assert sorted(r) == ["a", "a", "b", "b", "c", "c"]  # every runner runs in every round
    switches = sum(x != y for x, y in itertools.pairwise(timed))
    assert switches >= 29


def test_every_runner_sees_the_same_inputs_and_each_resolution_its_own_size():
    clock = FakeClock()
    log: list = []
    a = FakeRunner("a", clock=clock, log=log)
    b = FakeRunner("b", backend="onnxruntime", clock=clock, log=log)
    gray = FakeRunner("g", kind="mmdrfuse-student", io="uint8", clock=clock, log=log)
    sizes = (Resolution(24, 16), Resolution(10, 30))
    res = _run([a, b, gray], Settings(warmup=1, iters=2, duration=None), clock, sizes)
    assert [str(m.resolution) for m in res] == ["24x16"] * 3 + ["10x30"] * 3
    for w, h in ((24, 16), (10, 30)):
        calls = [(n, ir, vi) for n, ir, vi in log if ir.shape[2:] == (h, w)]
        by_name = {n: (ir, vi) for n, ir, vi in calls}
        assert by_name["a"][0] is by_name["b"][0] and by_name["a"][1] is by_name["b"][1]
        assert by_name["a"][1].shape == (1, 3, h, w) and by_name["a"][1].dtype == np.float32
        assert by_name["g"][1].shape == (1, 1, h, w) and by_name["g"][1].dtype == np.uint8
        assert np.array_equal(by_name["g"][0], by_name["a"][0].astype(np.uint8))


def test_to_batch_layouts():
    ir, vi = synthetic_frame(Resolution(8, 5))
    assert ir.shape == (5, 8) and vi.shape == (5, 8, 3) and ir.dtype == np.uint8
    assert ir.std() > 0 and vi.std() > 0
    bir, bvi = to_batch((ir, vi), "lutfuse", "float")
    assert bir.shape == (1, 1, 5, 8) and bvi.shape == (1, 3, 5, 8)
    assert np.array_equal(bvi[0].transpose(1, 2, 0), vi.astype(np.float32))
    _, gvi = to_batch((ir, vi), "mmdrfuse-teacher", "float")
    v = vi.astype(np.float64)
    luma = (v[..., 0] * 299 + v[..., 1] * 587 + v[..., 2] * 114) / 1000
    assert np.abs(gvi[0, 0] - luma).max() <= 1.0


def test_data_folder_without_pairs_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="ir/ and vi/"):
        InputSource(tmp_path)


def test_real_pair_is_resized_to_each_resolution(tmp_path):
    from PIL import Image

    (tmp_path / "ir").mkdir()
    (tmp_path / "vi").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 60), dtype=np.uint8)).save(tmp_path / "ir" / "001.png")
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(tmp_path / "vi" / "001.png")
    src = InputSource(tmp_path)
    runner = FakeRunner()
    ir, vi = src(Resolution(32, 20), runner)
    assert ir.shape == (1, 1, 20, 32) and vi.shape == (1, 3, 20, 32)
    assert "001.png" in src.description
    assert src(Resolution(32, 20), runner)[0] is ir  # cached: identical arrays for every backend


# -- machine load per round --------------------------------------------------------------------------
class ScriptedMeter:
    """A LoadMeter stand-in: round r reports ``others[r]`` CPUs busy with other processes."""

    def __init__(self, others):
        self.others = list(others)
        self.rounds = 0

    def start(self):
        pass

    def stop(self):
        load = timing.Load(wall_s=1.0, other_cpu_s=self.others[self.rounds])
        self.rounds += 1
        return load


def test_each_round_records_load_and_quiet_view_drops_contended_rounds():
    clock = FakeClock()
    # costs cycle per call: 2 iterations per round, contended rounds (0 and 2) run slow
    runner = FakeRunner("a", costs_ms=(10.0, 10.0, 1.0, 1.0), clock=clock)
    seen = []
    meter = ScriptedMeter([1.0, 0.0, 1.2, 0.05])
    (m,) = profile_runners([runner], [RES], Settings(warmup=0, iters=8, rounds=4), InputSource(),
                           clock_ns=clock, meter=meter, on_round=lambda res, d, t: seen.append((str(res), d, t)))
    assert seen == [("24x16", 1, 4), ("24x16", 2, 4), ("24x16", 3, 4), ("24x16", 4, 4)]
    assert m.contended_rounds == 2 and m.other_cpus == pytest.approx(0.5625)
    assert list(m.sample_rounds) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert m.stats.p50_ms == pytest.approx(5.5) and m.selection == "all"
    quiet = m.quiet_view()
    assert quiet.selection == "quiet" and quiet.stats.n == 4 and quiet.stats.max_ms == pytest.approx(1.0)
    assert list(quiet.sample_rounds) == [1, 1, 3, 3]


def test_quiet_view_keeps_every_sample_when_no_round_was_quiet():
    clock = FakeClock()
    (m,) = profile_runners([FakeRunner(clock=clock)], [RES], Settings(warmup=0, iters=3, rounds=3), InputSource(),
                           clock_ns=clock, meter=ScriptedMeter([2.0, 2.0, 2.0]))
    q = m.quiet_view()
    assert q.selection == "all (no quiet round)" and q.stats.n == 3


def test_rounds_without_a_load_reading_are_neither_quiet_nor_contended():
    class Blind:
        def start(self):
            pass

        def stop(self):
            return None

    clock = FakeClock()
    (m,) = profile_runners([FakeRunner(clock=clock)], [RES], Settings(warmup=0, iters=2, rounds=2), InputSource(),
                           clock_ns=clock, meter=Blind())
    assert m.round_loads == (None, None) and m.other_cpus is None and m.contended_rounds == 0
    assert m.quiet_view().selection == "all (no quiet round)"


@pytest.mark.parametrize(("n", "thin"), [(5, ["p90_ms", "p95_ms", "p99_ms"]), (10, ["p95_ms", "p99_ms"]),
                                         (20, ["p99_ms"]), (99, ["p99_ms"]), (100, [])])
def test_percentiles_say_when_they_have_too_few_samples(n, thin):
    assert summarize(np.arange(1.0, n + 1)).underpowered() == thin
