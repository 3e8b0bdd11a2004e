"""Reports: JSON keys and environment, atomic writes, speed-up column, PNG plot, checks table."""

from __future__ import annotations

import json

import pytest
from profile_fakes import fake_measurement
from rich.console import Console

from lutfuse_deploy.errors import ConfigError
from lutfuse_deploy.profile import report
from lutfuse_deploy.profile.environment import collect_environment
from lutfuse_deploy.profile.gate import evaluate, parse_budgets
from lutfuse_deploy.profile.timing import Settings

STAT_KEYS = {"p50_ms", "p95_ms", "p99_ms", "mean_ms", "min_ms", "max_ms", "std_ms", "p90_ms", "fps"}


def _results():
    return [
        fake_measurement(backend="torch", res="64x48", ms=[40.0, 44.0, 42.0]),
        fake_measurement(backend="onnxruntime", res="64x48", ms=[10.0, 11.0, 10.5], index=1),
        fake_measurement(backend="torch", res="128x96", ms=[160.0, 170.0]),
        fake_measurement(backend="onnxruntime", res="128x96", ms=[20.0, 21.0], index=1),
    ]


def _render(table) -> str:
    console = Console(record=True, width=220)
    console.print(table)
    return console.export_text()


def test_reference_is_torch_when_measured_else_first_or_requested():
    results = _results()
    assert report.choose_reference(results) == "torch"
    assert report.choose_reference(results[1::2]) == "onnxruntime"
    assert report.choose_reference(results, "onnxruntime") == "onnxruntime"
    with pytest.raises(ConfigError, match="tensorrt"):
        report.choose_reference(results, "tensorrt")


def test_speedups_compare_p50_with_the_reference_at_the_same_size():
    results = _results()
    ups = report.speedups(results, "torch")
    assert ups[0] == pytest.approx(1.0)
    assert ups[1] == pytest.approx(42.0 / 10.5)
    assert ups[3] == pytest.approx(165.0 / 20.5)


def test_json_document_has_stat_keys_environment_and_checks(tmp_path):
    results = _results()
    budgets = parse_budgets(
        {"budgets": [{"model": "lutfuse", "backend": "onnxruntime", "resolution": "64x48", "p95_ms": 1}]}
    )
    env = collect_environment(threads=2, device="cpu")
    doc = report.profile_document(
        results, env, Settings(warmup=1, iters=3, duration=None), inputs="synthetic", reference="torch",
        checks=evaluate(budgets, results), budget_file="b.yaml",
    )  # fmt: skip
    path = tmp_path / "out" / "prof.json"
    report.write_json(path, doc)
    loaded = json.loads(path.read_text())
    assert [p.name for p in path.parent.iterdir()] == ["prof.json"]  # no temp file left behind
    assert len(loaded["results"]) == 4
    for entry in loaded["results"]:
        assert STAT_KEYS <= set(entry)
        assert {"model", "backend", "resolution", "mode", "iterations", "peak_rss_mb", "device"} <= set(entry)
    first = loaded["results"][1]
    assert first["p50_ms"] == pytest.approx(10.5) and first["resolution"] == "64x48"
    assert first["width"] == 64 and first["height"] == 48 and first["iterations"] == 3
    assert first["speedup_vs_reference"] == pytest.approx(4.0)
    e = loaded["environment"]
    assert {"cpu", "threads", "python", "platform", "libraries", "git", "gpu"} <= set(e)
    assert e["threads"]["requested"] == 2 and e["libraries"]["numpy"]
    assert "torch" in e["libraries"] and "onnxruntime" in e["libraries"] and "tensorrt" in e["libraries"]
    assert loaded["budget"]["passed"] is False and loaded["budget"]["checks"][0]["status"] == "over"
    assert loaded["settings"]["iters"] == 3


def test_results_table_shows_stats_and_speedup_column():
    text = _render(report.results_table(_results(), "torch"))
    assert "x faster than torch" in text and "lutfuse/onnxruntime" in text
    assert "4.00x" in text and "64x48" in text and "128x96" in text
    single = _render(report.results_table(_results()[:1], "torch"))
    assert "x faster" not in single  # one backend: no ratio column


def test_checks_table_lists_failures_first():
    results = _results()
    budgets = parse_budgets(
        {
            "budgets": [
                {"model": "lutfuse", "backend": "onnxruntime", "resolution": "64x48", "p50_ms": 1000},
                {"model": "lutfuse", "backend": "onnxruntime", "resolution": "64x48", "p50_ms": 1},
            ]
        }
    )
    text = _render(report.checks_table(evaluate(budgets, results)))
    assert text.index("over") < text.index("held")


def test_plot_is_written_as_png_atomically(tmp_path):
    path = tmp_path / "prof.png"
    report.write_plot(path, _results())
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["prof.png"]


def test_one_size_plot_shows_its_range_and_whole_counts():
    """One measured size still shows min..p95 (an error bar), and histogram counts are integers."""
    m = fake_measurement(ms=[1.0, 1.2, 1.3, 1.5, 4.0])
    fig = report.plot_figure([m])
    ax_lat, ax_hist = fig.axes
    fig.canvas.draw()
    (segments,) = [c.get_segments() for c in ax_lat.collections if hasattr(c, "get_segments")]
    (low, high) = sorted(y for _, y in segments[0])
    assert low == pytest.approx(m.stats.min_ms) and high == pytest.approx(m.stats.p95_ms) and high > low
    ticks = [t for t in ax_hist.get_yticks() if ax_hist.get_ylim()[0] <= t <= ax_hist.get_ylim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_plot_of_constant_samples_still_works(tmp_path):
    path = tmp_path / "flat.png"
    report.write_plot(path, [fake_measurement(ms=2.0)])
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_twin_artifacts_are_told_apart_in_the_table():
    """Two graphs of one kind on one backend get their file name, or their path when names clash."""
    twins = [fake_measurement(backend="onnxruntime", artifact="gate/lut.onnx", index=0),
             fake_measurement(backend="onnxruntime", artifact="gate/lut-portable.onnx", index=1)]
    text = _render(report.results_table(twins, "torch"))
    assert "lutfuse/onnxruntime [lut.onnx]" in text and "[lut-portable.onnx]" in text
    clash = [fake_measurement(backend="onnxruntime", artifact="a/lut.onnx", index=0),
             fake_measurement(backend="onnxruntime", artifact="b/lut.onnx", index=1)]
    text = _render(report.results_table(clash, "torch"))
    assert "[a/lut.onnx]" in text and "[b/lut.onnx]" in text
    single = _render(report.results_table(twins[:1], "torch"))
    assert "[" not in single.split("lutfuse/onnxruntime")[1].split()[0]  # no suffix without a twin


def test_json_and_table_carry_the_load_of_each_round_and_thin_percentiles(tmp_path):
    busy = fake_measurement(backend="torch", ms=[40.0, 41.0, 90.0, 95.0], others=[0.0, 1.5])
    env = collect_environment(threads=2, device="cpu")
    doc = report.profile_document([busy], env, Settings(warmup=1, iters=4, duration=None), inputs="synthetic",
                                  reference="torch")
    entry = doc["results"][0]
    assert entry["contended_rounds"] == 1 and entry["other_cpus_mean"] == pytest.approx(0.75)
    assert [r["contended"] for r in entry["rounds"]] == [False, True]
    assert entry["underpowered_percentiles"] == ["p90_ms", "p95_ms", "p99_ms"]
    assert entry["peak_rss_scope"] == "process" and entry["samples"] == "all"
    assert doc["settings"]["contention_cpus"] == 0.25 and doc["settings"]["min_samples"]["p99_ms"] == 100
    assert "cpu_flags" in doc["environment"]
    text = _render(report.results_table([busy], "torch"))
    assert "busy CPUs" in text and "1/2" in text and "0.75" in text and "proc peak RSS MB" in text
    assert "*" in text
    notes = report.table_notes([busy])
    assert any(n.startswith("* percentile") for n in notes) and any(n.startswith("contended") for n in notes)
    quiet = busy.quiet_view()
    assert quiet.stats.p50_ms == pytest.approx(40.5)
    assert " q" in _render(report.results_table([quiet], "torch"))
    assert any(n.startswith("q:") for n in report.table_notes([quiet]))


def test_round_progress_prints_plain_lines_off_a_terminal():
    console = Console(record=True, force_terminal=False, width=100)
    with report.RoundProgress(console, every_s=0.0) as on_round:
        on_round("640x480", 1, 10)
        on_round("640x480", 2, 10)
    assert console.export_text().splitlines() == ["640x480: round 1/10", "640x480: round 2/10"]
    quiet = Console(record=True, force_terminal=False, width=100)
    with report.RoundProgress(quiet) as on_round:  # a short run: nothing extra in the log
        on_round("640x480", 1, 10)
    assert quiet.export_text() == ""
