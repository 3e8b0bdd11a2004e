"""``fuse`` through the real CLI: good folders, and every bad input of the issue's list.

Each bad input gets one clear line naming the file, the pair is skipped, the others are fused, the
exit status is 1, there is no traceback and no partial file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, pair_folders, run_cli, synthetic_pair  # noqa: F401
from PIL import Image


def _outputs(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


def test_folder_fuses_every_pair(tmp_path: Path, pair_folders: tuple[Path, Path], models: dict) -> None:  # noqa: F811
    ir, vi = pair_folders
    proc = run_cli("fuse", "--model", models["lutfuse"], "--ir", ir, "--vi", vi, "--out", tmp_path / "o", "--save-float")
    assert proc.returncode == 0, proc.stderr
    assert _outputs(tmp_path / "o") == [f"{i:05d}.{ext}" for i in range(3) for ext in ("npy", "png")]
    assert "3 fused, 0 failed" in proc.stdout and "ms per pair" in proc.stdout
    assert "\r" not in proc.stderr and "pair/s" not in proc.stderr  # no progress bar drawn into a pipe
    png = np.asarray(Image.open(tmp_path / "o" / "00000.png"))
    assert png.shape == (48, 64, 3) and png.dtype == np.uint8
    assert np.load(tmp_path / "o" / "00000.npy").shape == (48, 64, 3)


def test_mmdrfuse_writes_gray(tmp_path: Path, pair_folders: tuple[Path, Path], models: dict) -> None:  # noqa: F811
    ir, vi = pair_folders
    proc = run_cli("fuse", "--model", models["student"], "--ir", ir, "--vi", vi, "--out", tmp_path / "o",
                   "--save-float", "--json")
    assert proc.returncode == 0, proc.stderr
    png = np.asarray(Image.open(tmp_path / "o" / "00001.png"))
    raw = np.load(tmp_path / "o" / "00001.npy")
    assert png.ndim == 2 and raw.shape == (48, 64)
    assert png.min() == 0 and png.max() == 255  # default: per-image min-max stretch of tanh
    assert '"done": 3' in proc.stdout


def _bad_folders(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """Good pairs 00000..00002 plus one of each bad kind; returns what each error must name."""
    ir, vi = tmp_path / "ir", tmp_path / "vi"
    ir.mkdir()
    vi.mkdir()
    for i in range(3):
        a, b = synthetic_pair(seed=i)
        Image.fromarray(a).save(ir / f"{i:05d}.png")
        Image.fromarray(b).save(vi / f"{i:05d}.png")
    a, b = synthetic_pair()
    expect: dict[str, str] = {}
    # corrupt: random bytes with an image extension
    (ir / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage garbage")
    Image.fromarray(b).save(vi / "corrupt.png")
    expect["corrupt"] = str(ir / "corrupt.png")
    # truncated JPEG
    Image.fromarray(b).save(vi / "trunc.jpg", quality=90)
    data = (vi / "trunc.jpg").read_bytes()
    (vi / "trunc.jpg").write_bytes(data[: len(data) // 2])
    Image.fromarray(a).save(ir / "trunc.png")
    expect["truncated"] = str(vi / "trunc.jpg")
    # non-image file in a folder
    (ir / "notes.txt").write_text("not an image")
    (vi / "notes.txt").write_text("not an image")
    expect["non-image"] = "notes.txt"
    # missing partner
    Image.fromarray(a).save(ir / "lonely.png")
    expect["missing partner"] = str(ir / "lonely.png")
    # size mismatch
    Image.fromarray(a).save(ir / "size.png")
    Image.fromarray(synthetic_pair(40, 64)[1]).save(vi / "size.png")
    expect["size mismatch"] = "size"
    # smaller than 3x3
    Image.fromarray(a[:2, :2]).save(ir / "tiny.png")
    Image.fromarray(b[:2, :2]).save(vi / "tiny.png")
    expect["tiny"] = "smaller than 3x3"
    # 16-bit IR (radiometric camera) is refused by default
    Image.fromarray(a.astype(np.uint16) * 250).save(ir / "radiometric.png")
    Image.fromarray(b).save(vi / "radiometric.png")
    expect["16-bit"] = str(ir / "radiometric.png")
    return ir, vi, expect


def test_bad_inputs_are_reported_and_skipped(tmp_path: Path, models: dict) -> None:
    ir, vi, expect = _bad_folders(tmp_path)
    out = tmp_path / "o"
    proc = run_cli("fuse", "--model", models["lutfuse"], "--ir", ir, "--vi", vi, "--out", out, "--quiet")
    assert_one_line_error(proc, *expect.values())
    assert proc.returncode == 1
    assert _outputs(out) == ["00000.png", "00001.png", "00002.png"]  # good pairs fused, nothing partial
    assert "3 fused" in proc.stdout


def test_16bit_ir_can_be_converted(tmp_path: Path, models: dict) -> None:
    a, b = synthetic_pair()
    Image.fromarray(a.astype(np.uint16) * 200 + 1000).save(tmp_path / "ir.png")
    Image.fromarray(b).save(tmp_path / "vi.png")
    for mode in ("minmax", "percentile", "linear"):
        proc = run_cli("fuse", "--model", models["lutfuse"], "--ir", tmp_path / "ir.png", "--vi", tmp_path / "vi.png",
                       "--out", tmp_path / mode, "--ir16", mode)
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / mode / "ir.png").is_file()


@pytest.mark.parametrize("case", ["missing folder", "empty folder", "file and folder"])
def test_fatal_folder_problems(tmp_path: Path, models: dict, case: str) -> None:
    (tmp_path / "empty_ir").mkdir()
    (tmp_path / "empty_vi").mkdir()
    a, _ = synthetic_pair()
    Image.fromarray(a).save(tmp_path / "one.png")
    ir, vi, needle = {
        "missing folder": (tmp_path / "nope", tmp_path / "empty_vi", "nope"),
        "empty folder": (tmp_path / "empty_ir", tmp_path / "empty_vi", "empty"),
        "file and folder": (tmp_path / "one.png", tmp_path / "empty_vi", "both be files or both be folders"),
    }[case]
    proc = run_cli("fuse", "--model", models["lutfuse"], "--ir", ir, "--vi", vi, "--out", tmp_path / "o")
    assert_one_line_error(proc, needle)
    assert proc.returncode == 1


def test_teacher_refuses_odd_sizes_per_pair(tmp_path: Path, models: dict) -> None:
    a, b = synthetic_pair(33, 64)
    Image.fromarray(a).save(tmp_path / "ir.png")
    Image.fromarray(b).save(tmp_path / "vi.png")
    proc = run_cli("fuse", "--model", models["teacher"], "--ir", tmp_path / "ir.png", "--vi", tmp_path / "vi.png",
                   "--out", tmp_path / "o")
    assert_one_line_error(proc, "even height and width")
    assert _outputs(tmp_path / "o") == []


def test_gray_visible_is_replicated_and_rgb_ir_converted(tmp_path: Path, models: dict) -> None:
    a, b = synthetic_pair()
    Image.fromarray(np.stack([a] * 3, -1)).save(tmp_path / "ir.png")  # IR stored as RGB (TNO, LLVIP)
    Image.fromarray(b[..., 0]).save(tmp_path / "vi.png")  # gray visible
    proc = run_cli("fuse", "--model", models["lutfuse"], "--ir", tmp_path / "ir.png", "--vi", tmp_path / "vi.png",
                   "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    assert np.asarray(Image.open(tmp_path / "o" / "ir.png")).shape == (48, 64, 3)
