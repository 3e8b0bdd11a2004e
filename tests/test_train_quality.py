"""``make quality`` plumbing without the long run: target counting, the report, shipped-file lookup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lutfuse_deploy.errors import InputError
from lutfuse_deploy.io.checkpoints import save_checkpoint
from lutfuse_deploy.models import MMDRStudent, MMDRTeacher
from lutfuse_deploy.models.lut import analytic_lutfuse
from lutfuse_deploy.quality.report import render_markdown
from lutfuse_deploy.quality.results import BASELINES, ROWS, CropResult, SetResult, target_wins
from lutfuse_deploy.quality.run import _parse_extras, fidelity, shipped_checkpoints

METRICS = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "CC", "PSNR", "noise")


def _result(name: str, ours: float, theirs: float) -> SetResult:
    res = SetResult(name, pairs=2)
    for row, _ in ROWS:
        value = ours if "shipped" in row else theirs
        res.metrics[row] = [dict.fromkeys(METRICS, value), dict.fromkeys(METRICS, value)]
    for row in BASELINES:
        res.metrics[row] = [dict.fromkeys(METRICS, 0.5)]
    res.fidelity = {"a vs b": [(30.0, 0.9), (float("inf"), 1.0)]}
    return res


def test_targets_and_report() -> None:
    good, bad = _result("msrs_test", 1.0, 0.9), _result("tno", 0.8, 0.9)
    bad.metrics["LUT-Fuse (shipped)"][0]["EN"] = 5.0  # a mean above the official one: one win
    assert len(target_wins(good, "LUT-Fuse (shipped)", "LUT-Fuse (official)")) == 10
    assert target_wins(bad, "LUT-Fuse (shipped)", "LUT-Fuse (official)") == ["EN"]
    info = {
        "command": "python -m lutfuse_deploy.quality",
        "date": "d",
        "machine": "m",
        "wall_s": 1.0,
        "tanh_map": "minmax",
        "checkpoints": {"lut": "lutfuse.safetensors"},
        "figure": "quality.png",
        "validation": {"teacher": "<data>/ivif/v", "lut": "<data>/ivif/v", "mini": "3 pairs held out"},
    }
    crop = CropResult("FLIR_00211 sky", noise={row: 2.0 for row in good.metrics} | {"IR": 3.0, "visible": 0.5})
    md = render_markdown([good, bad, _result("mri_pet", 1.0, 0.9)], {**info, "crop": crop})
    assert "| msrs_test | 2 | 10/10 met" in md and "| tno | 2 | 1/10 **not met** (EN)" in md
    assert "| method | msrs_test | tno | mri_pet | FLIR_00211 sky |" in md
    assert "| LUT-Fuse (shipped) | 1.000 | 0.800 | 1.000 | 2.000 |" in md  # noise per set, then the crop's
    assert "inputs: IR 3.00, visible 0.50" in md
    assert "validation during training: teacher, lut: `<data>/ivif/v`; mini: `3 pairs held out`)" in md
    assert "mri_pet" in md and "30.00 dB / 0.950" in md and "![first pair of each set](quality.png)" in md


def test_fidelity_of_identical_and_different_images() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 40), dtype=np.uint8)
    psnr, ssim = fidelity(a, a)
    assert psnr == float("inf") and ssim == pytest.approx(1.0)
    psnr2, ssim2 = fidelity(a, 255 - a)
    assert psnr2 < 10 and ssim2 < 0.5


def test_shipped_checkpoints_need_one_of_each(tmp_path: Path) -> None:
    torch.manual_seed(0)
    save_checkpoint(analytic_lutfuse(), tmp_path / "lutfuse.safetensors")
    save_checkpoint(MMDRStudent(), tmp_path / "mini.safetensors")
    with pytest.raises(InputError, match="expected one mmdrfuse-teacher checkpoint named \\*teacher\\*"):
        shipped_checkpoints(tmp_path)
    save_checkpoint(MMDRTeacher(), tmp_path / "teacher.safetensors")
    found = shipped_checkpoints(tmp_path)
    assert {k: p.name for k, p in found.items()} == {
        "teacher": "teacher.safetensors",
        "lut": "lutfuse.safetensors",
        "mini": "mini.safetensors",
    }
    save_checkpoint(analytic_lutfuse(), tmp_path / "lutfuse-fast.safetensors")  # a variant beside it
    assert shipped_checkpoints(tmp_path)["lut"].name == "lutfuse.safetensors"
    (tmp_path / "lutfuse.safetensors").rename(tmp_path / "lut-a.safetensors")
    with pytest.raises(InputError, match="expected one lutfuse checkpoint named \\*lut\\*.safetensors, found 2"):
        shipped_checkpoints(tmp_path)


def test_the_shipped_checkpoints_are_in_the_package() -> None:
    from lutfuse_deploy.io.checkpoints import load_model
    from lutfuse_deploy.paths import pretrained_dir

    found = shipped_checkpoints(pretrained_dir())
    sizes = {k: p.stat().st_size for k, p in found.items()}
    assert sizes["mini"] < 10_000 and sizes["lut"] < 400_000 and sizes["teacher"] < 2_500_000
    for path in found.values():
        _, meta = load_model(path)
        assert meta["provenance"]["trained_by"] == "lutfuse-deploy train"


def test_fidelity_compares_the_images_fuse_writes() -> None:
    """``_fuse`` gives both grays: as written (min-max for a tanh student) and clipped to [0, 1]."""
    import torch

    from lutfuse_deploy.fuse.convert import to_8bit
    from lutfuse_deploy.models import MMDRStudent
    from lutfuse_deploy.quality.run import _fuse
    from lutfuse_deploy.train.mini import init_max_rule

    student = MMDRStudent().eval()
    init_max_rule(student)  # tanh(2 max - 1): negative wherever max(ir, vi) < 128
    rng = np.random.default_rng(0)
    ir = rng.integers(0, 256, (24, 32), dtype=np.uint8)
    gray = rng.integers(0, 256, (24, 32), dtype=np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    img, grays = _fuse(student, ir, rgb, "minmax")
    compared = grays["written"]
    with torch.no_grad():
        raw = student(torch.from_numpy(ir).float()[None, None], torch.from_numpy(gray).float()[None, None])[0]
    assert np.array_equal(img, to_8bit(raw.numpy(), student.kind, "minmax"))
    assert np.array_equal(compared, img) and compared.min() == 0 and compared.max() == 255
    assert np.array_equal(grays["clip"], to_8bit(raw.numpy(), student.kind, "clip"))
    assert (grays["clip"] == 0).mean() > 0.1  # the negative half a clip comparison would lose


def test_an_extra_row_is_measured_against_the_official_model_of_its_kind() -> None:
    res = _result("roadscene", 1.0, 0.9)
    res.metrics["ceiling"] = [dict.fromkeys(METRICS, 0.5)]
    info = {
        "command": "python -m lutfuse_deploy.quality --extra ceiling=x.safetensors",
        "date": "d",
        "machine": "m",
        "wall_s": 1.0,
        "tanh_map": "minmax",
        "checkpoints": {"lut": "lutfuse.safetensors", "extra:ceiling": "x.safetensors"},
        "figure": None,
        "targets": [("ceiling", "LUT-Fuse (official)")],
    }
    md = render_markdown([res], info)
    assert "| set | pairs | ceiling vs LUT-Fuse (official) |" in md
    assert "| roadscene | 2 | 0/10 **not met** (-) |" in md and "Extra row `ceiling`: `x.safetensors`." in md
    assert "| ceiling | 0.500 |" in md


def test_extra_rows_are_checked(tmp_path: Path) -> None:
    ckpt = tmp_path / "a.safetensors"
    save_checkpoint(analytic_lutfuse(), ckpt)
    assert _parse_extras([f"ceiling={ckpt}"]) == {"ceiling": ckpt}
    for bad, msg in (
        ("ceiling", "expected NAME=CKPT"),
        (f"LUT-Fuse (shipped)={ckpt}", "already used"),
        (f"x={tmp_path / 'missing.safetensors'}", "checkpoint not found"),
    ):
        with pytest.raises(InputError, match=msg):
            _parse_extras([bad])
    with pytest.raises(InputError, match="already used"):
        _parse_extras([f"a={ckpt}", f"a={ckpt}"])


def test_validation_sources_name_the_data_root_once() -> None:
    from lutfuse_deploy.quality.run import validation_sources

    metas = {
        "lut": {"provenance": {"validation": "$LUTFUSE_DATA/ivif/llvip_test"}},
        "mini": {"provenance": {"validation": "30 pairs held out of /data/train (10 per set)"}},
        "extra:ceiling": {"provenance": {}},
        "official-lut": {"provenance": {"validation": "x"}},
    }
    assert validation_sources(metas, Path("/data")) == {
        "lut": "<data>/ivif/llvip_test",
        "mini": "30 pairs held out of <data>/train (10 per set)",
        "ceiling": "not recorded",
    }


def test_unknown_set_is_refused_before_any_work(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lutfuse_deploy.quality.run import main

    res = CliRunner().invoke(main, ["--sets", "tno,nope", "--out", str(tmp_path / "q.md"), "--no-figure"])
    assert res.exit_code != 0 and "error: --sets: unknown set nope" in res.output
    assert not (tmp_path / "q.md").exists()


def test_compare_counts_wins_per_set_and_refuses_bad_input(tmp_path: Path) -> None:
    """``python -m lutfuse_deploy.quality.compare``: wins follow the means it writes; bad input is one line."""
    import json
    import subprocess
    import sys

    from conftest import assert_one_line_error
    from train_helpers import make_train_data

    from lutfuse_deploy.train.mini import init_max_rule

    data = make_train_data(tmp_path / "d")
    torch.manual_seed(0)
    ref = MMDRStudent()
    max_rule = MMDRStudent()
    init_max_rule(max_rule)
    paths = {n: save_checkpoint(m, tmp_path / f"{n}.safetensors") for n, m in (("ref", ref), ("max", max_rule))}
    same = save_checkpoint(ref, tmp_path / "same.safetensors")

    def run(*args: object) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "lutfuse_deploy.quality.compare", *map(str, args)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600)

    out = tmp_path / "wins.json"
    proc = run("--against", paths["ref"], "--set", f"a={data / 'msrs'}", "--set", f"b={data / 'llvip'}",
               f"same={same}", f"max={paths['max']}", "--json", out)
    assert proc.returncode == 0, proc.stderr
    table = json.loads(out.read_text())
    assert set(table) == {"a", "b"}
    for name, rows in table.items():
        ref_mean, max_mean = rows["reference"]["mean"], rows["max"]["mean"]
        expected = [m for m in ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "CC")
                    if max_mean[m] >= ref_mean[m]]
        assert rows["max"]["wins"] == expected
        assert f"{name}: max: {len(expected)}/10" in proc.stdout
        assert f"{name}: same: 10/10" in proc.stdout  # the same weights match on every metric
    assert_one_line_error(run("--against", paths["ref"], "--set", f"a={tmp_path}", f"x={same}"), "holds no ir/")
    assert_one_line_error(run("--against", paths["ref"], "--set", f"a={data / 'msrs'}", "x=nope.safetensors"),
                          "checkpoint not found")
    assert_one_line_error(run("--against", paths["ref"], "--set", "a", f"x={same}"), "expected NAME=PATH")


def test_compare_holdout_and_medical_sets(tmp_path: Path) -> None:
    """``--holdout RECIPE``: one set per training set, holding the pairs ``train`` held out; a medical set's
    mri/ + pet/ layout; refusals."""
    import shutil
    import subprocess
    import sys

    import yaml
    from conftest import assert_one_line_error
    from train_helpers import make_train_data

    from lutfuse_deploy.paths import REPO_ROOT
    from lutfuse_deploy.quality.compare import holdout_sets
    from lutfuse_deploy.train.data import collect_pairs, set_folders, split_holdout

    data = make_train_data(tmp_path / "d", pairs_per_set=3)
    raw = yaml.safe_load((REPO_ROOT / "recipes" / "mini.yaml").read_text())
    raw["data"]["holdout"] = 1
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    held = holdout_sets(recipe, data)
    expected = split_holdout(collect_pairs(set_folders(data, raw["data"]["sets"])), 1)[1]
    assert sorted(held) == [f"holdout/{s}" for s in sorted(raw["data"]["sets"])]
    assert sorted(p.name for ps in held.values() for p in ps) == sorted(p.name for p in expected)
    assert all(len(ps) == 1 for ps in held.values())

    ckpt = save_checkpoint(MMDRStudent(), tmp_path / "m.safetensors")

    def run(*args: object) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "lutfuse_deploy.quality.compare", "--against", str(ckpt), *map(str, args)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600)

    proc = run("--holdout", recipe, "--data", data, f"same={ckpt}")
    assert proc.returncode == 0, proc.stderr
    for s in raw["data"]["sets"]:
        assert f"holdout/{s}: same: 10/10" in proc.stdout
    med = tmp_path / "med"  # a medical set's layout (mri/ where the report puts the IR, pet/)
    shutil.copytree(data / "msrs" / "ir", med / "mri")
    shutil.copytree(data / "msrs" / "vi", med / "pet")
    proc = run("--set", f"mri_pet={med}", f"same={ckpt}")
    assert proc.returncode == 0 and "mri_pet: same: 10/10" in proc.stdout, proc.stderr
    raw["data"]["holdout"] = 0
    (tmp_path / "none.yaml").write_text(yaml.safe_dump(raw))
    assert_one_line_error(run("--holdout", tmp_path / "none.yaml", "--data", data, f"x={ckpt}"), "data.holdout: 0")
    assert_one_line_error(run("--set", f"a={data / 'msrs'}", "--data", data, f"x={ckpt}"), "--data: applies only")
    assert_one_line_error(run(f"x={ckpt}"), "give at least one --set")
    assert_one_line_error(run("--holdout", tmp_path / "nope.yaml", f"x={ckpt}"), "recipe not found")
    assert_one_line_error(run("--holdout", recipe, "--data", data, "--set", f"holdout/msrs={data / 'msrs'}",
                              f"x={ckpt}"), "also a --holdout set")
