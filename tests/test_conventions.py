"""Numerical conventions pinned by exact tests on tiny synthetic inputs with hand-computed values,
so they hold in a clone without the shared data: BT.601 luma and YCbCr, PIL's gray rounding, and
the normalisations of the fusion metrics (SSIM covariance, SD, SF, AG, MI, PSNR)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from lutfuse_deploy.metrics import fusion
from lutfuse_deploy.models.lut import luminance, ycbcr_to_rgb


def _rgb(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).view(1, 3, 1, 1)


def test_bt601_luma():
    assert luminance(_rgb(1, 0, 0)).item() == pytest.approx(0.299, abs=1e-12)
    assert luminance(_rgb(0, 1, 0)).item() == pytest.approx(0.587, abs=1e-12)
    assert luminance(_rgb(0, 0, 1)).item() == pytest.approx(0.114, abs=1e-12)


@pytest.mark.parametrize(
    ("rgb", "y", "want"),
    [
        # fused RGB = fused Y + (visible RGB - visible Y): red has Y 0.299
        ((1.0, 0.0, 0.0), 0.5, (1.201, 0.201, 0.201)),
        # Y(0.2, 0.4, 0.8) = 0.0598 + 0.2348 + 0.0912 = 0.3858
        ((0.2, 0.4, 0.8), 0.25, (0.0642, 0.2642, 0.6642)),
        ((0.3, 0.3, 0.3), 0.9, (0.9, 0.9, 0.9)),  # gray carries no chroma
    ],
)
def test_ycbcr_recombination_constants(rgb, y, want):
    """The release's 6-digit Cb/Cr constants make the recombination exact to 3e-7."""
    got = ycbcr_to_rgb(torch.full((1, 1, 1, 1), y, dtype=torch.float64), _rgb(*rgb)).view(3).tolist()
    assert got == pytest.approx(want, abs=1e-6)


def test_ycbcr_round_trip_returns_the_visible_image():
    vi = torch.rand(1, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(ycbcr_to_rgb(luminance(vi), vi).numpy(), vi.numpy(), atol=1e-6)


def test_gray_is_pil_luma_rounded_half_up():
    # 587 * 255 / 1000 = 149.685 -> 150 (truncation would give 149); 299 * 255 / 1000 = 76.245 -> 76
    colours = np.array([[[0, 255, 0], [255, 0, 0], [0, 0, 255], [200, 100, 50], [1, 1, 1], [255, 255, 255]]],
                       np.uint8)
    got = fusion.to_gray(colours)
    assert got.tolist() == [[150, 76, 29, 124, 1, 255]]
    np.testing.assert_array_equal(got, np.asarray(Image.fromarray(colours).convert("L")))


def test_ssim_uses_the_sample_covariance():
    """7x7 images: one valid window covering all 49 pixels. f is zero but f[0, 0] = a, the IR and
    visible images are 2f: means a/49 and 2a/49, sample variances a^2/49 and 4a^2/49, covariance
    2a^2/49 (the population ones are 48/49 of these)."""
    a, n, rng = 0.7, 49, 2.0
    f = np.zeros((7, 7))
    f[0, 0] = a
    ux, uy = a / n, 2 * a / n
    vx, vy, vxy = a * a / n, 4 * a * a / n, 2 * a * a / n
    c1, c2 = (0.01 * rng) ** 2, (0.03 * rng) ** 2
    one = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    assert one == pytest.approx(0.6965, abs=1e-4)  # 0.856322 * 0.813433
    assert fusion.ssim(f, 2 * f, 2 * f, data_range=rng) == pytest.approx(2 * one, rel=1e-12)


def test_sd_is_the_population_deviation():
    assert fusion.standard_deviation(np.array([[0.0, 2.0], [0.0, 2.0]])) == 1.0


def test_sf_averages_each_difference_over_its_own_support():
    # horizontal differences 3, 0 per row: mean 4.5; vertical ones all 0
    f = np.array([[0.0, 3.0, 3.0], [0.0, 3.0, 3.0]])
    assert fusion.spatial_frequency(f) == pytest.approx(math.sqrt(4.5), rel=1e-12)


def test_ag_halves_the_squared_gradient():
    f = np.tile(np.array([0.0, 2.0, 4.0]), (3, 1))  # gx = 2 everywhere (central and one-sided), gy = 0
    assert fusion.average_gradient(f) == pytest.approx(math.sqrt(2.0), rel=1e-12)


def test_mi_is_in_nats():
    f = np.array([[0.0, 1.0], [0.0, 1.0]])  # one bit of entropy, shared with A and B: 2 ln 2
    assert fusion.mutual_information(f, f, f) == pytest.approx(2 * math.log(2), rel=1e-12)


def test_psnr_peak_is_the_fused_maximum():
    f = np.array([[0.0, 100.0], [100.0, 100.0]])
    # MSE 100 against both, peak max(f) = 100: 10 log10(100^2 / 100) = 20 dB
    assert fusion.psnr(f, f + 10, f - 10) == pytest.approx(20.0, rel=1e-12)
