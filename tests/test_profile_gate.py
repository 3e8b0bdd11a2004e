"""Budgets: strict validation naming the bad key, and held / over / not measured / ambiguous checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from profile_fakes import fake_measurement

from lutfuse_deploy.errors import ConfigError
from lutfuse_deploy.profile.gate import all_held, evaluate, load_budgets, parse_budgets, unplannable
from lutfuse_deploy.profile.timing import Resolution

ISSUE_EXAMPLE = """
budgets:
  - model: lutfuse            # kind from the model's metadata
    backend: onnxruntime
    resolution: 640x480
    p95_ms: 40                # absolute, for a known device
  - model: lutfuse
    backend: onnxruntime
    resolution: 640x480
    ratio_to: {backend: torch, max: 0.25}   # relative, measured in the same run
"""


def _one(**entry):
    base = {"model": "lutfuse", "backend": "onnxruntime", "resolution": "640x480"}
    return parse_budgets({"budgets": [{**base, **entry}]})


def test_issue_example_parses(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text(ISSUE_EXAMPLE)
    b0, b1 = load_budgets(path)
    assert (b0.model, b0.backend, b0.resolution, b0.mode) == (
        "lutfuse",
        "onnxruntime",
        Resolution(640, 480),
        "e2e",
    )
    assert b0.limits == (("p95_ms", 40.0),) and b0.ratio is None
    assert b1.limits == () and b1.ratio is not None
    assert (b1.ratio.backend, b1.ratio.max, b1.ratio.stat) == ("torch", 0.25, "p50")


def test_shipped_ci_budget_is_valid():
    budgets = load_budgets(Path(__file__).resolve().parents[1] / "recipes" / "budgets" / "ci.yaml")
    assert budgets and all(b.ratio is not None for b in budgets)


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ({"p96_ms": 3}, "'p96_ms'"),
        ({"ratio_to": {"backend": "torch", "max": 0.5, "maximum": 1}}, "'maximum'"),
        ({"p95_ms": -1}, "p95_ms"),
        ({"p95_ms": 0}, "p95_ms"),
        ({"p95_ms": "fast"}, "p95_ms"),
        ({"p95_ms": True}, "p95_ms"),
        ({"p50_ms": float("nan")}, "p50_ms"),
        ({"p99_ms": float("inf")}, "p99_ms"),
        ({"model": "lutfuse-xl", "p95_ms": 1}, "model"),
        ({"backend": "tflite", "p95_ms": 1}, "backend"),
        ({"resolution": "640*480", "p95_ms": 1}, "resolution"),
        ({"resolution": 640, "p95_ms": 1}, "resolution"),
        ({"mode": "turbo", "p95_ms": 1}, "mode"),
        ({"artifact": "", "p95_ms": 1}, "artifact"),
        ({}, "no limit"),
        ({"ratio_to": 0.25}, "ratio_to"),
        ({"ratio_to": {"max": 0.25}}, "'backend'"),
        ({"ratio_to": {"backend": "torch"}}, "'max'"),
        ({"ratio_to": {"backend": "torch", "max": 0}}, "ratio_to.max"),
        ({"ratio_to": {"backend": "torch", "max": 0.5, "stat": "p42"}}, "ratio_to.stat"),
    ],
)
def test_bad_budget_entries_name_the_key(entry, named):
    with pytest.raises(ConfigError, match=named.replace("*", r"\*")) as info:
        _one(**entry)
    assert "budgets[0]" in str(info.value)


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"budget": []},
        {"budgets": []},
        {"budgets": "x"},
        {"budgets": [["lutfuse"]]},
        {"budgets": [{"backend": "torch", "resolution": "640x480", "p50_ms": 1}]},
    ],
)
def test_bad_budget_documents(doc):
    with pytest.raises(ConfigError):
        parse_budgets(doc)


def test_unreadable_and_invalid_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_budgets(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("budgets: [\n  - model: lutfuse\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_budgets(bad)


# -- evaluation ------------------------------------------------------------------------------------
def test_absolute_limits_hold_and_go_over():
    (b,) = _one(p50_ms=15, p95_ms=20, p99_ms=25)
    m = fake_measurement(backend="onnxruntime", ms=[5.0] * 50 + [22.0] * 50)  # p50 13.5, p95 = p99 = 22
    checks = evaluate([b], [m])
    assert [(c.metric, c.status) for c in checks] == [
        ("p50_ms", "held"),
        ("p95_ms", "over"),
        ("p99_ms", "held"),
    ]
    assert [c.measured for c in checks] == pytest.approx([13.5, 22.0, 22.0])
    assert not all_held(checks)
    assert all_held(checks[:1])


def test_ratio_held_and_over():
    torch_m = fake_measurement(backend="torch", ms=100.0)
    ort_m = fake_measurement(backend="onnxruntime", ms=20.0, index=1)
    (held,) = _one(ratio_to={"backend": "torch", "max": 0.25})
    (over,) = _one(ratio_to={"backend": "torch", "max": 0.1})
    checks = evaluate([held, over], [torch_m, ort_m])
    assert [c.status for c in checks] == ["held", "over"]
    assert checks[0].measured == pytest.approx(0.2)
    assert "5.00x faster" in checks[0].note


def test_ratio_uses_the_chosen_statistic():
    torch_m = fake_measurement(backend="torch", ms=[10.0] * 99 + [1000.0])
    ort_m = fake_measurement(backend="onnxruntime", ms=[5.0] * 100)
    (b,) = _one(ratio_to={"backend": "torch", "max": 0.6, "stat": "p99"})
    (c,) = evaluate([b], [torch_m, ort_m])
    assert c.measured == pytest.approx(5.0 / torch_m.stats.p99_ms)
    assert c.metric == "p99 ratio to torch" and c.held


def test_unmeasured_budget_is_a_failed_check_not_a_pass():
    m = fake_measurement(backend="onnxruntime", res="1280x720", ms=1.0)
    (b,) = _one(p95_ms=1000)
    (c,) = evaluate([b], [m])
    assert c.status == "not measured" and c.measured is None and not all_held([c])
    (r,) = _one(ratio_to={"backend": "torch", "max": 10})
    (c2,) = evaluate([r], [fake_measurement(backend="onnxruntime")])
    assert c2.status == "not measured" and "no reference" in c2.note
    (g,) = _one(p95_ms=1000, mode="cuda-graph")
    assert evaluate([g], [fake_measurement(backend="onnxruntime")])[0].status == "not measured"


def test_two_artifacts_need_an_artifact_key():
    a = fake_measurement(backend="onnxruntime", artifact="runs/lut_gather.onnx", ms=3.0)
    b = fake_measurement(backend="onnxruntime", artifact="runs/lut_grid.onnx", ms=9.0, index=1)
    (amb,) = _one(p50_ms=5)
    assert evaluate([amb], [a, b])[0].status == "ambiguous"
    (pick,) = _one(p50_ms=5, artifact="lut_gather.onnx")
    (c,) = evaluate([pick], [a, b])
    assert c.held and c.measured == pytest.approx(3.0)


def test_unplannable_names_missing_targets():
    budgets = parse_budgets(yaml.safe_load(ISSUE_EXAMPLE))
    planned = {("lutfuse", "onnxruntime", Resolution(640, 480))}
    gaps = unplannable(budgets, planned)
    assert gaps == ["budgets[1] needs lutfuse/torch at 640x480"]
    assert unplannable(budgets, planned | {("lutfuse", "torch", Resolution(640, 480))}) == []


def test_all_held_needs_at_least_one_check():
    assert not all_held([])


def test_checks_note_thin_percentiles_and_contended_rounds():
    from profile_fakes import fake_measurement

    results = [fake_measurement(backend="torch", ms=[40.0] * 10, others=[0.0, 1.0]),
               fake_measurement(backend="onnxruntime", ms=[10.0] * 10, others=[0.0, 1.0], index=1)]
    budgets = parse_budgets({"budgets": [
        {"model": "lutfuse", "backend": "onnxruntime", "resolution": "640x480", "p99_ms": 50, "p50_ms": 50,
         "ratio_to": {"backend": "torch", "max": 0.5}}]})
    p50, p99, ratio = evaluate(budgets, results)
    assert (p50.metric, p99.metric) == ("p50_ms", "p99_ms")
    assert p99.held and "onnxruntime p99 from 10 samples (needs 100)" in p99.note and "1/2 rounds contended" in p99.note
    assert p50.note == "1/2 rounds contended"
    assert ratio.note == "4.00x faster; 1/2 rounds contended"
