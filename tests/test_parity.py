"""Imported official checkpoints reproduce every array of the official code in shared/reference/outputs.

Bound: 1e-4 max abs (FP32), including the unclamped LUT-Fuse RGB; LUT-Fuse's PyTorch path follows the
official code op for op and is held to 7e-7. One pair goes through the real ``fuse --backend torch
--save-float`` command (the default backend runs the exported graph, held to the parity rule instead),
the rest through the same runner in-process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, REF, needs_reference, reference_entries, run_cli

from lutfuse_deploy.fuse.convert import prepare
from lutfuse_deploy.io.images import ImagePair, load_pair
from lutfuse_deploy.runtime import create_runner

BOUND = 1e-4
LUTFUSE_BOUND = 7e-7  # the PyTorch path does the official code's float32 operations in its order
CASES = [(e, kind) for e in reference_entries() for kind in ("lutfuse", "mmdrfuse-student", "mmdrfuse-teacher")
         if e.get(kind.replace("-", "_").replace("lutfuse", "lutfuse_rgb"))]


def _ref_key(kind: str) -> str:
    return {"lutfuse": "lutfuse_rgb", "mmdrfuse-student": "mmdrfuse_student", "mmdrfuse-teacher": "mmdrfuse_teacher"}[kind]


@needs_reference
@pytest.mark.parametrize("entry,kind", CASES, ids=[f"{Path(e['ir']).stem}-{k}" for e, k in CASES])
def test_torch_matches_official_outputs(entry: dict, kind: str, official: dict[str, Path]) -> None:
    ref = np.load(REF.parent / entry[_ref_key(kind)])
    runner = create_runner(official[kind], "torch")
    pair = ImagePair("x", REF.parent / entry["ir"], REF.parent / entry["vi"])
    ir, vi = load_pair(pair, vi_mode="RGB" if kind == "lutfuse" else "L")
    out = runner.infer(*prepare(ir, vi, "float"))[0]
    out = out.transpose(1, 2, 0) if kind == "lutfuse" else out[0]
    assert out.shape == ref.shape
    assert float(np.abs(out - ref).max()) <= (LUTFUSE_BOUND if kind == "lutfuse" else BOUND)
    if kind == "lutfuse":  # the reference is unclamped: so must we be
        assert (ref.min() < 0 or ref.max() > 1) == (out.min() < 0 or out.max() > 1)


@needs_reference
def test_fuse_cli_save_float_matches_reference(tmp_path: Path, official: dict[str, Path]) -> None:
    entry = next(e for e in reference_entries() if "tno" in e["ir"])
    proc = run_cli("fuse", "--model", official["lutfuse"], "--ir", REF.parent / entry["ir"], "--backend", "torch",
                   "--vi", REF.parent / entry["vi"], "--out", tmp_path, "--save-float", "--quiet")
    assert proc.returncode == 0, proc.stderr
    name = Path(entry["ir"]).stem
    out = np.load(tmp_path / f"{name}.npy")
    assert np.abs(out - np.load(REF.parent / entry["lutfuse_rgb"])).max() <= BOUND
    png = tmp_path / f"{name}.png"
    from PIL import Image

    img = np.asarray(Image.open(png))
    assert img.shape == out.shape and img.dtype == np.uint8
    assert np.abs(img.astype(float) - np.clip(out, 0, 1) * 255).max() <= 0.5 + 1e-3


@needs_reference
def test_import_to_folder_then_model_folder_loads(tmp_path: Path) -> None:
    mm = REF / "mmdrfuse_official"
    proc = run_cli("import-official", "mmdrfuse", "--student", mm / "student.model", "--teacher",
                   mm / "teacher.model", "-o", tmp_path / "mm")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "mm").iterdir()) == [
        "mmdrfuse-student.safetensors", "mmdrfuse-teacher.safetensors"]
    entry = reference_entries()[0]
    proc = run_cli("fuse", "--model", tmp_path / "mm", "--ir", DATA.parent / entry["ir"], "--vi",
                   DATA.parent / entry["vi"], "--out", tmp_path / "o", "--save-float", "--quiet")
    assert proc.returncode == 0, proc.stderr
    out = np.load(tmp_path / "o" / f"{Path(entry['ir']).stem}.npy")
    assert np.abs(out - np.load(REF.parent / entry["mmdrfuse_student"])).max() <= BOUND


def _upstream_runner():  # noqa: ANN202 - the runner type is imported lazily
    from lutfuse_deploy.runtime.upstream import UpstreamRunner, upstream_problem

    problem = upstream_problem()
    if problem:
        pytest.skip(problem)
    return UpstreamRunner()


@needs_reference
@pytest.mark.parametrize("size", [(37, 59), (64, 96)])
def test_torch_path_matches_the_upstream_code_in_process(size: tuple[int, int], official: dict[str, Path]) -> None:
    """The upstream function itself, on random 8-bit input: same values to 7e-7 (measured: same bits)."""
    upstream = _upstream_runner()
    rng = np.random.default_rng(sum(size))
    ir = rng.integers(0, 256, (1, 1, *size)).astype(np.float32)
    vi = rng.integers(0, 256, (1, 3, *size)).astype(np.float32)
    want = upstream.infer(ir, vi)
    got = create_runner(official["lutfuse"], "torch").infer(ir, vi)
    assert got.shape == want.shape
    assert float(np.abs(got - want).max()) <= LUTFUSE_BOUND
