"""Shared fixtures: the shared data and reference folders, and the official checkpoints imported once."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lutfuse_deploy.paths import data_root, reference_root

DATA = data_root()
REF = reference_root()
# `fuse --backend auto` (the default) caches exported graphs in the user's cache folder: never the
# real one in tests. One folder for the session, so each checkpoint is exported once.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="lutfuse-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], True)
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA} (set LUTFUSE_DATA)")
needs_reference = pytest.mark.skipif(
    not (REF / "outputs" / "index.json").is_file(), reason=f"official reference files not found at {REF}"
)


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point in a subprocess (what a user sees, tracebacks included)."""
    return subprocess.run([sys.executable, "-m", "lutfuse_deploy", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert errors, proc.stderr
    for needle in needles:
        assert any(needle in ln for ln in errors), (needle, proc.stderr)


def reference_entries() -> list[dict]:
    if not (REF / "outputs" / "index.json").is_file():
        return []
    return json.loads((REF / "outputs" / "index.json").read_text())


@pytest.fixture(scope="session")
def official(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The papers' released checkpoints converted to the project's format."""
    if not (REF / "lutfuse_official").is_dir():
        pytest.skip(f"official checkpoints not found at {REF}")
    from lutfuse_deploy.io.official import import_lutfuse, import_mmdrfuse

    out = tmp_path_factory.mktemp("official")
    lut = REF / "lutfuse_official"
    mm = REF / "mmdrfuse_official"
    (lutfuse,) = import_lutfuse(lut / "fine_tuned_lut.npy", lut / "generator_context.pth", out / "lut.safetensors")
    student, teacher = import_mmdrfuse(mm / "student.model", mm / "teacher.model", out / "mm")
    return {"lutfuse": lutfuse, "mmdrfuse-student": student, "mmdrfuse-teacher": teacher}


def synthetic_pair(h: int = 48, w: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small random IR (gray) / visible (RGB) pair as uint8 arrays."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w), dtype=np.uint8), rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small untrained checkpoints of each model kind (fast to load, any output is fine for the CLI)."""
    from lutfuse_deploy.io.checkpoints import save_checkpoint
    from lutfuse_deploy.models import create_model
    from lutfuse_deploy.models.lut import analytic_lutfuse

    d = tmp_path_factory.mktemp("models")
    return {"lutfuse": save_checkpoint(analytic_lutfuse(), d / "lut.safetensors"),
            "student": save_checkpoint(create_model("mmdrfuse-student"), d / "mini.safetensors"),
            "teacher": save_checkpoint(create_model("mmdrfuse-teacher"), d / "teacher.safetensors")}


@pytest.fixture()
def pair_folders(tmp_path: Path) -> tuple[Path, Path]:
    """Three good synthetic pairs (ir as PNG, vi as JPEG: extensions differ on purpose)."""
    ir_dir, vi_dir = tmp_path / "ir", tmp_path / "vi"
    ir_dir.mkdir()
    vi_dir.mkdir()
    for i in range(3):
        ir, vi = synthetic_pair(seed=i)
        Image.fromarray(ir).save(ir_dir / f"{i:05d}.png")
        Image.fromarray(vi).save(vi_dir / f"{i:05d}.jpg", quality=95)
    return ir_dir, vi_dir


@pytest.fixture(scope="session")
def shipped_lutfuse_onnx(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shipped LUT-Fuse exported once through the CLI (any size) with a Triton model repository.

    LUTFUSE_DATA points at an empty folder so the export's parity check runs on synthetic inputs only.
    """
    import os

    from lutfuse_deploy.paths import pretrained_dir

    out = tmp_path_factory.mktemp("shipped_onnx")
    env = {**os.environ, "LUTFUSE_DATA": str(out / "no-data")}
    proc = subprocess.run([sys.executable, "-m", "lutfuse_deploy", "export", "--model",
                           str(pretrained_dir() / "lutfuse.safetensors"), "-o", str(out / "lut.onnx"),
                           "--triton", str(out / "repo")], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return {"onnx": out / "lut.onnx", "repo": out / "repo"}
