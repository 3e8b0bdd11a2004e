"""Training end to end on tiny synthetic crops: the loss goes down, checkpoints load back and fuse,
``--resume`` after a kill gives the same weights as an uninterrupted run, refresh banks stay on
disk, the CLI reports errors on one line, and a 2-process gloo DDP run works."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, run_cli
from train_helpers import make_train_data

from lutfuse_deploy.io.checkpoints import load_model, save_checkpoint
from lutfuse_deploy.models import MMDRTeacher
from lutfuse_deploy.paths import REPO_ROOT
from lutfuse_deploy.train import load_recipe, train
from lutfuse_deploy.train.validate import fused_gray

RECIPES = REPO_ROOT / "recipes"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_train_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(MMDRTeacher(), tmp_path_factory.mktemp("t") / "teacher.safetensors")


def _recipe(name: str, data: Path, **over: object):
    r = load_recipe(RECIPES / name)
    r.val.root = str(data.parent / "val")
    for k, v in over.items():
        setattr(r, k, v)
    return r


def _log(out: Path) -> list[dict]:
    return [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]


def _losses(out: Path) -> list[float]:
    return [e["loss"] for e in _log(out) if "loss" in e]


def _fuses(path: Path) -> np.ndarray:
    model, _ = load_model(path)
    rng = np.random.default_rng(0)
    ir, rgb = (
        rng.integers(0, 256, (40, 48), dtype=np.uint8),
        rng.integers(0, 256, (40, 48, 3), dtype=np.uint8),
    )
    out = fused_gray(model, ir, rgb)
    assert out.shape == (40, 48) and out.dtype == np.uint8
    return out


def _fixed_batch_loss(model: torch.nn.Module, data: Path) -> float:
    """The teacher recipe's fusion loss on the same 8 crops, whatever model is given."""
    from lutfuse_deploy.train.data import CropStream, PairStore, StreamSpec, collect_pairs, set_folders
    from lutfuse_deploy.train.losses import fusion_terms

    stream = CropStream(
        PairStore(collect_pairs(set_folders(data, ["msrs", "llvip", "roadscene"]))),
        StreamSpec(32, False, 123),
    )
    ir = torch.stack([stream[i]["ir"] for i in range(8)]).float()
    vi = torch.stack([stream[i]["gray"] for i in range(8)]).float()
    with torch.no_grad():
        terms = fusion_terms(
            model(ir, vi), ir / 255, vi / 255, {"intensity": 1.0, "gradient": 10.0, "ssim": 1.0}
        )
    return float(sum(terms.values()))


def test_teacher_loss_goes_down_and_checkpoint_fuses(data: Path, tmp_path: Path) -> None:
    r = _recipe("ci-teacher.yaml", data, steps=12)
    res = train("teacher", r, data=data, out=tmp_path / "run", progress=False)
    assert len(_losses(tmp_path / "run")) == 12
    torch.manual_seed(r.seed)
    before = _fixed_batch_loss(MMDRTeacher().eval(), data)  # the same initial weights as the run
    after = _fixed_batch_loss(load_model(res.last)[0], data)
    assert after < 0.8 * before, (before, after)
    assert res.last.is_file() and res.best is not None and res.best.is_file()
    _, meta = load_model(res.last, kind="mmdrfuse-teacher")
    assert meta["provenance"]["steps"] == 12 and meta["provenance"]["recipe"]["kind"] == "teacher"
    _fuses(res.best)
    assert any("val" in e for e in _log(tmp_path / "run"))


def _kill_at(monkeypatch: pytest.MonkeyPatch, cls: type, step: int) -> None:
    original = cls.losses

    def losses(self, model, batch, s):  # type: ignore[no-untyped-def]
        if s == step:
            raise KeyboardInterrupt  # what a kill looks like to the loop: nothing after the last save
        return original(self, model, batch, s)

    monkeypatch.setattr(cls, "losses", losses)


@pytest.mark.parametrize("kind", ["lut", "mini"])
def test_resume_after_kill_matches_uninterrupted_run(
    kind: str, data: Path, teacher_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lutfuse_deploy.train.lut import LutTask
    from lutfuse_deploy.train.mini import MiniTask

    name = f"ci-{kind}.yaml"
    steps = load_recipe(RECIPES / name).steps
    full = train(
        kind, _recipe(name, data), data=data, out=tmp_path / "full", teacher=teacher_ckpt, progress=False
    )
    with monkeypatch.context() as m:
        _kill_at(m, LutTask if kind == "lut" else MiniTask, load_recipe(RECIPES / name).save_every + 1)
        with pytest.raises(KeyboardInterrupt):
            train(
                kind,
                _recipe(name, data),
                data=data,
                out=tmp_path / "cut",
                teacher=teacher_ckpt,
                progress=False,
            )
    resumed = train(
        kind,
        _recipe(name, data),
        data=data,
        out=tmp_path / "cut",
        resume=True,
        teacher=teacher_ckpt,
        progress=False,
    )
    assert resumed.steps == full.steps == steps
    a, _ = load_model(full.last)
    b, _ = load_model(resumed.last)
    for (name_a, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa, pb), name_a
    np.testing.assert_array_equal(_fuses(full.last), _fuses(resumed.last))
    if kind == "mini":
        bank = np.load(tmp_path / "full" / "refresh" / "ssim_bank.npy", mmap_mode="r")
        assert bank.dtype == np.uint8 and bank.shape == (6, 32, 32) and bank.any()
        assert (np.load(tmp_path / "full" / "refresh" / "seen.npy") == 1).all()
        have = np.load(tmp_path / "full" / "teacher_targets" / "have.npy")
        assert have.shape == (6 * 4,) and have.any()  # 6 patches x 4 flip states, filled as visited
    if kind == "lut":
        assert a.lut.shape == (17, 17, 17, 17)


def test_lut_noise_terms_are_off_by_default_and_logged_when_on(
    data: Path, teacher_ckpt: Path, tmp_path: Path
) -> None:
    plain = _recipe("ci-lut.yaml", data, steps=2)
    assert plain.loss.ir_curvature == 0 and plain.loss.flat_detail == 0
    train("lut", plain, data=data, out=tmp_path / "plain", teacher=teacher_ckpt, progress=False)
    assert not any("flat_detail" in e or "ir_curvature" in e for e in _log(tmp_path / "plain"))
    on = _recipe("ci-lut.yaml", data, steps=2)
    on.loss.ir_curvature, on.loss.flat_detail = 1.0, 1.0
    train("lut", on, data=data, out=tmp_path / "on", teacher=teacher_ckpt, progress=False)
    logged = [e for e in _log(tmp_path / "on") if "loss" in e]
    assert logged and all({"ir_curvature", "flat_detail"} <= e.keys() for e in logged)
    assert all(e["ir_curvature"] > 0 for e in logged)


def test_mini_distils_lut_fuse_output_and_context(data: Path, teacher_ckpt: Path, tmp_path: Path) -> None:
    """The LUT-Fuse terms are logged, cached per pool patch (the cache only rounds to float16), work
    without refresh banks (the pool is still drawn), and the output term alone pulls towards LUT-Fuse."""
    from lutfuse_deploy.models.lut import analytic_lutfuse

    lut = save_checkpoint(analytic_lutfuse(seed=3), tmp_path / "lut.safetensors")

    def run(name: str, **loss: object) -> list[dict]:
        r = _recipe("ci-mini.yaml", data, steps=8)
        r.loss.intensity = r.loss.gradient = r.loss.ssim = r.loss.distill_feature = 0.0
        r.loss.lut_teacher = str(lut)
        for k, v in loss.items():
            setattr(r.loss, k, v)
        res = train("mini", r, data=data, out=tmp_path / name, teacher=teacher_ckpt, progress=False)
        assert load_model(res.last)[1]["provenance"]["lut_teacher"]["file"] == "lut.safetensors"
        return [e for e in _log(tmp_path / name) if "loss" in e]

    both = {"lut_output": 1.0, "lut_context": 1.0, "distill_output": 0.0}
    cached, fresh = run("cached", **both), run("fresh", cache_teacher=False, **both)
    for term in ("lut_output", "lut_context"):
        assert cached[0][term] > 0 and cached[0][term] == pytest.approx(fresh[0][term], rel=1e-2)
    assert np.load(tmp_path / "cached" / "lut_targets" / "have.npy").sum() > 1
    assert not (tmp_path / "cached" / "teacher_targets").exists()  # no teacher term: no teacher targets
    assert not (tmp_path / "fresh" / "lut_targets").exists()
    alone = run("alone", lut_output=1.0, refresh=0.0, distill_output=1.0)
    assert alone[-1]["lut_output"] < alone[0]["lut_output"]
    # without refresh banks the cached targets still index distinct pool patches (not one shared key)
    assert np.load(tmp_path / "alone" / "teacher_targets" / "have.npy").sum() > 1
    assert not (tmp_path / "alone" / "refresh").exists()


def test_mini_distilling_lut_fuse_alone_needs_no_teacher(data: Path, teacher_ckpt: Path, tmp_path: Path) -> None:
    """No teacher term and the max-rule start: trains without --teacher, records none, and refuses one
    (a flag that would be ignored); with ``init: teacher`` the teacher is needed again."""
    from lutfuse_deploy.errors import ConfigError
    from lutfuse_deploy.models.lut import analytic_lutfuse

    r = _recipe("ci-mini.yaml", data, steps=4)
    r.loss.distill_feature = r.loss.distill_output = 0.0
    r.loss.init = "max"
    r.loss.lut_teacher = str(save_checkpoint(analytic_lutfuse(seed=3), tmp_path / "lut.safetensors"))
    r.loss.lut_output = 1.0
    prov = load_model(train("mini", r, data=data, out=tmp_path / "run", progress=False).last)[1]["provenance"]
    assert "teacher" not in prov and prov["lut_teacher"]["file"] == "lut.safetensors"
    with pytest.raises(ConfigError, match="--teacher: this mini recipe distils no teacher"):
        train("mini", r, data=data, out=tmp_path / "refused", teacher=teacher_ckpt, progress=False)
    assert not (tmp_path / "refused").exists()
    r.loss.init = "teacher"
    with pytest.raises(ConfigError, match="mini training distils a teacher: give --teacher"):
        train("mini", r, data=data, out=tmp_path / "needs", progress=False)


def test_mini_fine_tunes_a_trained_student(data: Path, teacher_ckpt: Path, tmp_path: Path) -> None:
    """``init: checkpoint`` starts from every weight of the given student (zero steps of change would
    give it back), records it, and refuses a checkpoint of another kind."""
    from lutfuse_deploy.errors import CheckpointError

    start = tmp_path / "start.safetensors"
    shutil.copy(REPO_ROOT / "lutfuse_deploy" / "pretrained" / "mini.safetensors", start)
    r = _recipe("ci-mini.yaml", data, steps=2)
    r.loss.init, r.loss.init_checkpoint = "checkpoint", str(start)
    r.optim.lr = r.optim.lr_min = 1e-12  # the run moves the weights by nothing measurable
    res = train("mini", r, data=data, out=tmp_path / "run", teacher=teacher_ckpt, progress=False)
    tuned, meta = load_model(res.last)
    shipped = load_model(start)[0]
    for (name, a), b in zip(tuned.state_dict().items(), shipped.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9, msg=name)
    assert meta["provenance"]["init_checkpoint"]["file"] == "start.safetensors"
    r.loss.init = "max"
    fresh = load_model(train("mini", r, data=data, out=tmp_path / "fresh", teacher=teacher_ckpt, progress=False).last)[0]
    assert not torch.allclose(fresh.state_dict()["conv1.1.weight"], shipped.state_dict()["conv1.1.weight"])
    r.loss.init, r.loss.init_checkpoint = "checkpoint", str(teacher_ckpt)
    with pytest.raises(CheckpointError, match="holds a mmdrfuse-teacher model, expected mmdrfuse-student"):
        train("mini", r, data=data, out=tmp_path / "wrong", teacher=teacher_ckpt, progress=False)


def test_same_seed_same_weights_and_no_clobbering(data: Path, tmp_path: Path) -> None:
    r = _recipe("ci-teacher.yaml", data, steps=2)
    one = train("teacher", r, data=data, out=tmp_path / "a", progress=False)
    two = train(
        "teacher", _recipe("ci-teacher.yaml", data, steps=2), data=data, out=tmp_path / "b", progress=False
    )
    for pa, pb in zip(load_model(one.last)[0].parameters(), load_model(two.last)[0].parameters()):
        assert torch.equal(pa, pb)
    from lutfuse_deploy.errors import ConfigError

    with pytest.raises(ConfigError, match="already holds a training run"):
        train("teacher", r, data=data, out=tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="nothing to resume"):
        train("teacher", r, data=data, out=tmp_path / "c", resume=True, progress=False)
    changed = _recipe("ci-teacher.yaml", data, steps=4)
    changed.loss.ssim = 2.0
    with pytest.raises(ConfigError, match="recipe differs"):
        train("teacher", changed, data=data, out=tmp_path / "a", resume=True, progress=False)


def test_mini_validates_on_held_out_training_pairs(data: Path, teacher_ckpt: Path, tmp_path: Path) -> None:
    r = load_recipe(RECIPES / "ci-mini.yaml")
    r.steps, r.data.holdout = 2, 1
    res = train("mini", r, data=data, out=tmp_path / "run", teacher=teacher_ckpt, progress=False)
    _, meta = load_model(res.last)
    prov = meta["provenance"]
    # make_train_data gives 2 pairs per set: one of each trains, the other validates
    assert prov["data"]["pairs"] == 3 and prov["holdout"] == ["msrs/001", "llvip/001", "roadscene/001"]
    assert prov["validation"].startswith("3 pairs held out of")
    assert [e for e in _log(tmp_path / "run") if "val" in e]
    from lutfuse_deploy.errors import ConfigError

    with pytest.raises(ConfigError, match="--val: this recipe validates on its held-out pairs"):
        train("mini", r, data=data, out=tmp_path / "x", teacher=teacher_ckpt, val=data.parent / "val")


def test_cli_errors_are_one_line(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: teacher\nloss:\n  ssimm: 1\n")
    # The real console entry point once (what a user sees), then the same main() in-process.
    assert_one_line_error(
        run_cli("train", "teacher", "--recipe", bad, "--data", data), "loss.ssimm: unknown key"
    )
    from lutfuse_deploy.cli import main

    for args, needle in (
        (
            [
                "train",
                "lut",
                "--recipe",
                str(RECIPES / "ci-lut.yaml"),
                "--data",
                str(data),
                "--out",
                str(tmp_path / "o"),
            ],
            "distils a teacher: give --teacher",
        ),
        (
            ["train", "mini", "--recipe", str(RECIPES / "ci-teacher.yaml"), "--data", str(data)],
            "this recipe trains 'teacher', not 'mini'",
        ),
        (
            [
                "train",
                "teacher",
                "--recipe",
                str(RECIPES / "ci-teacher.yaml"),
                "--data",
                str(tmp_path / "nope"),
            ],
            "training set folder not found",
        ),
    ):
        with pytest.raises(SystemExit) as exc:
            main(args)
        err = capsys.readouterr().err
        assert exc.value.code != 0 and err.startswith("error: ") and needle in err and err.count("\n") == 1, (
            err
        )


def test_ddp_two_process_gloo(data: Path, tmp_path: Path) -> None:
    """The same command under torchrun: 2 CPU processes, gloo; rank 0 writes and reports."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    train_args = [
        "train",
        "teacher",
        "--recipe",
        RECIPES / "ci-teacher.yaml",
        "--data",
        data,
        "--val",
        data.parent / "val",
        "--out",
        tmp_path / "ddp",
        "--steps",
        "3",
        "--quiet",
    ]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "lutfuse_deploy", *map(str, train_args)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    model, meta = load_model(tmp_path / "ddp" / "teacher-last.safetensors")
    assert meta["provenance"]["world_size"] == 2 and meta["provenance"]["steps"] == 3
    assert proc.stdout.count("trained teacher for 3 steps") == 1  # only rank 0 reports
    state = torch.load(tmp_path / "ddp" / "train_state.pt", weights_only=True)
    assert state["step"] == 3
    for name, p in model.state_dict().items():  # what rank 0 saved is what DDP trained
        assert torch.equal(p, state["model"][name])


def test_cli_resume_reports_the_new_steps_and_draws_no_bar_into_a_log(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """stderr here is not a terminal (a log): no progress bar in it; --resume says how many steps ran."""
    from lutfuse_deploy.cli import main

    base = ["train", "teacher", "--recipe", str(RECIPES / "ci-teacher.yaml"), "--data", str(data),
            "--val", str(data.parent / "val"), "--out", str(tmp_path / "run")]
    for extra, said in ((["--steps", "4"], "trained teacher for 4 steps in "),
                        (["--steps", "6", "--resume"], "trained teacher from step 4 to 6 (2 new steps); ")):
        with pytest.raises(SystemExit) as exc:
            main([*base, *extra])
        out, err = capsys.readouterr()
        assert exc.value.code == 0, err
        assert said in out and "\r" not in err and "step/s" not in err, (out, err)


def test_16bit_ir_sets_train_with_ir16_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A training set from a radiometric camera (16-bit IR PNGs) stops the run with the 16-bit message,
    trains with --ir16 on the frames `fuse --ir16` would fuse (recorded in provenance and in the run's
    recipe), and a --resume that maps them differently is refused as a recipe change."""
    from PIL import Image

    from lutfuse_deploy.cli import main
    from lutfuse_deploy.errors import ConfigError, InputError

    root = make_train_data(tmp_path / "d")
    for png in root.glob("*/ir/*.png"):  # the same scenes as a 16-bit camera would store them
        Image.fromarray(np.asarray(Image.open(png), dtype=np.uint16) * 64 + 9000).save(png)
    args = ["train", "teacher", "--recipe", str(RECIPES / "ci-teacher.yaml"), "--data", str(root),
            "--steps", "2", "--quiet", "--val", str(tmp_path / "d" / "val")]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--out", str(tmp_path / "refused")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code != 0 and len(err.splitlines()) == 1 and "16-bit" in err and "train" in err, err
    assert not (tmp_path / "refused").exists()
    with pytest.raises(SystemExit) as exc:
        main([*args, "--out", str(tmp_path / "run"), "--ir16", "minmax"])
    assert exc.value.code in (0, None), capsys.readouterr().err
    prov = load_model(tmp_path / "run" / "teacher-last.safetensors")[1]["provenance"]
    assert prov["data"]["ir16"] == "minmax" and prov["recipe"]["data"]["ir16"] == "minmax"
    r = _recipe("ci-teacher.yaml", root, steps=3)  # validates on tmp_path/d/val, as the CLI runs did
    with pytest.raises(InputError, match="16-bit IR image"):
        train("teacher", r, data=root, out=tmp_path / "run", resume=True, progress=False)
    with pytest.raises(ConfigError, match="recipe differs"):
        train("teacher", r, data=root, out=tmp_path / "run", resume=True, progress=False, ir16="linear")
    assert train("teacher", r, data=root, out=tmp_path / "run", resume=True, progress=False, ir16="minmax").steps == 3
