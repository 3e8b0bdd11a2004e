"""No-reference noise estimate of a fused image in the regions where both sources are flat.

SF and AG reward any high frequency, so a fusion that copies the IR camera's banded noise into a
flat sky scores *better* on them. This estimate exposes it: in pixels where neither the visible nor
the IR image has an edge, the fused image should be as flat as the visible one, and whatever high
frequency remains there is noise.

Estimator: the robust MAD sigma (Donoho & Johnstone 1994: ``1.4826 · median|x|``) of a Gaussian
high-pass of the image (image minus its Gaussian blur of ``scale`` pixels), over the flat pixels,
divided by the high-pass's gain on white noise, so that white Gaussian noise of sigma ``s`` reads
``s``. The usual finest-scale estimators (Immerkær 1996, the wavelet HH band) look at single-pixel
noise only; an uncooled IR camera's noise is banded over several pixels, and JPEG removes most of
the single-pixel part, so they barely separate a noisy fused sky from a clean one (measured on
RoadScene FLIR_00211: Immerkær 0.48 vs 0.25 for two fusions whose sky differs 8.5 vs 2.8 in standard
deviation; this estimate reads 3 vs 1). Hand-written (a few lines of SciPy): scikit-image's
``estimate_sigma`` is the finest-scale wavelet estimator, takes no mask, and is not a dependency.

Pure NumPy/SciPy, like ``fusion``; images are 2-D arrays on 0..255.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

NOISE_SCALE = 2.0  # Gaussian sigma (pixels) of the high-pass: banded sensor noise spans a few pixels
# Sobel magnitude (0..255 scale) below which a source counts as flat. A step of d gray levels between
# neighbours has Sobel magnitude 4d: 16 is a 4-level step in the visible; IR sensor noise reaches
# ~45 in a flat sky (RoadScene), so 64 (a 16-level step) keeps only real IR edges out.
VI_EDGE = 16.0
IR_EDGE = 64.0
MAD_TO_SIGMA = 1.4826  # 1 / Phi^-1(3/4): the MAD of a Gaussian times this is its sigma
MIN_PIXELS = 64  # fewer flat pixels than this: no estimate (nan)


def sobel_magnitude(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img, dtype=np.float64)
    return np.hypot(ndimage.sobel(a, axis=1), ndimage.sobel(a, axis=0))


def flat_mask(
    ir: np.ndarray, vi: np.ndarray, vi_edge: float = VI_EDGE, ir_edge: float = IR_EDGE, scale: float = NOISE_SCALE
) -> np.ndarray:
    """Pixels flat in both sources, with no edge within 2 ``scale`` (an edge leaks into the high-pass)."""
    flat = (sobel_magnitude(vi) < vi_edge) & (sobel_magnitude(ir) < ir_edge)
    r = int(np.ceil(2 * scale))
    return ndimage.binary_erosion(flat, structure=np.ones((2 * r + 1, 2 * r + 1), bool), border_value=0)


def _white_gain(scale: float) -> float:
    """Standard deviation of the high-pass of unit white noise: the L2 norm of (delta - Gaussian)."""
    r = int(np.ceil(4 * scale))
    delta = np.zeros((2 * r + 1, 2 * r + 1))
    delta[r, r] = 1.0
    return float(np.linalg.norm(delta - ndimage.gaussian_filter(delta, scale, mode="constant", truncate=4.0)))


def noise_sigma(img: np.ndarray, mask: np.ndarray | None = None, scale: float = NOISE_SCALE) -> float:
    """Robust noise sigma (gray levels) of ``img`` over ``mask`` (default: all), away from the border.

    Pixels within the blur's reach of the border (4 ``scale``) are left out: the padding would add
    a high frequency of its own wherever the image is not constant (a ramp, a sky gradient).
    """
    a = np.asarray(img, dtype=np.float64)
    high = a - ndimage.gaussian_filter(a, scale, mode="reflect", truncate=4.0)
    r = int(np.ceil(4 * scale))
    inner = np.zeros(a.shape, bool)
    inner[r:-r, r:-r] = True
    values = high[inner if mask is None else inner & mask]
    if values.size < MIN_PIXELS:
        return float("nan")
    return MAD_TO_SIGMA * float(np.median(np.abs(values))) / _white_gain(scale)


def flat_noise(fused: np.ndarray, ir: np.ndarray, vi: np.ndarray) -> float:
    """Noise sigma of ``fused`` where the IR and the visible gray are both flat (nan if too few pixels)."""
    return noise_sigma(fused, flat_mask(ir, vi))
