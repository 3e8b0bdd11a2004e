"""Training recipes, data stream and loss terms: validation errors name the key, the stream is a pure
function of (seed, sample number), the losses point the right way. No training here (fast)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from train_helpers import make_train_data

from lutfuse_deploy.errors import ConfigError, InputError
from lutfuse_deploy.paths import REPO_ROOT
from lutfuse_deploy.train.config import disk_bytes, load_recipe, recipe_from_dict
from lutfuse_deploy.train.data import (
    CropStream,
    PairStore,
    StreamSpec,
    collect_pairs,
    holdout_pairs,
    set_folders,
    split_holdout,
)
from lutfuse_deploy.train.losses import (
    attention_map,
    digestible_loss,
    flat_detail_loss,
    gradient_loss,
    table_ir_curvature,
    table_monotonic,
    table_tv,
)

RECIPES = sorted((REPO_ROOT / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipes_validate(path: Path) -> None:
    r = load_recipe(path)
    assert r.kind in ("teacher", "lut", "mini")
    assert r.data.crop % 2 == 0


def test_recipes_exist_for_every_kind() -> None:
    kinds = {load_recipe(p).kind for p in RECIPES}
    assert kinds == {"teacher", "lut", "mini"}


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"kind": "teacher", "stepz": 3}, "stepz: unknown key"),
        ({"kind": "teacher", "steps": 0}, "steps: expected a number >= 1"),
        ({"kind": "teacher", "steps": "ten"}, "steps: expected an integer"),
        ({"kind": "teacher", "data": {"crop": 33}}, "data.crop: must be even"),
        ({"kind": "teacher", "data": {"cropp": 32}}, "data.cropp: unknown key"),
        ({"kind": "teacher", "data": {"flip": "yes"}}, "data.flip: expected true or false"),
        ({"kind": "teacher", "loss": {"ssim": -1}}, "loss.ssim: expected a number >= 0"),
        ({"kind": "teacher", "loss": {"distill_l1": 1}}, "loss.distill_l1: unknown key"),
        ({"kind": "teacher", "loss": {"perceptual": 1.0}}, "loss.perceptual: needs loss.vgg_weights"),
        ({"kind": "teacher", "val": {"score": {"VIFF": 1}}}, "val.score.VIFF: unknown metric"),
        ({"kind": "teacher", "model": {"nodes": 17}}, "model: only lut recipes"),
        ({"kind": "lut", "model": {"nodes": 15}}, "model.nodes: expected one of 16, 17"),
        ({"kind": "lut", "loss": {"init": "random"}}, "loss.init: expected one of analytic, teacher"),
        ({"kind": "mini", "loss": {"refresh_dtype": "float64"}}, "loss.refresh_dtype"),
        ({"kind": "mini", "loss": {"init": "analytic"}}, "loss.init: expected one of random, teacher, max"),
        ({"kind": "mini", "loss": {"init_from_teacher": True}}, "loss.init_from_teacher: unknown key"),
        ({"kind": "gan"}, "kind: expected one of teacher, lut, mini"),
        ({"kind": "mini", "data": {"holdout": -1}}, "data.holdout: expected a number >= 0"),
        ({"kind": "mini", "data": {"holdout": 2}, "val": {"root": "v"}}, "val.root: the recipe validates on its"),
        ({"kind": "lut", "loss": {"ir_curvature": -1}}, "loss.ir_curvature: expected a number >= 0"),
        ({"kind": "lut", "loss": {"flat_detail": "lots"}}, "loss.flat_detail: expected a number"),
        ({"kind": "lut", "loss": {"flat_edge": 2}}, "loss.flat_edge: expected a number <= 1.0"),
        ({"kind": "lut", "loss": {"ir_smoothness": 1}}, "loss.ir_smoothness: unknown key"),
        ({"kind": "teacher", "loss": {"flat_detail": 1}}, "loss.flat_detail: unknown key"),
        ({"kind": "lut", "loss": {"flat_detail": 1, "flat_edge": 0}}, "loss.flat_edge: must be > 0 when"),
        ({"kind": "mini", "loss": {"lut_output": 1.0}}, "loss.lut_teacher: needed by loss.lut_output"),
        ({"kind": "mini", "loss": {"lut_context": 1.0}}, "loss.lut_teacher: needed by"),
        ({"kind": "mini", "loss": {"lut_teacher": "l.safetensors"}}, "loss.lut_teacher: set, but loss.lut_output"),
        ({"kind": "mini", "loss": {"init": "checkpoint"}}, "loss.init_checkpoint: needed by loss.init: checkpoint"),
        ({"kind": "mini", "loss": {"init_checkpoint": "m.safetensors"}},
         "loss.init_checkpoint: set, but loss.init is 'teacher' (it would be ignored"),
        ({"kind": "teacher", "loss": {"init_checkpoint": "m.safetensors"}}, "loss.init_checkpoint: unknown key"),
        ({"kind": "mini", "loss": {"lut_output": -1.0}}, "loss.lut_output: expected a number >= 0"),
        ({"kind": "mini", "loss": {"lut_outptu": 1.0}}, "loss.lut_outptu: unknown key"),
        ({"kind": "lut", "loss": {"lut_output": 1.0}}, "loss.lut_output: unknown key"),
        ({"kind": "teacher", "teacher": "t.safetensors"}, "teacher: set, but this recipe distils no teacher"),
        ({"kind": "mini", "teacher": "t.safetensors", "loss": {"init": "max", "distill_feature": 0, "distill_output": 0,
                                                               "lut_teacher": "l.safetensors", "lut_output": 1.0}},
         "teacher: set, but this recipe distils no teacher"),
    ],
)
def test_bad_recipe_names_the_key(raw: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as exc:
        recipe_from_dict(raw, "r.yaml")
    assert needle in str(exc.value), str(exc.value)
    assert str(exc.value).startswith("r.yaml: ")


def test_load_recipe_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: teacher\nsteps: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="no such recipe"):
        load_recipe(tmp_path / "missing.yaml")
    good = tmp_path / "good.yaml"
    good.write_text("kind: lut\n")
    with pytest.raises(ConfigError, match="this recipe trains 'lut', not 'mini'"):
        load_recipe(good, kind="mini")


def test_disk_use_is_bounded() -> None:
    r = recipe_from_dict({"kind": "mini", "data": {"patches": 2048, "crop": 128}})
    disk = disk_bytes(r)
    # uint8 banks: 64 MiB (+ 9 bytes of scores per patch), not gigabytes of float64
    assert disk["refresh banks"] == 2 * 2048 * 128 * 128 + 2048 * 9
    # float16 teacher output + summed feature for 4 flip states, + 1 "have" byte per key
    assert disk["teacher targets"] == 2048 * 4 * (2 * 128 * 128 * 2 + 1)
    small = recipe_from_dict(
        {
            "kind": "mini",
            "data": {"patches": 10, "crop": 64, "flip": False},
            "loss": {"refresh_dtype": "float16", "distill_feature": 0.0, "distill_output": 0.0},
        }
    )
    assert disk_bytes(small) == {"refresh banks": 2 * 10 * 64 * 64 * 2 + 10 * 9}  # no teacher: no targets
    assert disk_bytes(recipe_from_dict({"kind": "teacher"})) == {}
    lut = recipe_from_dict(
        {
            "kind": "mini",
            "data": {"patches": 10, "crop": 64, "flip": False},
            "loss": {"refresh": 0.0, "distill_feature": 0.0, "distill_output": 0.0,
                     "lut_teacher": "l.safetensors", "lut_context": 1.0},
        }
    )
    assert disk_bytes(lut) == {"LUT-Fuse targets": 10 * (2 * 64 * 64 * 2 + 1)}
    assert lut.loss.uses_pool  # cached targets need the fixed pool even without refresh banks


def test_holdout_is_spread_over_each_set_and_disjoint_from_training(tmp_path: Path) -> None:
    pairs = collect_pairs(set_folders(make_train_data(tmp_path, pairs_per_set=6), ["msrs", "llvip", "roadscene"]))
    assert split_holdout(pairs, 0) == (pairs, [])
    train, held = split_holdout(pairs, 2)
    assert len(train) == 12 and len(held) == 6 and not {p.name for p in train} & {p.name for p in held}
    # evenly spaced by name, not the first or last few: indices 1 and 4 of 0..5 in every set
    assert [p.name for p in held] == [f"{s}/{i:03d}" for s in ("msrs", "llvip", "roadscene") for i in (1, 4)]
    val = holdout_pairs(held, pairs=1, crop=48)  # the smallest even crop 4-scale VIF can score is 42
    assert [n for n, _, _ in val] == ["msrs/001", "llvip/001", "roadscene/001"]
    assert all(ir.shape == (48, 48) and rgb.shape == (48, 48, 3) for _, ir, rgb in val)
    with pytest.raises(InputError, match="data.holdout: 6 pairs per set would leave set 'msrs'"):
        split_holdout(pairs, 6)


def test_validation_weighs_every_held_out_set_equally(tmp_path: Path) -> None:
    from lutfuse_deploy.models.mmdrfuse import MMDRStudent
    from lutfuse_deploy.train.validate import validate

    pairs = collect_pairs(set_folders(make_train_data(tmp_path, pairs_per_set=4), ["msrs", "llvip"]))
    _, held = split_holdout(pairs, 3)
    val = holdout_pairs(held, pairs=3, crop=0)[:4]  # 3 msrs pairs, 1 llvip pair
    torch.manual_seed(0)
    model = MMDRStudent().eval()
    w = {"SF": 1.0}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same pair fuses to the same bits in every call (several
    try:                      # threads on a loaded machine moved SF in the 6th digit between calls)
        msrs, _ = validate(model, val[:3], w)
        llvip, _ = validate(model, val[3:], w)
        both, score = validate(model, val, w)
        pooled = np.mean([validate(model, [v], w)[0]["SF"] for v in val])
    finally:
        torch.set_num_threads(threads)
    assert both["SF"] == pytest.approx((msrs["SF"] + llvip["SF"]) / 2) and score == pytest.approx(both["SF"])
    assert both["SF"] != pytest.approx(pooled)  # not the plain mean over pairs


def _stream(root: Path, **kw) -> CropStream:
    pairs = collect_pairs(set_folders(root, ["msrs", "llvip", "roadscene"]))
    spec = StreamSpec(**{"crop": 32, "flip": True, "seed": 3, **kw})
    return CropStream(PairStore(pairs, cache=True), spec)


def test_stream_is_seeded_and_stateless(tmp_path: Path) -> None:
    root = make_train_data(tmp_path)
    a, b = _stream(root), _stream(root)
    for i in (0, 5, 17):
        x, y = a[i], b[i]
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert x["ir"].shape == (1, 32, 32) and x["rgb"].shape == (3, 32, 32) and x["gray"].dtype == torch.uint8
    rgb = x["rgb"].permute(1, 2, 0).numpy()
    pil_luma = np.array(Image.fromarray(np.ascontiguousarray(rgb)).convert("L"))
    assert np.array_equal(x["gray"][0].numpy(), pil_luma)  # PIL luma of the same crop
    other = _stream(root, seed=4)
    assert not all(torch.equal(a[i]["ir"], other[i]["ir"]) for i in range(4))
    ranks = [_stream(root, rank=r, world=2) for r in (0, 1)]
    assert not torch.equal(ranks[0][0]["ir"], ranks[1][0]["ir"])


def test_patch_pool_is_split_between_ranks(tmp_path: Path) -> None:
    root = make_train_data(tmp_path)
    seen = [{int(_stream(root, rank=r, world=2, patches=6)[i]["patch"]) for i in range(12)} for r in (0, 1)]
    assert seen[0] == {0, 2, 4} and seen[1] == {1, 3, 5}
    s = _stream(root, patches=6, flip=False)
    first = {int(s[i]["patch"]): s[i]["ir"] for i in range(6)}
    again = {int(s[i]["patch"]): s[i]["ir"] for i in range(6, 12)}  # next epoch, same patches
    assert all(torch.equal(first[p], again[p]) for p in first)


def test_gradient_and_intensity_losses_prefer_the_richer_fusion() -> None:
    torch.manual_seed(0)
    ir, vi = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    blur = torch.nn.functional.avg_pool2d(torch.maximum(ir, vi), 3, 1, 1)
    assert gradient_loss(torch.maximum(ir, vi), ir, vi) < gradient_loss(blur, ir, vi)


def test_max_rule_init_is_the_max_fusion_and_still_trains() -> None:
    from lutfuse_deploy.models import MMDRStudent
    from lutfuse_deploy.train.mini import init_max_rule

    torch.manual_seed(0)
    student = MMDRStudent()
    init_max_rule(student)
    ir, vi = torch.rand(2, 1, 24, 24) * 255, torch.rand(2, 1, 24, 24) * 255
    out = student(ir, vi)
    torch.testing.assert_close(out, torch.tanh(2 * torch.maximum(ir, vi) / 255 - 1), rtol=0, atol=1e-6)
    out.mean().backward()  # off-centre taps start at zero but are not stuck there
    assert student.conv1[1].weight.grad[:, :, 0, 0].abs().sum() > 0
    assert student.conv2[1].weight.grad[:, :, 0, 0].abs().sum() > 0


def test_digestible_map_ignores_scale_and_width() -> None:
    torch.manual_seed(0)
    t = torch.relu(torch.randn(2, 4, 8, 8))
    assert digestible_loss(3.0 * t, t) < 1e-10
    wide = torch.cat([t, torch.zeros(2, 60, 8, 8)], dim=1)
    assert digestible_loss(t, wide) < 1e-10  # channel sum: a 4-channel student can match 64 channels
    assert torch.allclose(attention_map(t).norm(dim=1), torch.ones(2))
    assert digestible_loss(t, torch.relu(torch.randn(2, 4, 8, 8))) > 0.01


def test_table_regularisers() -> None:
    ramp = torch.arange(5.0)[:, None, None, None].expand(5, 5, 5, 5)
    assert table_monotonic(ramp) == 0
    assert table_monotonic(-ramp) > 0
    assert table_tv(torch.ones(5, 5, 5, 5)) == 0 and table_tv(ramp) > 0


def test_ir_curvature_is_zero_only_for_a_table_linear_in_ir() -> None:
    torch.manual_seed(0)
    ir = torch.arange(6.0)
    other = torch.rand(6, 6, 6, 1)  # any dependence on y, g and the context
    linear = other + 0.3 * ir * (1 + other)  # linear in IR, with a slope that varies with the rest
    assert table_ir_curvature(linear) == pytest.approx(0.0, abs=1e-10)
    assert table_ir_curvature(other + 0.05 * ir**2) > 0
    bumpy = linear.clone()
    bumpy[..., 3] += 0.1  # one node off the line
    assert table_ir_curvature(bumpy) > 0
    assert table_ir_curvature(torch.rand(6, 6, 6, 6)) > 0


def test_flat_detail_penalises_noise_only_where_both_sources_are_flat() -> None:
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 48), indexing="ij")
    vi = (0.3 + 0.2 * xx)[None, None]  # a smooth sky
    ir = (0.2 + 0.1 * yy)[None, None].clone()
    noise = 0.01 * torch.randn_like(vi)
    edge = 0.15
    assert flat_detail_loss(vi, ir, vi, edge) == pytest.approx(0.0, abs=1e-7)  # as flat as the visible
    assert flat_detail_loss(vi + noise, ir, vi, edge) > 0.01  # the IR camera's noise copied into the sky
    ir[..., 24:] += 0.5  # a real IR edge (a warm object): copying it is not penalised
    assert flat_detail_loss(vi + (ir > 0.5).float() * 0.5, ir, vi, edge) == pytest.approx(0.0, abs=1e-7)


def test_perceptual_term_reads_a_local_vgg_file_only(tmp_path: Path) -> None:
    from lutfuse_deploy.train.perceptual import Perceptual, vgg19_features

    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in vgg19_features()[:9].state_dict().items()}
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    term = Perceptual(path, depths=(4, 9))
    ir, vi = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    fused = torch.maximum(ir, vi).requires_grad_(True)
    loss = term(fused, ir, vi)
    loss.backward()
    assert torch.isfinite(loss) and fused.grad is not None
    assert term(torch.zeros_like(ir), ir, vi) > loss  # black output is further from the sources
    with pytest.raises(ConfigError, match="loss.vgg_weights: .*no such file"):
        Perceptual(tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="loss.vgg_weights: not VGG-19 features"):
        Perceptual(path)  # the default taps go down to layer 36; this file stops at 9
