"""The upstream lane: where the upstream LUT-Fuse code is looked for, what happens when it is absent
(skipped with the reason, never replaced), and budgets that refer to it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import REF, assert_one_line_error, run_cli

from lutfuse_deploy.profile.gate import all_held, evaluate, parse_budgets, unplannable
from lutfuse_deploy.profile.timing import Measurement, Resolution, summarize
from lutfuse_deploy.runtime.upstream import UpstreamRunner, upstream_problem

VGA = Resolution(640, 480)


def _measurement(backend: str, p50: float, artifact: str = "x") -> Measurement:
    samples = np.full(5, p50)
    return Measurement(runner_index=0, kind="lutfuse", backend=backend, artifact=artifact, device="cpu", mode="e2e",
                       resolution=VGA, samples_ms=samples, stats=summarize(samples), warmup=0, peak_rss_mb=0.0)


def test_problem_names_the_missing_file(tmp_path: Path) -> None:
    assert upstream_problem(tmp_path) == (
        f"upstream LUT-Fuse script not found at {tmp_path / 'lutfuse_official_code' / 'scripts' / 'calculate.py'}")
    with pytest.raises(Exception, match="script not found"):
        UpstreamRunner(tmp_path)


def test_default_location_is_the_reference_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LUTFUSE_REFERENCE", str(tmp_path / "ref"))
    assert str(tmp_path / "ref") in str(upstream_problem())


@pytest.mark.skipif(upstream_problem() is not None, reason=str(upstream_problem()))
def test_the_upstream_runner_follows_the_runner_contract() -> None:
    runner = UpstreamRunner(REF)
    rng = np.random.default_rng(0)
    ir = rng.integers(0, 256, (2, 1, 24, 32)).astype(np.float32)
    vi = rng.integers(0, 256, (2, 3, 24, 32)).astype(np.float32)
    out = runner.infer(ir, vi)
    assert out.shape == (2, 3, 24, 32) and out.dtype == np.float32
    assert (runner.kind, runner.backend) == ("lutfuse", "upstream")
    import sys

    assert "data.simple_dataset" not in sys.modules and "transforms" not in sys.modules  # stand-ins removed


def test_ratio_budgets_against_upstream_hold_fail_or_skip() -> None:
    budgets = parse_budgets({"budgets": [
        {"model": "lutfuse", "backend": "torch", "resolution": "640x480", "ratio_to": {"backend": "upstream", "max": 1.0}},
        {"model": "lutfuse", "backend": "onnxruntime", "resolution": "640x480",
         "ratio_to": {"backend": "torch", "max": 0.5}},
    ]})
    results = [_measurement("torch", 90.0), _measurement("upstream", 100.0), _measurement("onnxruntime", 40.0)]
    checks = evaluate(budgets, results)
    assert [c.status for c in checks] == ["held", "held"] and checks[0].measured == pytest.approx(0.9)
    slow = [_measurement("torch", 120.0), *results[1:]]
    assert [c.status for c in evaluate(budgets, slow)] == ["over", "held"]
    skipped = evaluate(budgets, [results[0], results[2]], {"upstream": "upstream lane skipped: not found"})
    assert [c.status for c in skipped] == ["skipped", "held"] and skipped[0].note.endswith("not found")
    assert all_held(skipped) and not skipped[0].failed
    assert not all_held(skipped[:1])  # nothing measured is not a pass
    # not asked for: a gap that says how to ask, before anything is timed
    planned = {("lutfuse", b, VGA) for b in ("torch", "onnxruntime")}
    assert unplannable(budgets, planned) == ["budgets[0] needs lutfuse/upstream at 640x480 (add --upstream)"]
    assert unplannable(budgets, planned, {"upstream": "absent"}) == []


def test_profile_refuses_an_upstream_dir_without_the_code(tmp_path: Path) -> None:
    proc = run_cli("profile", "--model", "lutfuse_deploy/pretrained/lutfuse.safetensors", "--upstream-dir", tmp_path,
                   "--resolutions", "32x24", "--iters", "1", cwd=Path(__file__).resolve().parents[1])
    assert_one_line_error(proc, "--upstream-dir", "script not found")


def test_profile_refuses_upstream_on_cuda() -> None:
    proc = run_cli("profile", "--model", "lutfuse_deploy/pretrained/lutfuse.safetensors", "--upstream",
                   "--device", "cuda", "--resolutions", "32x24", cwd=Path(__file__).resolve().parents[1])
    assert_one_line_error(proc, "--upstream", "CPU only")


def test_profile_without_the_upstream_code_skips_its_lane_with_the_reason(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "LUTFUSE_REFERENCE": str(tmp_path / "absent")}
    proc = subprocess.run([sys.executable, "-m", "lutfuse_deploy", "profile", "--model",
                           "lutfuse_deploy/pretrained/mini.safetensors", "--upstream", "--resolutions", "32x24",
                           "--iters", "2", "--warmup", "0", "--threads", "1"], capture_output=True, text=True,
                          env=env, cwd=Path(__file__).resolve().parents[1], timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "upstream lane skipped: upstream LUT-Fuse script not found" in proc.stderr
    assert "/upstream" not in proc.stdout  # no row pretends to be the upstream code
