"""The flat-region noise estimate: zero on clean ramps, the known sigma of Gaussian noise, rises with noise."""

from __future__ import annotations

import numpy as np
import pytest

from lutfuse_deploy.metrics.noise import IR_EDGE, VI_EDGE, flat_mask, flat_noise, noise_sigma


def _ramp(h: int = 192, w: int = 256) -> np.ndarray:
    return np.tile(np.linspace(20.0, 200.0, w), (h, 1)) + np.linspace(0.0, 30.0, h)[:, None]


def test_a_clean_ramp_has_no_noise() -> None:
    ramp = _ramp()
    assert noise_sigma(ramp) == pytest.approx(0.0, abs=1e-9)
    assert flat_noise(ramp, ramp, ramp) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("sigma", [1.0, 3.0, 8.0])
def test_reads_the_sigma_of_white_gaussian_noise(sigma: float) -> None:
    rng = np.random.default_rng(int(sigma))
    ramp = _ramp()
    noisy = ramp + rng.normal(0.0, sigma, ramp.shape)
    assert noise_sigma(noisy) == pytest.approx(sigma, rel=0.05)
    assert flat_noise(noisy, ramp, ramp) == pytest.approx(sigma, rel=0.05)


def test_rises_with_added_noise() -> None:
    rng = np.random.default_rng(0)
    ramp, unit = _ramp(), rng.normal(0.0, 1.0, _ramp().shape)
    values = [flat_noise(ramp + s * unit, ramp, ramp) for s in (0.5, 1.0, 2.0, 4.0)]
    assert all(a < b for a, b in zip(values, values[1:]))


def test_edges_of_either_source_are_not_flat() -> None:
    ramp = _ramp()
    step = ramp.copy()
    step[:, 128:] += 4 * VI_EDGE  # far above the visible threshold
    ir_step = ramp.copy()
    ir_step[96:, :] += IR_EDGE  # a Sobel magnitude of 4 x IR_EDGE
    assert flat_mask(ramp, ramp).mean() > 0.8
    assert not flat_mask(ramp, step)[:, 124:132].any()
    assert not flat_mask(ir_step, ramp)[92:100, :].any()
    assert flat_mask(ramp, step)[10:-10, 10:110].all()  # only near the edge
    # the fused copy of a real edge is no noise: the mask keeps it out of the estimate
    assert flat_noise(step, ramp, step) == pytest.approx(0.0, abs=1e-9)


def test_too_few_flat_pixels_give_nan() -> None:
    rng = np.random.default_rng(0)
    texture = rng.uniform(0, 255, (64, 64))
    assert np.isnan(flat_noise(texture, texture, texture))
