"""Recipe checks at both sides of each boundary: even crops (training and validation), the smallest
validation crop 4-scale VIF can score, 0 as "whole image", value bounds, types and cross-checks."""

from __future__ import annotations

import pytest

from lutfuse_deploy.errors import ConfigError
from lutfuse_deploy.metrics.fusion import VIF_MIN_SIDE
from lutfuse_deploy.train.config import recipe_from_dict

SMALLEST_VAL_CROP = VIF_MIN_SIDE + VIF_MIN_SIDE % 2  # the smallest even side VIF can score


def _recipe(kind="lut", **sections):
    return recipe_from_dict({"kind": kind, **sections}, "r.yaml")


@pytest.mark.parametrize("crop", [0, SMALLEST_VAL_CROP, 256])
def test_even_validation_crops_from_the_vif_minimum_or_zero_are_accepted(crop):
    assert _recipe(val={"crop": crop}).val.crop == crop


@pytest.mark.parametrize(("crop", "needle"), [
    (SMALLEST_VAL_CROP + 1, "val.crop: must be even"),
    (257, "val.crop: must be even"),
    (SMALLEST_VAL_CROP - 2, f"below the {VIF_MIN_SIDE} px the validation metrics need"),
    (2, f"below the {VIF_MIN_SIDE} px the validation metrics need"),
])
def test_odd_or_too_small_validation_crops_are_refused(crop, needle):
    with pytest.raises(ConfigError, match=needle):
        _recipe(val={"crop": crop})


@pytest.mark.parametrize("kind", ["teacher", "lut", "mini"])
def test_training_crops_are_even_and_at_least_16(kind):
    assert _recipe(kind, data={"crop": 16}).data.crop == 16
    with pytest.raises(ConfigError, match="data.crop: must be even"):
        _recipe(kind, data={"crop": 17})
    with pytest.raises(ConfigError, match="data.crop: expected a number >= 16, got 14"):
        _recipe(kind, data={"crop": 14})


def test_upper_bounds_are_inclusive():
    assert _recipe(loss={"flat_edge": 1.0}).loss.flat_edge == 1.0
    with pytest.raises(ConfigError, match="loss.flat_edge: expected a number <= 1.0, got 1.01"):
        _recipe(loss={"flat_edge": 1.01})


def test_flat_detail_needs_a_positive_flat_edge():
    assert _recipe(loss={"flat_detail": 0.5, "flat_edge": 0.01}).loss.flat_detail == 0.5
    assert _recipe(loss={"flat_detail": 0.0, "flat_edge": 0.0}).loss.flat_edge == 0.0  # off: no constraint
    with pytest.raises(ConfigError, match="loss.flat_edge: must be > 0 when loss.flat_detail is on"):
        _recipe(loss={"flat_detail": 0.5, "flat_edge": 0.0})


def test_holdout_and_a_validation_folder_exclude_each_other():
    assert _recipe(data={"holdout": 1}).data.holdout == 1
    assert _recipe(val={"root": "v"}).val.root == "v"
    with pytest.raises(ConfigError, match="val.root: the recipe validates on its held-out pairs"):
        _recipe(data={"holdout": 1}, val={"root": "v"})


@pytest.mark.parametrize(("section", "needle"), [
    ({"steps": True}, "steps: expected an integer, got True"),
    ({"optim": {"lr": float("inf")}}, "optim.lr: expected a finite number"),
    ({"optim": {"lr": float("nan")}}, "optim.lr: expected a finite number"),
    ({"data": {"flip": 1}}, "data.flip: expected true or false, got 1"),
])
def test_types_are_strict(section, needle):
    with pytest.raises(ConfigError, match=needle):
        _recipe(**section)
    assert _recipe(steps=1).steps == 1
