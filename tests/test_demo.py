"""``demo``: exports the shipped LUT-Fuse, times the graph beside PyTorch in one run, writes a
side-by-side image; no GPU, no download."""

from __future__ import annotations

import json
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


def test_demo_refuses_a_bad_size(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("demo", "--out", tmp_path / "d", "--size", "12x8"), "--size")
    assert not (tmp_path / "d").exists()
