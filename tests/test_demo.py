"""``demo``: exports the shipped LUT-Fuse, times the graph beside PyTorch in one run, writes a
side-by-side image; no GPU, no download."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import assert_one_line_error, run_cli
from PIL import Image


def test_demo_times_the_exported_graph_beside_pytorch_and_writes_one_image(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = run_cli("demo", "--out", out, "--size", "96x64", "--repeats", "3", "--threads", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    lat = doc["latency"]
    assert lat["threads"] == 1 and lat["torch"]["n"] == lat["onnxruntime"]["n"] == 3
    assert lat["ratio"] == lat["torch"]["median_ms"] / lat["onnxruntime"]["median_ms"]
    assert lat["max_lsb_vs_torch"] <= 1  # the graph fuses as PyTorch does
    assert lat["rounds"] == 3 and 0 <= lat["contended_rounds"] <= 3
    sidecar = json.loads((out / "lutfuse.json").read_text())
    assert sidecar["kind"] == "lutfuse" and sidecar["dynamic"] is True
    assert sidecar["source"]["path"].endswith("lutfuse.safetensors")
    image = np.asarray(Image.open(out / "side_by_side.png"))
    assert image.ndim == 3 and image.shape[2] == 3
    assert image.shape[1] == 3 * 96 + 4 * 8 and image.shape[0] > 64  # three panels, gaps, a label bar
    fused = np.asarray(Image.open(out / "fused.png"))
    assert fused.shape == (64, 96, 3)
    ir = np.asarray(Image.open(out / "ir.png"))
    panel = image[-64 - 8 : -8, 8 : 8 + 96, 0]  # the IR panel, bottom-left, one gap in
    assert np.array_equal(panel, ir)
    assert doc["metrics"]["LUT-Fuse"]["EN"] > 0
    from lutfuse_deploy.runtime.upstream import upstream_problem

    if upstream_problem() is None:  # the upstream code timed in the same rounds, ratios from its median
        up = lat["upstream"]["median_ms"]
        assert lat["upstream"]["n"] == 3
        assert lat["ratio_to_upstream"] == {b: up / lat[b]["median_ms"] for b in ("torch", "onnxruntime")}
    else:
        assert "ratio_to_upstream" not in lat and any("upstream lane skipped" in n for n in doc["notes"])


def test_demo_without_the_upstream_code_says_so_and_times_the_rest(tmp_path: Path) -> None:
    env = {**os.environ, "LUTFUSE_REFERENCE": str(tmp_path / "absent")}
    proc = subprocess.run([sys.executable, "-m", "lutfuse_deploy", "demo", "--out", str(tmp_path / "d"), "--size",
                           "64x64", "--repeats", "1", "--threads", "1"], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "upstream lane skipped: upstream LUT-Fuse script not found" in proc.stdout
    assert "upstream code's speed" not in proc.stdout and "x PyTorch eager's speed" in proc.stdout


def test_demo_refuses_a_bad_size(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("demo", "--out", tmp_path / "d", "--size", "12x8"), "--size")
    assert not (tmp_path / "d").exists()
