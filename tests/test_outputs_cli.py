"""Outputs through the real CLI: no command writes over its inputs, and every OS error on an output
(a file or folder in the way, no permission, a full disk) is one ``error:`` line naming the path,
a non-zero exit and nothing partial. Full disks and read-only folders are injected (CI runs as any
user, on any file system); a real tmpfs gives the same lines (docs/usage.md)."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, pair_folders, run_cli, synthetic_pair  # noqa: F401
from PIL import Image

from lutfuse_deploy.io.checkpoints import save_checkpoint
from lutfuse_deploy.models.lut import analytic_lutfuse


@pytest.fixture(scope="module")
def lut(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(analytic_lutfuse(), tmp_path_factory.mktemp("m") / "lut.safetensors")


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _in_process(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    """Run ``main`` here, so monkeypatched failures reach it; returns (exit status, stderr)."""
    from lutfuse_deploy.cli import main

    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return int(info.value.code or 0), err


@pytest.mark.parametrize("case", ["ir-folder", "link-to-vi", "one-pair-beside-its-input"])
def test_fuse_never_writes_over_an_input(tmp_path: Path, pair_folders: tuple[Path, Path], lut: Path,  # noqa: F811
                                         case: str) -> None:
    ir, vi = pair_folders
    Image.open(vi / "00000.jpg").save(vi / "00000.png")  # a visible PNG a fused PNG would replace
    (vi / "00000.jpg").unlink()
    before = {ir: _digest(ir), vi: _digest(vi)}
    if case == "ir-folder":
        args, names = ["--ir", ir, "--vi", vi, "--out", ir], [str(ir)]
    elif case == "link-to-vi":
        (tmp_path / "link").symlink_to(vi)
        args, names = ["--ir", ir, "--vi", vi, "--out", tmp_path / "link"], [str(tmp_path / "link"), str(vi)]
    else:
        args, names = ["--ir", ir / "00000.png", "--vi", vi / "00000.png", "--out", vi], [str(vi / "00000.png")]
    proc = run_cli("fuse", "--model", lut, *args)
    assert_one_line_error(proc, "refusing to write over an input", *names)
    assert {ir: _digest(ir), vi: _digest(vi)} == before


@pytest.mark.parametrize("case", ["fuse-out-file", "fuse-out-below-file", "export-out-folder",
                                  "demo-out-file", "import-out-below-file", "evaluate-json-input"])
def test_outputs_in_the_way_are_refused_before_any_work(tmp_path: Path, pair_folders: tuple[Path, Path],  # noqa: F811
                                                        lut: Path, case: str) -> None:
    ir, vi = pair_folders
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    (tmp_path / "d.onnx").mkdir()
    fused = tmp_path / "fused"
    fused.mkdir()
    for i in range(3):
        Image.fromarray(synthetic_pair(seed=i)[0]).save(fused / f"{i:05d}.png")
    args, needle = {
        "fuse-out-file": (["fuse", "--model", lut, "--ir", ir, "--vi", vi, "--out", blocker], str(blocker)),
        "fuse-out-below-file": (["fuse", "--model", lut, "--ir", ir, "--vi", vi, "--out", blocker / "sub"],
                                "is a file"),
        "export-out-folder": (["export", "--model", lut, "-o", tmp_path / "d.onnx"], "is a folder"),
        "demo-out-file": (["demo", "--out", blocker], "is not a folder"),
        "import-out-below-file": (["import-official", "mmdrfuse", "--student", lut, "-o",
                                   blocker / "m.safetensors"], "is a file"),
        "evaluate-json-input": (["evaluate", "--ir", ir, "--vi", vi, "--fused", fused, "--json",
                                 fused / "00001.png"], "refusing to write over an input"),
    }[case]
    before = _digest(tmp_path / "fused")
    proc = run_cli(*args)
    assert_one_line_error(proc, needle)
    assert blocker.read_text() == "not a folder" and _digest(fused) == before
    assert not list((tmp_path / "d.onnx").iterdir())


def _official_student(path: Path) -> None:
    """A file shaped like the released student.model (a state_dict), for import-official."""
    import torch

    from lutfuse_deploy.models import create_model

    torch.save(create_model("mmdrfuse-student").state_dict(), path)


def _fail_with(exc: OSError):  # noqa: ANN202
    def fail(*_a: object, **_k: object) -> None:
        raise exc

    return fail


@pytest.mark.parametrize("case", ["read-only-folder", "read-only-import", "disk-full-png", "disk-full-checkpoint",
                                  "disk-full-json"])
def test_os_errors_on_outputs_are_one_line(tmp_path: Path, pair_folders: tuple[Path, Path], lut: Path,  # noqa: F811
                                           capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                           case: str) -> None:
    import tempfile

    import safetensors.torch
    from PIL import Image as PILImage

    ir, vi = pair_folders
    out = tmp_path / "out"
    enospc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if case == "read-only-folder":
        monkeypatch.setattr(tempfile, "mkstemp", _fail_with(PermissionError(errno.EACCES, "Permission denied")))
        # --backend torch: the default backend's first-use export would meet the failing mkstemp first
        args = ["fuse", "--model", lut, "--ir", ir, "--vi", vi, "--out", out, "--backend", "torch"]
        needle = "Permission denied"
    elif case == "read-only-import":
        _official_student(tmp_path / "student.model")
        monkeypatch.setattr(tempfile, "mkstemp", _fail_with(PermissionError(errno.EACCES, "Permission denied")))
        args = ["import-official", "mmdrfuse", "--student", tmp_path / "student.model", "-o", out / "m.safetensors"]
        needle = "Permission denied"
    elif case == "disk-full-png":
        monkeypatch.setattr(PILImage.Image, "save", _fail_with(enospc))
        args, needle = ["fuse", "--model", lut, "--ir", ir, "--vi", vi, "--out", out], "No space left on device"
    elif case == "disk-full-checkpoint":
        _official_student(tmp_path / "student.model")
        # safetensors reports ENOSPC as its own error type, with the OS text inside
        monkeypatch.setattr(safetensors.torch, "save_file",
                            _fail_with(RuntimeError("No space left on device (os error 28)")))  # type: ignore[arg-type]
        args = ["import-official", "mmdrfuse", "--student", tmp_path / "student.model", "-o", out / "m.safetensors"]
        needle = "No space left on device"
    else:
        monkeypatch.setattr(Path, "write_text", _fail_with(enospc))
        fused = tmp_path / "fused"
        fused.mkdir()
        for i in range(3):
            Image.fromarray(synthetic_pair(seed=i)[0]).save(fused / f"{i:05d}.png")
        out.mkdir()
        args, needle = ["evaluate", "--ir", ir, "--vi", vi, "--fused", fused, "--json", out / "m.json"], "No space"
    code, err = _in_process(capsys, *args)
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code != 0 and len(errors) == 1, err
    assert needle in errors[0] and str(out) in errors[0], err
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def test_fuse_out_png_for_one_pair_writes_that_file(tmp_path: Path, pair_folders: tuple[Path, Path],  # noqa: F811
                                                    lut: Path) -> None:
    ir, vi = pair_folders
    proc = run_cli("fuse", "--model", lut, "--ir", ir / "00000.png", "--vi", vi / "00000.jpg",
                   "--out", tmp_path / "fused.png", "--save-float")
    assert proc.returncode == 0, proc.stderr
    assert np.asarray(Image.open(tmp_path / "fused.png")).shape == (48, 64, 3)
    assert np.load(tmp_path / "fused.npy").shape == (48, 64, 3)
    proc = run_cli("fuse", "--model", lut, "--ir", ir, "--vi", vi, "--out", tmp_path / "many.png")
    assert_one_line_error(proc, "many.png", "give a folder")
    assert not (tmp_path / "many.png").exists()


def test_checkpoints_get_normal_file_modes(tmp_path: Path) -> None:
    _official_student(tmp_path / "student.model")
    proc = run_cli("import-official", "mmdrfuse", "--student", tmp_path / "student.model",
                   "-o", tmp_path / "s.safetensors")
    assert proc.returncode == 0, proc.stderr
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "s.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask
