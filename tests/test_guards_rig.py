"""rig/ limits at both sides of each boundary (sizes, coverage, overlap box, point positions, the
outlier threshold) and the homography's normalisation, with rigs whose numbers are worked by hand:
an identity homography maps the IR's outer pixel centres onto a (w-1) x (h-1) box of the visible frame."""

from __future__ import annotations

import numpy as np
import pytest

from lutfuse_deploy.errors import RigError
from lutfuse_deploy.rig.file import rig_from_dict
from lutfuse_deploy.rig.points import fit_points

EYE = np.eye(3).tolist()


def _rig(ir, vi, h=EYE, **extra):
    return rig_from_dict({"ir_size": list(ir), "vi_size": list(vi), "homography": h, **extra}, "r.yaml")


def test_cameras_of_3x3_pixels_are_the_smallest():
    assert _rig((3, 3), (3, 3)).ir_size == (3, 3)
    for ir in ((2, 3), (3, 2)):
        with pytest.raises(RigError, match="smaller than 3x3"):
            _rig(ir, (3, 3))


def test_coverage_of_exactly_five_percent_is_enough():
    # IR 5x6 -> a 4 x 5 box = 20 px of the 20 x 20 = 400 px visible frame: 5.0 %
    assert _rig((5, 6), (20, 20)).coverage() == 0.05
    with pytest.raises(RigError, match=r"covers 4\.0% of the visible frame"):
        _rig((5, 5), (20, 20))  # 16 / 400
    with pytest.raises(RigError, match=r"covers 1\.0% of the visible frame"):
        _rig((3, 3), (20, 20))  # 4 / 400


def test_overlap_box_of_eight_pixels_is_the_smallest():
    rig = _rig((8, 8), (20, 20), output="overlap")  # 49 / 400 covered
    assert rig.output_box() == (0, 0, 8, 8)
    shifted = _rig((9, 8), (20, 20), [[1, 0, 2.5], [0, 1, 3], [0, 0, 1]], output="overlap")
    assert shifted.output_box() == (3, 3, 8, 8)  # IR centres x 2.5..10.5: visible pixels 3..10
    with pytest.raises(RigError, match="the overlap box is 7x7, too small"):
        _rig((7, 7), (20, 20), output="overlap")


def test_homography_is_normalised_to_h22_one():
    h = [[-1.0, 0.0, -2.0], [0.0, -1.0, -3.0], [0.0, 0.0, -1.0]]  # the same map as a translation by (2, 3)
    rig = _rig((10, 10), (20, 20), h)
    np.testing.assert_array_equal(rig.homography, [[1, 0, 2], [0, 1, 3], [0, 0, 1]])


def _identity_points(extra):
    base = [(10.0, 5.0), (50.0, 8.0), (55.0, 40.0), (12.0, 42.0), (30.0, 20.0), (20.0, 30.0), (40.0, 25.0)]
    return np.array([(x, y, x, y) for x, y in base + extra])


@pytest.mark.parametrize(("x", "y", "ok"), [(-0.5, 10.0, True), (63.5, 10.0, True), (20.0, 47.5, True),
                                            (-0.6, 10.0, False), (63.6, 10.0, False), (20.0, 47.6, False)])
def test_clicks_anywhere_on_an_edge_pixel_are_inside(x, y, ok):
    points = _identity_points([(x, y)])
    if ok:
        fit = fit_points(points, (64, 48), (64, 48))
        assert fit.residuals.max() < 1e-6
    else:
        with pytest.raises(RigError, match="1 ir point\\(s\\) outside the 64x48 ir image"):
            fit_points(points, (64, 48), (64, 48))


def test_nearly_collinear_points_are_refused_before_fitting():
    rng = np.random.default_rng(0)
    t = np.linspace(2, 60, 8)
    ir = np.stack([t, 0.5 * t + 3 + rng.normal(0, 1e-3, t.size)], axis=1)  # 1e-3 px off one line
    with pytest.raises(RigError, match="the ir points lie on one line"):
        fit_points(np.concatenate([ir, ir], axis=1), (64, 48), (64, 48))


def test_a_click_within_the_outlier_threshold_is_kept():
    rng = np.random.default_rng(3)
    vi = rng.uniform([2, 2], [61, 45], size=(12, 2))
    points = np.concatenate([vi, vi], axis=1)
    points[5, 2] += 4.0  # 4 px off: sloppy, under the 5 px that makes a wrong click
    fit = fit_points(points, (64, 48), (64, 48))
    assert fit.outliers == [] and fit.residuals.max() < 5.0
    points[5, 2] += 3.0  # 7 px off: wrong
    assert fit_points(points, (64, 48), (64, 48)).outliers == [5]
