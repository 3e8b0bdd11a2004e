"""Fusion quality metrics with the conventions of the CDDFuse Python evaluator.

Papers on infrared-visible fusion report EN/SD/SF/MI/SCD/VIF/Qabf/SSIM computed by
``Zhaozixiang1228/MMIF-CDDFuse:utils/Evaluator.py``; these functions re-implement those formulas,
vectorised, so our numbers compare with published ones (docs/semantics.md §5). Notation: ``a`` = IR,
``b`` = visible gray, ``f`` = fused gray, 2-D arrays on 0..255 (any real dtype; computed in float64).

Deliberate differences from the evaluator, and one ambiguity of the conventions resolved its way:

- Arithmetic is float64. The evaluator gets float32 arrays from ``cv2``; its VIF is float64 anyway
  (``convolve2d`` upcasts to the float64 window) but its SSIM (skimage keeps float32), Qabf (float32
  Sobel kernels) and SD stay float32. Measured on three MSRS pairs: SSIM differs by <= 1.3e-5
  relative, SD by <= 1e-7, VIF by ~1e-14.
- MI bins integer values (inputs are rounded); the evaluator's ``sklearn`` call bins every distinct
  value. Identical for 8-bit images, which is all the evaluator ever sees.
- EN clips to 0..255 before binning; the evaluator's ``uint8`` cast would wrap out-of-range values.
- Qabf uses the Sobel of docs/semantics.md §2 for the magnitude but keeps the evaluator's sign of gy for the
  edge angle: it convolves with ``[[1,2,1],[0,0,0],[-1,-2,-1]]``, i.e. correlates with ``-Ky``.
  The sign matters where gx == 0 (angle forced to pi/2); flipping it moved Qabf by 6e-4 relative on
  MSRS 00004N, so we follow the evaluator to stay comparable with papers.
- SSIM takes ``data_range`` explicitly (default 2, the value old skimage inferred for float input and
  that published numbers used); modern skimage refuses float input without it.

Undefined cases follow the evaluator: a correlation with a constant image (CC, SCD) is ``nan``,
Qabf with no edges in A or B is ``nan``, PSNR of a perfect match is ``inf``, and VIF of a reference
without any variance is 1.0. The module imports nothing from lutfuse_deploy (pure NumPy/SciPy).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

METRIC_NAMES = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "CC", "PSNR")

_VIF_SIGMA_N_SQ = 2.0
_VIF_EPS = 1e-10
_VIF_WINDOWS = (17, 9, 5, 3)  # N = 2**(5 - scale) + 1 for scales 1..4, sigma = N / 5

# Sobel as in docs/semantics.md §2 (cross-correlation, zero padding 'same'). The evaluator applies
# [[1,2,1],[0,0,0],[-1,-2,-1]] as a *true* convolution, i.e. it correlates with -Ky; the sign only
# matters for the edge angle where gx == 0 (it forces pi/2 whatever the sign of gy), so we keep
# the evaluator's sign to reproduce its numbers.
_SOBEL_X = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
_SOBEL_Y = -np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])
_QABF = {"Tg": 0.9994, "kg": -15.0, "Dg": 0.5, "Ta": 0.9879, "ka": -22.0, "Da": 0.8, "L": 1.0}

_SSIM_WIN = 7
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03


# --------------------------------------------------------------------------- input handling


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 RGB(A) H×W×C -> uint8 H×W with PIL's ``convert('L')`` luma (ITU-R 601-2).

    PIL computes ``(299 R + 587 G + 114 B) / 1000`` in 16-bit fixed point with round-half-up; this
    reproduces it bit for bit. (The evaluator's cv2 float luma + ``np.round`` differs by one level
    on about 0.06 % of colours.) A 2-D or H×W×1 array is returned as H×W unchanged.
    """
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"to_gray expects uint8, got {img.dtype}")
    if img.ndim == 2:
        return img
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f"to_gray expects HxW, HxWx1, HxWx3 or HxWx4, got shape {img.shape}")
    if img.shape[2] == 1:
        return img[:, :, 0]
    rgb = img[:, :, :3].astype(np.uint32)
    luma = (rgb[:, :, 0] * 19595 + rgb[:, :, 1] * 38470 + rgb[:, :, 2] * 7471 + 0x8000) >> 16
    return luma.astype(np.uint8)


def _as_image(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D gray image, got shape {arr.shape}")
    if min(arr.shape) < 2:
        raise ValueError(f"{name} is too small ({arr.shape[1]}x{arr.shape[0]})")
    return arr.astype(np.float64, copy=False)


def _as_triplet(f, a, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f, a, b = _as_image(f, "fused"), _as_image(a, "ir"), _as_image(b, "vi")
    if not f.shape == a.shape == b.shape:
        raise ValueError(f"shape mismatch: fused {f.shape}, ir {a.shape}, vi {b.shape}")
    return f, a, b


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation over all pixels; nan when either image is constant."""
    dx = x - x.mean()
    dy = y - y.mean()
    den = math.sqrt(float(np.sum(dx * dx)) * float(np.sum(dy * dy)))
    return float(np.sum(dx * dy)) / den if den > 0 else math.nan


# --------------------------------------------------------------------------- single-image metrics


def entropy(f: np.ndarray) -> float:
    """EN: Shannon entropy in bits of the 256-bin histogram of ``round(f)`` (clipped to 0..255)."""
    q = np.clip(np.round(_as_image(f, "fused")), 0, 255).astype(np.int64).ravel()
    p = np.bincount(q, minlength=256) / q.size
    p = p[p > 0]
    return float(-np.sum(p * np.log2(p)))


def standard_deviation(f: np.ndarray) -> float:
    """SD: population standard deviation (ddof 0) of all pixels."""
    return float(np.std(_as_image(f, "fused")))


def spatial_frequency(f: np.ndarray) -> float:
    """SF: sqrt(mean(dx²) + mean(dy²)), forward differences, each mean over its own support."""
    x = _as_image(f, "fused")
    return math.sqrt(float(np.mean(np.diff(x, axis=1) ** 2)) + float(np.mean(np.diff(x, axis=0) ** 2)))


def average_gradient(f: np.ndarray) -> float:
    """AG: mean of sqrt((gx² + gy²) / 2) with ``np.gradient`` (central inside, one-sided at edges)."""
    gy, gx = np.gradient(_as_image(f, "fused"))
    return float(np.mean(np.sqrt((gx * gx + gy * gy) / 2.0)))


# --------------------------------------------------------------------------- reference metrics


def _mi_pair(x: np.ndarray, y: np.ndarray) -> float:
    """MI in nats with one bin per integer value (what sklearn's mutual_info_score does on 8-bit)."""
    xi = np.round(x).astype(np.int64).ravel()
    yi = np.round(y).astype(np.int64).ravel()
    xi -= xi.min()
    yi -= yi.min()
    nx, ny = int(xi.max()) + 1, int(yi.max()) + 1
    joint = np.bincount(xi * ny + yi, minlength=nx * ny).reshape(nx, ny).astype(np.float64)
    n = float(xi.size)
    px = joint.sum(axis=1) / n
    py = joint.sum(axis=0) / n
    rows, cols = np.nonzero(joint)
    pxy = joint[rows, cols] / n
    mi = float(np.sum(pxy * np.log(pxy / (px[rows] * py[cols]))))
    return max(mi, 0.0)  # sklearn clips tiny negative round-off to 0


def mutual_information(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """MI: MI(F, A) + MI(F, B) in nats (natural log, as sklearn and docs/semantics.md §5)."""
    f, a, b = _as_triplet(f, a, b)
    return _mi_pair(f, a) + _mi_pair(f, b)


def scd(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """SCD: corr(F - B, A) + corr(F - A, B) (sum of the correlations of differences)."""
    f, a, b = _as_triplet(f, a, b)
    return _corr(f - b, a) + _corr(f - a, b)


def correlation_coefficient(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """CC: mean of corr(A, F) and corr(B, F)."""
    f, a, b = _as_triplet(f, a, b)
    return (_corr(a, f) + _corr(b, f)) / 2.0


def psnr(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """PSNR: 10·log10(max(F)² / MSE), MSE = mean of MSE(F, A) and MSE(F, B); peak is max(F), not 255."""
    f, a, b = _as_triplet(f, a, b)
    mse = (float(np.mean((a - f) ** 2)) + float(np.mean((b - f) ** 2))) / 2.0
    peak_sq = float(np.max(f)) ** 2
    if mse == 0.0:
        return math.inf if peak_sq > 0 else math.nan
    return 10.0 * math.log10(peak_sq / mse) if peak_sq > 0 else -math.inf


# --------------------------------------------------------------------------- VIF


def _gaussian_1d(n: int) -> np.ndarray:
    """Normalised 1-D factor of MATLAB's fspecial('gaussian', n, n/5).

    The 2-D window is the outer product of this with itself. fspecial also zeroes taps below
    eps·max, which never happens for n <= 17 with sigma = n/5 (smallest ratio exp(-5.5)).
    """
    sd = n / 5.0
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sd * sd))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering (what convolve2d(x, win, 'valid') gives for a symmetric window)."""
    r = g.size // 2
    y = ndimage.correlate1d(x, g, axis=0, mode="constant")[r : x.shape[0] - r]
    return ndimage.correlate1d(y, g, axis=1, mode="constant")[:, r : x.shape[1] - r]


def _vif_fits(h: int, w: int) -> bool:
    for scale, n in enumerate(_VIF_WINDOWS):
        if scale > 0:
            h, w = (h - n + 2) // 2, (w - n + 2) // 2  # 'valid' filter, then keep every 2nd sample
        if min(h, w) < n:
            return False
    return True


#: The smallest side 4-scale VIF can score (41 for windows 17/9/5/3); training validation needs it.
VIF_MIN_SIDE = next(s for s in range(max(_VIF_WINDOWS), 1024) if _vif_fits(s, s))


def _vif_check_size(shape: tuple[int, ...]) -> None:
    if not _vif_fits(shape[0], shape[1]):
        raise ValueError(
            f"image {shape[1]}x{shape[0]} is too small for 4-scale VIF (needs >= {VIF_MIN_SIDE}x{VIF_MIN_SIDE})"
        )


def _vifp(ref: np.ndarray, dist: np.ndarray) -> float:
    """Pixel-domain multiscale VIF of ``dist`` against ``ref`` (Sheikh & Bovik ``vifp_mscale``)."""
    num = den = 0.0
    for scale, n in enumerate(_VIF_WINDOWS):
        g = _gaussian_1d(n)
        if scale > 0:
            ref = _filter_valid(ref, g)[::2, ::2]
            dist = _filter_valid(dist, g)[::2, ::2]
        mu1, mu2 = _filter_valid(ref, g), _filter_valid(dist, g)
        s1 = np.maximum(_filter_valid(ref * ref, g) - mu1 * mu1, 0.0)
        s2 = np.maximum(_filter_valid(dist * dist, g) - mu2 * mu2, 0.0)
        s12 = _filter_valid(ref * dist, g) - mu1 * mu2

        # Gain g and distortion variance sv, with the evaluator's guards, in its order.
        gain = s12 / (s1 + _VIF_EPS)
        sv = s2 - gain * s12
        flat_ref = s1 < _VIF_EPS
        gain[flat_ref] = 0.0
        sv[flat_ref] = s2[flat_ref]
        s1[flat_ref] = 0.0
        flat_dist = s2 < _VIF_EPS
        gain[flat_dist] = 0.0
        sv[flat_dist] = 0.0
        negative = gain < 0
        sv[negative] = s2[negative]
        gain[negative] = 0.0
        sv = np.maximum(sv, _VIF_EPS)

        num += float(np.sum(np.log10(1.0 + gain * gain * s1 / (sv + _VIF_SIGMA_N_SQ))))
        den += float(np.sum(np.log10(1.0 + s1 / _VIF_SIGMA_N_SQ)))
    return num / den if den > 0 else 1.0  # evaluator: nan (reference without variance) -> 1.0


def vif(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """VIF: VIF(A, F) + VIF(B, F), 4 scales, Gaussian windows 17/9/5/3 (sigma N/5), sigma_n² = 2."""
    f, a, b = _as_triplet(f, a, b)
    _vif_check_size(f.shape)
    return _vifp(a, f) + _vifp(b, f)


# --------------------------------------------------------------------------- Qabf


def _edge_strength_angle(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel magnitude and angle arctan(gy/gx), with angle pi/2 wherever gx == 0 (as the evaluator)."""
    gx = ndimage.correlate(img, _SOBEL_X, mode="constant", cval=0.0)
    gy = ndimage.correlate(img, _SOBEL_Y, mode="constant", cval=0.0)
    strength = np.sqrt(gx * gx + gy * gy)
    nonzero = gx != 0
    angle = np.full(img.shape, math.pi / 2)
    angle[nonzero] = np.arctan(gy[nonzero] / gx[nonzero])
    return strength, angle


def _edge_preservation(g_src: np.ndarray, a_src: np.ndarray, g_f: np.ndarray, a_f: np.ndarray) -> np.ndarray:
    """Per-pixel Q^{XF} = Q_g · Q_a (Xydeas & Petrović sigmoids)."""
    # Relative strength: the smaller over the larger; where equal the evaluator uses g_f itself
    # (not 1), which only matters for g >= 1 edges where both sigmoids are saturated anyway.
    ratio = g_f.copy()
    src_big = g_src > g_f
    f_big = g_src < g_f
    ratio[src_big] = g_f[src_big] / g_src[src_big]
    ratio[f_big] = g_src[f_big] / g_f[f_big]
    orient = 1.0 - np.abs(a_src - a_f) / (math.pi / 2)
    q_g = _QABF["Tg"] / (1.0 + np.exp(_QABF["kg"] * (ratio - _QABF["Dg"])))
    q_a = _QABF["Ta"] / (1.0 + np.exp(_QABF["ka"] * (orient - _QABF["Da"])))
    return q_g * q_a


def qabf(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Qabf: edge-preservation of A and B in F, weighted by the source edge strength (L = 1).

    Sobel magnitude as docs/semantics.md §2 (zero-padded 'same'); the angle keeps the evaluator's sign of
    gy (see ``_SOBEL_Y``). ``nan`` when neither source has an edge; note that zero padding gives
    a constant non-zero image edges along its border, as in the evaluator.
    """
    f, a, b = _as_triplet(f, a, b)
    g_a, ang_a = _edge_strength_angle(a)
    g_b, ang_b = _edge_strength_angle(b)
    g_f, ang_f = _edge_strength_angle(f)
    w_a, w_b = g_a ** _QABF["L"], g_b ** _QABF["L"]
    den = float(np.sum(w_a + w_b))
    if den == 0:
        return math.nan
    q_af = _edge_preservation(g_a, ang_a, g_f, ang_f)
    q_bf = _edge_preservation(g_b, ang_b, g_f, ang_f)
    return float(np.sum(q_af * w_a + q_bf * w_b)) / den


# --------------------------------------------------------------------------- SSIM


def _ssim_pair(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """Mean SSIM over the 'valid' 7×7 windows, uniform weights, sample (N-1) covariance (skimage defaults)."""

    def box(z: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(z, size=_SSIM_WIN, mode="reflect")

    npix = _SSIM_WIN * _SSIM_WIN
    cov_norm = npix / (npix - 1)
    ux, uy = box(x), box(y)
    vx = cov_norm * (box(x * x) - ux * ux)
    vy = cov_norm * (box(y * y) - uy * uy)
    vxy = cov_norm * (box(x * y) - ux * uy)
    c1 = (_SSIM_K1 * data_range) ** 2
    c2 = (_SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = (_SSIM_WIN - 1) // 2
    return float(s[pad:-pad, pad:-pad].mean())  # windows touching the border are dropped


def ssim(f: np.ndarray, a: np.ndarray, b: np.ndarray, data_range: float = 2.0) -> float:
    """SSIM: SSIM(F, A) + SSIM(F, B).

    ``data_range=2`` reproduces published numbers (old skimage's silent default for float images);
    ``data_range=255`` is the textbook choice for 8-bit data and gives larger, smoother values.
    """
    f, a, b = _as_triplet(f, a, b)
    if min(f.shape) < _SSIM_WIN:
        raise ValueError(f"image {f.shape[1]}x{f.shape[0]} is smaller than the 7x7 SSIM window")
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    return _ssim_pair(f, a, data_range) + _ssim_pair(f, b, data_range)


# --------------------------------------------------------------------------- all at once


def compute_all(
    ir: np.ndarray, vi: np.ndarray, fused: np.ndarray, ssim_data_range: float = 2.0
) -> dict[str, float]:
    """All metrics of ``METRIC_NAMES`` for one gray triplet, in that order, as Python floats."""
    f, a, b = _as_triplet(fused, ir, vi)
    _vif_check_size(f.shape)
    values = {
        "EN": entropy(f),
        "SD": standard_deviation(f),
        "SF": spatial_frequency(f),
        "AG": average_gradient(f),
        "MI": mutual_information(f, a, b),
        "SCD": scd(f, a, b),
        "VIF": vif(f, a, b),
        "Qabf": qabf(f, a, b),
        "SSIM": ssim(f, a, b, data_range=ssim_data_range),
        "CC": correlation_coefficient(f, a, b),
        "PSNR": psnr(f, a, b),
    }
    return {name: float(values[name]) for name in METRIC_NAMES}
