"""Inputs a new user meets in the first hour: swapped import files, camera JPEGs with an EXIF
orientation, recipes whose validation cannot be scored, early refusals in ``train``, ``info`` on a
folder, portable provenance, ``profile`` on a folder or on the wrong file type, narrow terminals."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, run_cli, synthetic_pair
from PIL import Image

from lutfuse_deploy.errors import ConfigError, InputError
from lutfuse_deploy.io.checkpoints import read_metadata, save_checkpoint
from lutfuse_deploy.metrics.fusion import VIF_MIN_SIDE
from lutfuse_deploy.models import create_model
from lutfuse_deploy.models.lut import analytic_lutfuse
from lutfuse_deploy.paths import REPO_ROOT, data_root, pretrained_dir
from lutfuse_deploy.train.config import load_recipe, recipe_from_dict
from lutfuse_deploy.train.data import validation_pairs


def test_swapped_import_files_are_named(tmp_path: Path) -> None:
    np.save(tmp_path / "lut.npy", np.zeros((16, 16, 16, 16, 1), np.float32))
    torch.save(create_model("mmdrfuse-student").state_dict(), tmp_path / "ctx.pth")
    proc = run_cli("import-official", "lutfuse", "--lut", tmp_path / "ctx.pth", "--context", tmp_path / "lut.npy",
                   "-o", tmp_path / "o.safetensors")
    assert_one_line_error(proc, f"{tmp_path / 'ctx.pth'}: holds a zip archive", "--lut takes the .npy table")
    proc = run_cli("import-official", "lutfuse", "--lut", tmp_path / "lut.npy", "--context", tmp_path / "lut.npy",
                   "-o", tmp_path / "o.safetensors")
    assert_one_line_error(proc, f"{tmp_path / 'lut.npy'}: holds a NumPy .npy array", "--context")
    assert not (tmp_path / "o.safetensors").exists()


def test_exif_orientation_is_applied_when_fusing(tmp_path: Path) -> None:
    """A portrait phone JPEG stored landscape with Orientation 6 (rotate 90° clockwise to view)."""
    ir = synthetic_pair(h=64, w=48)[0]  # upright: 48 wide, 64 high
    yy, xx = np.mgrid[0:64, 0:48]
    vi = np.stack([yy * 4, xx * 5, 255 - yy * 3], axis=2).astype(np.uint8)  # smooth: JPEG keeps it
    stored = Image.fromarray(vi).transpose(Image.Transpose.ROTATE_90)  # what the camera wrote: 64 x 48
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(tmp_path / "vi.jpg", exif=exif, quality=95)
    Image.fromarray(ir).save(tmp_path / "ir.png")
    ckpt = save_checkpoint(analytic_lutfuse(), tmp_path / "lut.safetensors")
    proc = run_cli("fuse", "--model", ckpt, "--ir", tmp_path / "ir.png", "--vi", tmp_path / "vi.jpg",
                   "--out", tmp_path / "fused.png")
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "fused.png").size == (48, 64)
    from lutfuse_deploy.io.images import read_vi

    upright = read_vi(tmp_path / "vi.jpg").astype(int)
    assert np.abs(upright - vi).mean() < 3  # the rotated-back JPEG is the original, up to compression


def test_validation_too_small_for_the_metrics_is_refused_at_load(tmp_path: Path) -> None:
    raw = load_recipe(REPO_ROOT / "recipes" / "mini.yaml").to_dict()
    raw["val"]["crop"] = VIF_MIN_SIDE - 1 - (VIF_MIN_SIDE - 1) % 2  # even, just below
    with pytest.raises(ConfigError, match=f"val.crop: {raw['val']['crop']} px is below the {VIF_MIN_SIDE} px"):
        recipe_from_dict(raw)
    raw["val"]["crop"] = 0
    recipe_from_dict(raw)
    for name in ("ir", "vi"):
        (tmp_path / name).mkdir()
    ir, vi = synthetic_pair(h=VIF_MIN_SIDE, w=80)  # odd height: even cropping leaves 40
    Image.fromarray(ir).save(tmp_path / "ir" / "a.png")
    Image.fromarray(vi).save(tmp_path / "vi" / "a.png")
    with pytest.raises(InputError, match=rf"image 80x{VIF_MIN_SIDE}\) is 80x{VIF_MIN_SIDE - 1} after even cropping"):
        validation_pairs(tmp_path, 4, 0)


@pytest.mark.parametrize("case", ["resume-nothing", "student-as-teacher"])
def test_train_refuses_before_reading_data(tmp_path: Path, case: str) -> None:
    """The data root does not exist: the refusal must come first, so no data was read."""
    student = save_checkpoint(create_model("mmdrfuse-student"), tmp_path / "student.safetensors")
    teacher = save_checkpoint(create_model("mmdrfuse-teacher"), tmp_path / "teacher.safetensors")
    args = ["train", "mini", "--recipe", REPO_ROOT / "recipes" / "mini.yaml", "--data", tmp_path / "no-data",
            "--out", tmp_path / "run"]
    if case == "resume-nothing":
        proc = run_cli(*args, "--resume", "--teacher", teacher)
        assert_one_line_error(proc, "nothing to resume")
    else:
        proc = run_cli(*args, "--teacher", student)
        assert_one_line_error(proc, "holds a mmdrfuse-student model, expected mmdrfuse-teacher")


def test_info_on_a_folder_shows_every_checkpoint_readably(tmp_path: Path) -> None:
    proc = run_cli("info", pretrained_dir())
    assert proc.returncode == 0, proc.stderr
    shown = [ln for ln in proc.stdout.splitlines() if ln.endswith(".safetensors") and not ln.startswith(" ")]
    assert sorted(Path(s).name for s in shown) == sorted(p.name for p in pretrained_dir().glob("*.safetensors"))
    assert max(len(ln) for ln in proc.stdout.splitlines()) < 200  # provenance is indented lines, not one JSON line
    listed = json.loads(run_cli("info", "--json", pretrained_dir()).stdout)
    assert [Path(m["path"]).name for m in listed] == [Path(s).name for s in shown]


def test_provenance_carries_no_machine_paths(tmp_path: Path) -> None:
    where = str(data_root() / "train")
    path = save_checkpoint(analytic_lutfuse(), tmp_path / "x.safetensors",
                           provenance={"data": {"root": where}, "validation": f"4 pairs of {where}"})
    prov = read_metadata(path)["provenance"]
    assert prov["data"]["root"] == "$LUTFUSE_DATA/train" and prov["validation"] == "4 pairs of $LUTFUSE_DATA/train"
    for shipped in pretrained_dir().glob("*.safetensors"):
        text = json.dumps(read_metadata(shipped))
        assert "/shared/data" not in text and str(Path.home()) + os.sep not in text, shipped


def test_profile_takes_a_folder_and_names_the_file_type_a_backend_needs(tmp_path: Path) -> None:
    save_checkpoint(analytic_lutfuse(), tmp_path / "m" / "lut.safetensors")
    proc = run_cli("profile", "--model", tmp_path / "m", "--resolutions", "64x48", "--iters", "1", "--warmup", "0",
                   "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("profile", "--model", tmp_path / "m" / "lut.safetensors", "--backend", "tensorrt",
                   "--resolutions", "64x48")
    assert_one_line_error(proc, "lut.safetensors", "TensorRT engine (.engine")


def test_fuse_refuses_a_pair_that_will_not_fit_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from lutfuse_deploy.cli import main
    from lutfuse_deploy.runtime import memory

    assert (memory.available_mib() or 0) > 0  # this machine's figure is readable
    ir, vi = synthetic_pair(h=96, w=128)
    Image.fromarray(ir).save(tmp_path / "ir.png")
    Image.fromarray(vi).save(tmp_path / "vi.png")
    ckpt = save_checkpoint(analytic_lutfuse(), tmp_path / "lut.safetensors")
    need = memory.estimate_mib("lutfuse", "torch", 128, 96)
    assert need is not None and need < memory.estimate_mib("lutfuse", "torch", 8000, 8000)  # type: ignore[operator]
    monkeypatch.setattr(memory, "available_mib", lambda: need / 2)
    args = ["fuse", "--model", str(ckpt), "--ir", str(tmp_path / "ir.png"), "--vi", str(tmp_path / "vi.png"),
            "--out", str(tmp_path / "fused.png"), "--backend", "torch"]  # the estimate above is torch's
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err
    assert info.value.code == 1 and "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "128x96" in line and f"{need / 1024:.1f} GiB" in line and "--no-memory-check" in line
    assert not (tmp_path / "fused.png").exists()
    with pytest.raises(SystemExit) as info:
        main([*args, "--no-memory-check"])
    assert info.value.code == 0 and (tmp_path / "fused.png").is_file()


def test_profile_refuses_a_size_that_will_not_fit_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from lutfuse_deploy.cli import main
    from lutfuse_deploy.runtime import memory

    ckpt = save_checkpoint(create_model("mmdrfuse-student"), tmp_path / "mini.safetensors")
    monkeypatch.setattr(memory, "available_mib", lambda: 1.0)
    with pytest.raises(SystemExit) as info:
        main(["profile", "--model", str(ckpt), "--resolutions", "64x48,320x240", "--iters", "1"])
    err = capsys.readouterr().err
    assert info.value.code == 1 and "Traceback" not in err
    assert any(ln.startswith("error: a 320x240 pair needs about") and "--no-memory-check" in ln
               for ln in err.splitlines()), err


def test_fuse_help_names_what_each_path_takes() -> None:
    proc = run_cli("fuse", "--help")
    assert proc.returncode == 0 and "PATH" not in proc.stdout
    assert "--out DIR|FILE|URL" in proc.stdout and "--ir FILE|DIR|URL" in proc.stdout
