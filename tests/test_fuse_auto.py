"""``fuse --backend auto`` (the default): exported once, verified, cached by checkpoint and options;
PyTorch only where ONNX Runtime is missing, and said so; the backend that ran is named.

Every test points ``XDG_CACHE_HOME`` at its own folder; LUTFUSE_DATA at an empty one, so the
export's parity check runs on its synthetic inputs only (the real pairs are covered by test_export_*).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import pair_folders, run_cli  # noqa: F401
from PIL import Image

from lutfuse_deploy.io.checkpoints import save_checkpoint
from lutfuse_deploy.models.lut import analytic_lutfuse


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("LUTFUSE_DATA", str(tmp_path / "no-data"))
    return tmp_path / "xdg" / "lutfuse-deploy" / "onnx"


@pytest.fixture(scope="module")
def lut(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(analytic_lutfuse(), tmp_path_factory.mktemp("auto") / "lut.safetensors")


def _fuse(model: Path, ir: Path, vi: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("fuse", "--model", model, "--ir", ir, "--vi", vi, "--out", out, "--quiet", *extra)


def test_auto_exports_once_caches_and_names_onnxruntime(
    tmp_path: Path, cache: Path, lut: Path, pair_folders: tuple[Path, Path]  # noqa: F811
) -> None:
    ir, vi = pair_folders
    first = _fuse(lut, ir, vi, tmp_path / "a", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["backend"] == "onnxruntime"
    graphs = sorted(cache.glob("*.onnx"))
    assert len(graphs) == 1 and graphs[0].with_suffix(".json").is_file()
    assert json.loads(graphs[0].with_suffix(".json").read_text())["parity"]["inputs"]  # verified when made
    stamp = graphs[0].stat().st_mtime_ns

    again = run_cli("fuse", "--model", lut, "--ir", ir, "--vi", vi, "--out", tmp_path / "b")
    assert again.returncode == 0, again.stderr
    assert "on onnxruntime ->" in again.stdout
    assert "exporting" not in again.stderr  # the cached graph, not a new export
    assert sorted(cache.glob("*.onnx")) == graphs and graphs[0].stat().st_mtime_ns == stamp

    torch_run = _fuse(lut, ir, vi, tmp_path / "t", "--backend", "torch")
    assert torch_run.returncode == 0 and "on torch ->" in torch_run.stdout, torch_run.stderr
    for name in ("00000", "00001", "00002"):  # the parity rule's 8-bit half: within 1 LSB of PyTorch
        a = np.asarray(Image.open(tmp_path / "b" / f"{name}.png")).astype(int)
        t = np.asarray(Image.open(tmp_path / "t" / f"{name}.png")).astype(int)
        assert np.abs(a - t).max() <= 1


def test_a_changed_checkpoint_is_exported_again(
    tmp_path: Path, cache: Path, pair_folders: tuple[Path, Path]  # noqa: F811
) -> None:
    ir, vi = pair_folders
    for seed in (1, 2):  # same architecture, other context weights: another sha256, another graph
        model = save_checkpoint(analytic_lutfuse(seed=seed), tmp_path / f"lut{seed}.safetensors")
        proc = _fuse(model, ir, vi, tmp_path / f"o{seed}")
        assert proc.returncode == 0, proc.stderr
    assert len(list(cache.glob("*.onnx"))) == 2


def test_cache_key_covers_checkpoint_bytes_and_export_options(tmp_path: Path, lut: Path) -> None:
    from lutfuse_deploy.runtime.auto import cache_key, export_options

    options = export_options()
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(lut.read_bytes())
    assert cache_key(copy, options) == cache_key(lut, options)
    assert cache_key(lut, {**options, "opset": 18}) != cache_key(lut, options)
    copy.write_bytes(lut.read_bytes() + b" ")
    assert cache_key(copy, options) != cache_key(lut, options)


def test_without_onnxruntime_auto_runs_torch_and_says_so(
    tmp_path: Path, cache: Path, lut: Path, pair_folders: tuple[Path, Path]  # noqa: F811
) -> None:
    ir, vi = pair_folders
    hide = ("import runpy, sys; sys.modules['onnxruntime'] = None; "
            "sys.argv = ['lutfuse-deploy', *sys.argv[1:]]; runpy.run_module('lutfuse_deploy', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", hide, "fuse", "--model", str(lut), "--ir", str(ir), "--vi", str(vi),
                           "--out", str(tmp_path / "o"), "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["backend"] == "torch"
    assert "note: auto: onnxruntime is not installed" in proc.stderr
    assert not cache.exists()


def test_an_unwritable_cache_exports_for_the_run_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lut: Path, pair_folders: tuple[Path, Path]  # noqa: F811
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.setenv("LUTFUSE_DATA", str(tmp_path / "no-data"))
    ir, vi = pair_folders
    proc = run_cli("fuse", "--model", lut, "--ir", ir, "--vi", vi, "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    assert "on onnxruntime ->" in proc.stdout
    assert "cannot write the cache" in proc.stderr and "Traceback" not in proc.stderr
    assert blocker.read_text() == "x"
