"""``compare``: an existing graph judged against a checkpoint on pairs, with export's parity rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lutfuse_deploy.cli import main
from lutfuse_deploy.io.checkpoints import save_checkpoint
from lutfuse_deploy.models import create_model


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two students with different weights, and a graph exported from the first."""
    out = tmp_path_factory.mktemp("student")
    paths = {}
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths[f"ckpt{seed}"] = save_checkpoint(create_model("mmdrfuse-student").eval(), out / f"s{seed}.safetensors")
    env = {**os.environ, "LUTFUSE_DATA": str(out / "no-data")}
    proc = subprocess.run([sys.executable, "-m", "lutfuse_deploy", "export", "--model", str(paths["ckpt0"]), "-o",
                           str(out / "s.onnx")], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    paths["onnx"] = out / "s.onnx"
    return paths


def run(argv: list[str | Path], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def test_the_graph_equals_its_checkpoint_and_not_another(
    student: dict[str, Path], pair_folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ir, vi = pair_folders
    base = ["compare", "--onnx", student["onnx"], "--ir", ir, "--vi", vi, "--threads", "1"]
    code, out, err = run([*base, "--model", student["ckpt0"], "--json"], capsys)
    doc = json.loads(out)
    assert code == 0 and doc["verdict"] == "PASS" and len(doc["pairs"]) == 3, err
    assert all(r["max_abs"] <= r["bound"] and r["max_lsb"] <= 1 for r in doc["pairs"])
    code, out, err = run([*base, "--model", student["ckpt1"]], capsys)
    assert code == 1 and out.rstrip().splitlines()[-1].startswith("FAIL: 0/3 pairs within the parity rule")
    assert "note: the graph was exported from other weights" in err


def test_what_cannot_be_compared_is_one_error_line(
    student: dict[str, Path], pair_folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ir, vi = pair_folders
    torch.manual_seed(0)
    lut = save_checkpoint(create_model("lutfuse").eval(), tmp_path / "lut.safetensors")
    code, _, err = run(["compare", "--onnx", student["onnx"], "--model", lut, "--ir", ir, "--vi", vi], capsys)
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("error: ") and "is a mmdrfuse-student graph but" in err and "holds a lutfuse model" in err
    code, _, err = run(["compare", "--onnx", tmp_path / "none.onnx", "--model", lut, "--ir", ir, "--vi", vi], capsys)
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: ")
