"""The rig file, its validation, point fitting and the calibrate command (synthetic rigs, no shared data)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lutfuse_deploy.errors import RigError
from lutfuse_deploy.rig.file import (
    Rig,
    apply_homography,
    corner_error_px,
    load_rig,
    rig_from_dict,
    save_rig,
)
from lutfuse_deploy.rig.points import fit_points, read_points, write_points
from tests.conftest import assert_one_line_error, run_cli

# a mild projective warp: a 64x48 IR frame onto a 80x60 visible frame
H = np.array([[1.18, 0.02, 3.0], [-0.01, 1.2, 2.0], [1e-4, -2e-4, 1.0]])
GOOD = {"ir_size": [64, 48], "vi_size": [80, 60], "homography": H.tolist()}


def test_hand_written_rig_with_three_keys_is_valid(tmp_path):
    path = tmp_path / "rig.yaml"
    path.write_text("ir_size: [64, 48]\nvi_size: [80, 60]\nhomography:\n"
                    + "".join(f"  - [{', '.join(map(str, row))}]\n" for row in H.tolist()))
    rig = load_rig(path)
    assert rig.ir_size == (64, 48) and rig.vi_size == (80, 60) and rig.output == "visible"
    np.testing.assert_allclose(rig.homography, H)
    assert rig.out_size == (80, 60)


def test_save_and_load_round_trip(tmp_path):
    rig = rig_from_dict({**GOOD, "output": "overlap", "made": {"method": "manual"}})
    back = load_rig(save_rig(rig, tmp_path / "r.yaml"))
    np.testing.assert_allclose(back.homography, rig.homography, rtol=1e-11)
    assert back.output == "overlap" and back.made == {"method": "manual"}
    assert back.output_box() == rig.output_box()


@pytest.mark.parametrize("change, needle", [
    ({"homography": [[1, 0], [0, 1]]}, "must be 3x3"),
    ({"homography": [[1, 0, 0], [0, float("nan"), 0], [0, 0, 1]]}, "non-finite"),
    ({"homography": [[1, 2, 0], [2, 4, 0], [0, 0, 1]]}, "not invertible"),
    ({"homography": [[-1, 0, 70], [0, 1, 0], [0, 0, 1]]}, "mirrors"),
    ({"homography": [[1, 0, 0], [0, 1, 0], [0.05, 0, -1.5]]}, "infinity"),
    ({"homography": [[0.05, 0, 0], [0, 0.05, 0], [0, 0, 1]]}, "covers"),
    ({"homography": [[1, 0, 500], [0, 1, 0], [0, 0, 1]]}, "covers 0.0%"),
    ({"ir_size": [64]}, "ir_size must be [width, height]"),
    ({"vi_size": [2, 60]}, "smaller than 3x3"),
    ({"vi_size": [80.5, 60]}, "whole pixels"),
    ({"output": "crop"}, "output 'crop'"),
    ({"extra": 1}, "unknown key(s) extra"),
    ({"format": "lutfuse-deploy/rig-v9"}, "newer version"),
])
def test_each_fault_is_named(change, needle):
    with pytest.raises(RigError, match=None) as info:
        rig_from_dict({**GOOD, **change}, "r.yaml")
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_all_faults_in_one_message():
    with pytest.raises(RigError) as info:
        rig_from_dict({"ir_size": [1, 1], "homography": [[1]]}, "r.yaml")
    text = str(info.value)
    for needle in ("ir_size 1x1", "vi_size is missing", "homography must be 3x3"):
        assert needle in text


def test_coverage_boundary():
    # the IR covers exactly a quarter of the visible frame: 40 x 30 of 80 x 60
    scale = np.array([[40 / 64, 0, -0.5 + 0.5 * 40 / 64], [0, 30 / 48, -0.5 + 0.5 * 30 / 48], [0, 0, 1]])
    rig = Rig((64, 48), (80, 60), scale)
    corners = rig.ir_corners_in_vi()
    assert corners[0] == pytest.approx([-0.5 + 40 / 128, -0.5 + 30 / 96])
    # the IR's outer pixel centres span 63/64 x 47/48 of its 40 x 30 footprint
    assert rig.coverage() == pytest.approx((40 * 63 / 64) * (30 * 47 / 48) / (80 * 60))


def test_overlap_box_is_inside_the_ir_frame():
    rig = rig_from_dict({**GOOD, "output": "overlap"})
    x0, y0, w, h = rig.output_box()
    box = np.array([[x0, y0], [x0 + w - 1, y0], [x0 + w - 1, y0 + h - 1], [x0, y0 + h - 1]], float)
    ir = apply_homography(rig.inverse, box)
    assert (ir >= 0).all() and (ir[:, 0] <= 63).all() and (ir[:, 1] <= 47).all()
    # one pixel more on the left or top would leave the IR frame
    assert apply_homography(rig.inverse, np.array([[x0 - 1.0, y0 + h / 2]]))[0, 0] < 0 or x0 == 0


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(RigError, match="no such rig file"):
        load_rig(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("ir_size: [64, 48\n")
    with pytest.raises(RigError, match="not valid YAML"):
        load_rig(bad)


def _pairs(n: int, rng: np.random.Generator, noise: float = 0.0) -> np.ndarray:
    vi = rng.uniform([2, 2], [77, 57], size=(n, 2))
    ir = apply_homography(np.linalg.inv(H), vi)
    return np.concatenate([ir, vi + rng.normal(0, noise, vi.shape) if noise else vi], axis=1)


def test_fit_exact_points_recovers_the_homography():
    rng = np.random.default_rng(0)
    fit = fit_points(_pairs(8, rng), (64, 48), (80, 60))
    truth = rig_from_dict(GOOD)
    assert corner_error_px(fit.rig.homography, truth) < 1e-4
    assert fit.outliers == [] and fit.residuals.max() < 1e-4
    assert fit.rig.made["method"] == "points" and len(fit.rig.made["points"]) == 8


def test_fit_names_the_wrong_click():
    rng = np.random.default_rng(1)
    pts = _pairs(10, rng)
    pts[6, 2] += 6.0  # 6 px off: past the 5 px outlier threshold
    fit = fit_points(pts, (64, 48), (80, 60))
    assert fit.outliers == [6]
    assert fit.rig.made["outliers"] == [7]
    assert corner_error_px(fit.rig.homography, rig_from_dict(GOOD)) < 1e-4


def test_fit_keeps_a_click_within_the_threshold():
    rng = np.random.default_rng(1)
    pts = _pairs(10, rng)
    pts[6, 2] += 3.0  # a sloppy click, not a wrong one
    assert fit_points(pts, (64, 48), (80, 60)).outliers == []


@pytest.mark.parametrize("points, needle", [
    (np.array([[1, 1, 2, 2], [10, 10, 12, 12], [20, 20, 24, 24]], float), "at least 4"),
    (np.array([[i, 2 * i, i + 1, 2 * i + 1] for i in range(1, 9)], float), "on one line"),
    (np.array([[1, 1, 2, 2], [70, 1, 60, 2], [60, 40, 60, 50], [1, 40, 2, 50]], float), "outside the 64x48 ir"),
    (np.array([[1, 1, 2, 2], [60, 1, 90, 2], [60, 40, 60, 50], [1, 40, 2, 50]], float), "outside the 80x60 vi"),
    (np.array([[1, 1, 70, 2], [60, 1, 2, 2], [60, 40, 2, 50], [1, 40, 70, 50]], float), "mirrors"),
])
def test_fit_refuses(points, needle):
    with pytest.raises(RigError, match=needle):
        fit_points(points, (64, 48), (80, 60))


def test_points_csv(tmp_path):
    path = tmp_path / "p.csv"
    write_points(path, np.array([[1, 2, 3, 4.5]]))
    assert read_points(path).tolist() == [[1, 2, 3, 4.5]]
    path.write_text("ir_x,ir_y,vi_x\n1,2,3\n")
    with pytest.raises(RigError, match="missing vi_y"):
        read_points(path)
    path.write_text("ir_x,ir_y,vi_x,vi_y\n1,2,3,four\n")
    with pytest.raises(RigError, match="row 2 is not four numbers"):
        read_points(path)


def _frames(tmp_path):
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (48, 64), dtype=np.uint8)).save(tmp_path / "ir.png")
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(tmp_path / "vi.png")
    write_points(tmp_path / "pts.csv", _pairs(8, rng))


def test_calibrate_from_points_and_check(tmp_path):
    _frames(tmp_path)
    proc = run_cli("calibrate", "--ir", tmp_path / "ir.png", "--vi", tmp_path / "vi.png", "--points",
                   tmp_path / "pts.csv", "-o", tmp_path / "rig.yaml", "--overlay", tmp_path / "ov.png")
    assert proc.returncode == 0, proc.stderr
    assert "fit on 8 of 8 pairs" in proc.stdout
    rig = load_rig(tmp_path / "rig.yaml")
    assert corner_error_px(rig.homography, rig_from_dict(GOOD)) < 5e-3  # the CSV holds 3 decimals
    overlay = np.asarray(Image.open(tmp_path / "ov.png"))
    assert overlay.shape == (60, 80 * 2 + 8, 3)
    proc = run_cli("calibrate", "--ir", tmp_path / "ir.png", "--vi", tmp_path / "vi.png", "--check",
                   tmp_path / "rig.yaml", "-o", tmp_path / "check.png")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "check.png").is_file()


def test_calibrate_reads_16bit_thermal_frames_with_ir16(tmp_path):
    """A radiometric camera's 16-bit frames: refused without --ir16 (naming it), mapped with it, so
    the overlay shows the same 8-bit IR that fuse --ir16 fuses."""
    _frames(tmp_path)
    ramp = (np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 7 + 20000).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ir16.png")
    save_rig(rig_from_dict(GOOD), tmp_path / "rig.yaml")
    args = ["calibrate", "--ir", tmp_path / "ir16.png", "--vi", tmp_path / "vi.png", "--check", tmp_path / "rig.yaml"]
    assert_one_line_error(run_cli(*args, "-o", tmp_path / "no.png"), "16-bit IR", "--ir16", "calibrate")
    assert not (tmp_path / "no.png").exists()
    proc = run_cli(*args, "-o", tmp_path / "c.png", "--ir16", "minmax")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("calibrate", "--ir", tmp_path / "ir16.png", "--vi", tmp_path / "vi.png", "--points",
                   tmp_path / "pts.csv", "-o", tmp_path / "fit.yaml", "--ir16", "linear")
    assert proc.returncode == 0, proc.stderr
    from lutfuse_deploy.io.images import normalise_16bit
    from lutfuse_deploy.rig.frames import read_frame_pair, read_frame_pairs

    want = normalise_16bit(ramp, "minmax")
    assert np.array_equal(read_frame_pair(tmp_path / "ir16.png", tmp_path / "vi.png", "minmax")[0], want)
    (tmp_path / "a" / "ir").mkdir(parents=True)
    (tmp_path / "a" / "vi").mkdir()
    Image.fromarray(ramp).save(tmp_path / "a" / "ir" / "f1.png")
    Image.open(tmp_path / "vi.png").save(tmp_path / "a" / "vi" / "f1.png")
    pairs, _ = read_frame_pairs(tmp_path / "a" / "ir", tmp_path / "a" / "vi", 4, "minmax")
    assert np.array_equal(pairs[0][0], want)


def test_calibrate_refusals(tmp_path):
    _frames(tmp_path)
    args = ["calibrate", "--ir", tmp_path / "ir.png", "--vi", tmp_path / "vi.png"]
    assert_one_line_error(run_cli(*args, "-o", tmp_path / "r.yaml"), "give exactly one of")
    save_rig(rig_from_dict(GOOD), tmp_path / "rig.yaml")
    assert_one_line_error(run_cli(*args, "--check", tmp_path / "rig.yaml", "-o", tmp_path / "c.png",
                                  "--output", "overlap"), "--output does not apply")
    assert_one_line_error(run_cli(*args, "--check", tmp_path / "rig.yaml", "-o", tmp_path / "c.yaml"), ".png")
    # frames of another size than the rig's
    Image.fromarray(np.zeros((40, 64), np.uint8)).save(tmp_path / "small.png")
    proc = run_cli("calibrate", "--ir", tmp_path / "small.png", "--vi", tmp_path / "vi.png", "--check",
                   tmp_path / "rig.yaml", "-o", tmp_path / "c.png")
    assert_one_line_error(proc, "the rig says 64x48")
    assert not (tmp_path / "c.png").exists()
    # an output that is an input is refused before anything is written
    before = (tmp_path / "pts.csv").read_bytes()
    assert_one_line_error(run_cli(*args, "--points", tmp_path / "pts.csv", "-o", tmp_path / "pts.csv"), "input")
    assert (tmp_path / "pts.csv").read_bytes() == before
