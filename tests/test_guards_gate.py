"""Budget evaluation at both sides of every limit, and the branches that pick a ratio's reference
(mode, artifact, statistic), with hand-computed values: what ``tools/mutation.py`` checks."""

from __future__ import annotations

import pytest
from profile_fakes import fake_measurement

from lutfuse_deploy.errors import ConfigError
from lutfuse_deploy.profile.gate import all_held, evaluate, parse_budgets, unplannable
from lutfuse_deploy.profile.timing import Resolution


def _budgets(**entry):
    base = {"model": "lutfuse", "backend": "onnxruntime", "resolution": "640x480"}
    return parse_budgets({"budgets": [{**base, **entry}]})


@pytest.mark.parametrize(("ms", "status"), [(10.0, "held"), (10.25, "over"), (9.75, "held")])
def test_absolute_limit_holds_exactly_at_the_limit(ms, status):
    (check,) = evaluate(_budgets(p50_ms=10), [fake_measurement(backend="onnxruntime", ms=ms)])
    assert (check.measured, check.status) == (ms, status)


@pytest.mark.parametrize(("ms", "status"), [(5.0, "held"), (5.5, "over")])
def test_ratio_holds_exactly_at_max(ms, status):
    results = [fake_measurement(backend="onnxruntime", ms=ms), fake_measurement(backend="torch", ms=20.0)]
    (check,) = evaluate(_budgets(ratio_to={"backend": "torch", "max": 0.25}), results)
    assert check.measured == pytest.approx(ms / 20.0) and check.status == status
    assert check.metric == "p50 ratio to torch"


def test_ratio_is_this_over_the_reference():
    results = [fake_measurement(backend="onnxruntime", ms=5.0), fake_measurement(backend="torch", ms=40.0)]
    (check,) = evaluate(_budgets(ratio_to={"backend": "torch", "max": 0.5}), results)
    assert check.measured == 0.125 and check.held and "8.00x faster" in check.note


def test_ratio_to_the_same_backend_excludes_the_result_itself():
    """Two ONNX files on one backend: the budget names its artifact, the reference is the other one."""
    fast = fake_measurement(backend="onnxruntime", ms=5.0, artifact="build/fast.onnx", index=0)
    full = fake_measurement(backend="onnxruntime", ms=10.0, artifact="build/full.onnx", index=1)
    budgets = _budgets(artifact="fast.onnx",
                       ratio_to={"backend": "onnxruntime", "max": 0.5, "artifact": "full.onnx"})
    (check,) = evaluate(budgets, [fast, full])
    assert (check.measured, check.status) == (0.5, "held")
    # no artifact on the reference side: the only other onnxruntime result is still the reference
    (check,) = evaluate(_budgets(artifact="fast.onnx", ratio_to={"backend": "onnxruntime", "max": 0.5}),
                        [fast, full])
    assert (check.measured, check.status) == (0.5, "held")


def test_artifact_matches_by_file_name_or_full_path():
    m = fake_measurement(backend="onnxruntime", ms=3.0, artifact="/tmp/models/lut.onnx")
    for name in ("lut.onnx", "/tmp/models/lut.onnx"):
        (check,) = evaluate(_budgets(artifact=name, p50_ms=4), [m])
        assert check.status == "held", name
    (check,) = evaluate(_budgets(artifact="models/lut.onnx", p50_ms=4), [m])
    assert check.status == "not measured"


def test_ratio_reference_mode_defaults_to_the_budgets_mode():
    results = [
        fake_measurement(backend="onnxruntime", ms=5.0, mode="device"),
        fake_measurement(backend="torch", ms=20.0, mode="device"),
        fake_measurement(backend="torch", ms=40.0, mode="e2e"),
    ]
    (check,) = evaluate(_budgets(mode="device", ratio_to={"backend": "torch", "max": 0.3}), results)
    assert check.measured == 0.25
    (check,) = evaluate(_budgets(mode="device", ratio_to={"backend": "torch", "max": 0.3, "mode": "e2e"}), results)
    assert check.measured == 0.125


def test_ratio_statistic_applies_to_both_sides():
    this = fake_measurement(backend="onnxruntime", ms=[2.0, 9.0, 9.0, 9.0, 9.0])
    ref = fake_measurement(backend="torch", ms=[8.0, 16.0, 16.0, 16.0, 16.0])
    (check,) = evaluate(_budgets(ratio_to={"backend": "torch", "max": 0.3, "stat": "min"}), [this, ref])
    assert (check.measured, check.metric) == (0.25, "min ratio to torch")
    (check,) = evaluate(_budgets(ratio_to={"backend": "torch", "max": 0.6}), [this, ref])
    assert check.measured == 9.0 / 16.0


@pytest.mark.parametrize("key", ["p50_ms", "p95_ms", "p99_ms"])
@pytest.mark.parametrize(("value", "ok"), [(0, False), (-0.5, False), (1e-9, True), (float("inf"), False)])
def test_limits_must_be_positive_and_finite(key, value, ok):
    if ok:
        assert _budgets(**{key: value})[0].limits == ((key, value),)
    else:
        with pytest.raises(ConfigError, match=key):
            _budgets(**{key: value})


@pytest.mark.parametrize(("value", "ok"), [(0, False), (1e-9, True)])
def test_ratio_max_must_be_positive(value, ok):
    if ok:
        assert _budgets(ratio_to={"backend": "torch", "max": value})[0].ratio.max == value
    else:
        with pytest.raises(ConfigError, match="max"):
            _budgets(ratio_to={"backend": "torch", "max": value})


def test_no_checks_is_not_a_pass():
    assert all_held([]) is False
    (check,) = evaluate(_budgets(p50_ms=10), [fake_measurement(backend="onnxruntime", ms=1.0)])
    assert all_held([check]) is True


def test_unplannable_names_the_missing_reference_backend():
    (budget,) = _budgets(ratio_to={"backend": "torch", "max": 0.5})
    res = Resolution(640, 480)
    assert unplannable([budget], {("lutfuse", "onnxruntime", res), ("lutfuse", "torch", res)}) == []
    (reason,) = unplannable([budget], {("lutfuse", "onnxruntime", res)})
    assert "lutfuse/torch" in reason and "640x480" in reason
