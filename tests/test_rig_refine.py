"""Refining a rig from image content: synthetic pairs with a known homography (small, no shared data)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import lutfuse_deploy.rig.refine as refine
from lutfuse_deploy.errors import RigError
from lutfuse_deploy.rig.file import Rig, apply_homography, corner_error_px, load_rig, normalise, save_rig
from lutfuse_deploy.rig.frames import read_frame_pairs
from lutfuse_deploy.rig.refine import RefineOptions, refine_rig, start_off_by
from tests.conftest import assert_one_line_error, run_cli

IR_SIZE, VI_SIZE = (128, 96), (160, 120)
# the IR frame seen a little larger, rotated a little and with some perspective in the visible frame
TRUTH = normalise(np.array([[1.15, 0.04, 6.0], [-0.03, 1.12, 4.0], [1e-4, 2e-4, 1.0]]))
FAST = RefineOptions(steps=(25, 20, 20), search_px=8.0, starts=2, points=3000)


def _scene(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """A scene in visible pixel coordinates: discs and boxes of random grey levels (edges of every direction)."""
    rng = np.random.default_rng(seed)
    out = np.full(x.shape, 60.0)
    for _ in range(14):
        cx, cy, r, v = rng.uniform(0, 160), rng.uniform(0, 120), rng.uniform(6, 22), rng.uniform(0, 255)
        if rng.random() < 0.5:
            out = np.where((x - cx) ** 2 + (y - cy) ** 2 < r ** 2, v, out)
        else:
            out = np.where((abs(x - cx) < r) & (abs(y - cy) < 0.7 * r), v, out)
    return out


def synthetic_rig_pair(seed: int = 0, ir_size: tuple[int, int] = IR_SIZE,
                       vi_size: tuple[int, int] = VI_SIZE) -> tuple[Rig, np.ndarray, np.ndarray]:
    """(true rig, IR uint8, visible RGB uint8): the IR sees the scene through TRUTH with its contrast
    inverted and compressed (thermal and visible intensities are unrelated; edges are shared)."""
    truth = Rig(ir_size, vi_size, TRUTH)
    vy, vx = np.mgrid[0:vi_size[1], 0:vi_size[0]].astype(np.float64)
    vi = _scene(vx, vy, seed)
    iy, ix = np.mgrid[0:ir_size[1], 0:ir_size[0]].astype(np.float64)
    at = apply_homography(TRUTH, np.stack([ix.ravel(), iy.ravel()], axis=1))
    ir = 230 - 0.6 * _scene(at[:, 0], at[:, 1], seed).reshape(ix.shape)
    vi_rgb = np.repeat(vi[..., None], 3, axis=-1) * np.array([1.0, 0.9, 0.8])
    return truth, np.clip(ir, 0, 255).astype(np.uint8), np.clip(vi_rgb, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("seed", [0, 1])
def test_refinement_gets_closer_from_a_perturbed_start(seed):
    truth, ir, vi = synthetic_rig_pair(seed)
    start = start_off_by(truth, 6.0, np.random.default_rng(seed))
    assert corner_error_px(start.homography, truth) == pytest.approx(6.0)
    out = refine_rig(start, [(ir, vi)], FAST)
    assert out.score > out.score_start
    assert corner_error_px(out.rig.homography, truth) < 1.5
    assert out.rig.made["method"] == "refine" and out.rig.made["score"] == pytest.approx(out.score, abs=1e-6)
    assert out.rig.ir_size == IR_SIZE and out.rig.output == start.output


def test_pooled_frames_share_one_rig():
    pairs = [synthetic_rig_pair(s) for s in (2, 3)]
    start = start_off_by(pairs[0][0], 6.0, np.random.default_rng(5))
    out = refine_rig(start, [(ir, vi) for _, ir, vi in pairs], FAST)
    assert corner_error_px(out.rig.homography, pairs[0][0]) < 1.5
    assert out.rig.made["frames"] == 2


def test_a_start_the_score_cannot_improve_is_refused():
    truth, ir, vi = synthetic_rig_pair(0)
    flat_ir = np.full_like(ir, 90)  # an IR frame with no edges: every rig scores 0
    with pytest.raises(RigError, match="no better than the start"):
        refine_rig(start_off_by(truth, 6.0, np.random.default_rng(0)), [(flat_ir, vi)], FAST)


def test_frames_without_edges_are_refused_before_searching():
    truth, ir, vi = synthetic_rig_pair(0)
    with pytest.raises(RigError, match="no edges"):
        refine_rig(truth, [(ir, np.full_like(vi, 140))], FAST)


def test_a_final_score_worse_than_the_start_is_refused(monkeypatch):
    truth, ir, vi = synthetic_rig_pair(0)

    def astray(level, corners, ir_points, offsets, lr, steps):  # a search that wanders off
        return offsets + 9.0, 1.0

    monkeypatch.setattr(refine, "_adam", astray)
    with pytest.raises(RigError, match="no better than the start"):
        refine_rig(truth, [(ir, vi)], FAST)


def test_frames_of_another_size_are_refused():
    truth, ir, vi = synthetic_rig_pair(0)
    with pytest.raises(RigError, match="the rig says 128x96"):
        refine_rig(truth, [(ir[:90], vi)], FAST)


def _write_pair(folder, name, ir, vi):
    (folder / "ir").mkdir(parents=True, exist_ok=True)
    (folder / "vi").mkdir(parents=True, exist_ok=True)
    Image.fromarray(ir).save(folder / "ir" / f"{name}.png")
    Image.fromarray(vi).save(folder / "vi" / f"{name}.png")


def test_frame_pairs_from_folders_are_spread(tmp_path):
    truth, ir, vi = synthetic_rig_pair(0)
    for i in range(5):
        _write_pair(tmp_path, f"{i:03d}", ir, vi)
    frames, names = read_frame_pairs(tmp_path / "ir", tmp_path / "vi", 3)
    assert names == ["000", "002", "004"] and frames[0][0].shape == (96, 128) and frames[0][1].shape == (120, 160, 3)


def test_calibrate_refine_cli(tmp_path):
    truth, ir, vi = synthetic_rig_pair(1, (96, 72), (120, 90))  # smaller: the CLI refines with its defaults
    _write_pair(tmp_path, "a", ir, vi)
    start = start_off_by(truth, 6.0, np.random.default_rng(1))
    save_rig(start, tmp_path / "rig0.yaml")
    args = ["calibrate", "--ir", tmp_path / "ir" / "a.png", "--vi", tmp_path / "vi" / "a.png"]
    proc = run_cli(*args, "--init", tmp_path / "rig0.yaml", "--refine", "-o", tmp_path / "rig.yaml",
                   "--overlay", tmp_path / "ov.png")
    assert proc.returncode == 0, proc.stderr
    assert "score" in proc.stdout and "->" in proc.stdout
    rig = load_rig(tmp_path / "rig.yaml")
    assert corner_error_px(rig.homography, truth) < corner_error_px(start.homography, truth) / 2
    assert rig.made["method"] == "refine" and (tmp_path / "ov.png").is_file()
    # refused: flat frames give the score nothing to line up; nothing is written
    flat = tmp_path / "flat"
    _write_pair(flat, "a", np.full_like(ir, 90), np.full_like(vi, 140))
    proc = run_cli("calibrate", "--ir", flat / "ir", "--vi", flat / "vi", "--init", tmp_path / "rig0.yaml",
                   "--refine", "-o", tmp_path / "bad.yaml", "--json")
    assert_one_line_error(proc, "refinement refused")
    assert not (tmp_path / "bad.yaml").exists()


def test_calibrate_refine_refusals(tmp_path):
    truth, ir, vi = synthetic_rig_pair(0)
    _write_pair(tmp_path, "a", ir, vi)
    save_rig(truth, tmp_path / "rig0.yaml")
    args = ["calibrate", "--ir", tmp_path / "ir" / "a.png", "--vi", tmp_path / "vi" / "a.png"]
    assert_one_line_error(run_cli(*args, "--refine", "-o", tmp_path / "r.yaml"), "--init RIG")
    assert_one_line_error(run_cli(*args, "--init", tmp_path / "rig0.yaml", "-o", tmp_path / "r.yaml"), "add --refine")
    assert_one_line_error(run_cli(*args, "--init", tmp_path / "rig0.yaml", "--refine", "--output", "overlap",
                                  "-o", tmp_path / "r.yaml"), "--output does not apply")
    assert_one_line_error(run_cli(*args, "--check", tmp_path / "rig0.yaml", "--frames", "3",
                                  "-o", tmp_path / "c.png"), "--frames does not apply")
    assert_one_line_error(run_cli(*args, "--init", tmp_path / "rig0.yaml", "--refine", "-o",
                                  tmp_path / "rig0.yaml"), "input")
    assert not (tmp_path / "r.yaml").exists()
