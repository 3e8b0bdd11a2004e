"""Per-pixel stages as single numba loops: the rig warp, LUT-Fuse's lookup stage and the MMDRFuse student.

Why hand-written loops: in ONNX Runtime (and in PyTorch eager) each elementwise op of the lookup
stage (luma, Sobel, min-max, four coordinates, clamps, the gather and its lerps, the colour terms)
is a pass over the whole image that writes a full-size temporary; at 640x480 those ~30 passes cost
~19 ms while the arithmetic is a few hundred operations per pixel. One loop that keeps a pixel in
registers does the same work in a few ms. The loops follow the float32 operations of
``models.lut`` / ``models.mmdrfuse`` in their order, so they meet the parity rule of every backend
(``export.parity``) against float64 truth; ``runtime.fused_cpu`` is the runner around them.

Compiled on first use and cached on disk by numba (``cache=True``), so later processes start fast.
"""

from __future__ import annotations

import math

import numpy as np

from lutfuse_deploy.errors import MissingDependency
from lutfuse_deploy.models.lut import CB, CHROMA_TO_RGB, CR, LUMA, MINMAX_EPS

try:
    from numba import njit, prange
except ImportError:
    raise MissingDependency("numba", "numba") from None

F32 = np.float32
# the model's own constants (models.lut), frozen into the loops as float32 as PyTorch rounds them
LUMA32 = tuple(F32(c) for c in LUMA)
CB32 = tuple(F32(c) for c in CB)
CR32 = tuple(F32(c) for c in CR)
(_R_CR, _), (_G_CR, _G_CB), (_, _B_CB) = CHROMA_TO_RGB
CHROMA32 = (F32(_R_CR), F32(_G_CR), F32(_G_CB), F32(_B_CB))  # R<-Cr, G<-Cr, G<-Cb, B<-Cb


@njit(parallel=True, cache=True)
def warp_ir(ir: np.ndarray, inverse: np.ndarray, x0: int, y0: int, out: np.ndarray) -> None:
    """``out[v, u]`` = IR sampled bilinearly at ``inverse @ (x0 + u, y0 + v, 1)`` (pixel centres at
    integers, OpenCV's convention), 0 where a tap falls outside the IR frame: GridSample's
    ``zeros`` padding with ``align_corners=0``, which is what ``export.lowering.RigWarp`` emits.
    The position is computed in float64 (the graph rounds it to float32; float64 truth does not)."""
    h, w = out.shape
    hi, wi = ir.shape
    for v in prange(h):
        yv = float(y0 + v)
        for u in range(w):
            xu = float(x0 + u)
            d = inverse[2, 0] * xu + inverse[2, 1] * yv + inverse[2, 2]
            x = (inverse[0, 0] * xu + inverse[0, 1] * yv + inverse[0, 2]) / d
            y = (inverse[1, 0] * xu + inverse[1, 1] * yv + inverse[1, 2]) / d
            if not (-1.0 < x < wi and -1.0 < y < hi):  # no tap inside (NaN and inf land here too)
                out[v, u] = 0.0
                continue
            fx, fy = math.floor(x), math.floor(y)
            ix, iy = int(fx), int(fy)
            ax, ay = x - fx, y - fy
            acc = 0.0
            if iy >= 0:
                if ix >= 0:
                    acc += (1.0 - ax) * (1.0 - ay) * ir[iy, ix]
                if ix + 1 < wi:
                    acc += ax * (1.0 - ay) * ir[iy, ix + 1]
            if iy + 1 < hi:
                if ix >= 0:
                    acc += (1.0 - ax) * ay * ir[iy + 1, ix]
                if ix + 1 < wi:
                    acc += ax * ay * ir[iy + 1, ix + 1]
            out[v, u] = acc


@njit(parallel=True, cache=True)
def _luma01(vi: np.ndarray, y: np.ndarray) -> None:
    """BT.601 Y of RGB 0..255 on the [0, 1] scale, as ``models.lut.luminance(vi / 255)`` rounds it."""
    h, w = y.shape
    k255 = F32(255.0)
    kr, kg, kb = LUMA32
    for i in prange(h):
        for j in range(w):
            y[i, j] = kr * (vi[0, i, j] / k255) + kg * (vi[1, i, j] / k255) + kb * (vi[2, i, j] / k255)


@njit(parallel=True, cache=True)
def _sobel_magnitude(y: np.ndarray, mag: np.ndarray, row_lo: np.ndarray, row_hi: np.ndarray) -> None:
    """|Sobel| of ``y`` with zero padding (``models.lut.sobel_minmax`` before its normalisation), and
    each row's min and max for the normalisation."""
    h, w = y.shape
    for i in prange(h):
        lo, hi = np.inf, -np.inf
        for j in range(w):
            a = y[i - 1, j - 1] if i > 0 and j > 0 else F32(0.0)
            b = y[i - 1, j] if i > 0 else F32(0.0)
            c = y[i - 1, j + 1] if i > 0 and j + 1 < w else F32(0.0)
            d = y[i, j - 1] if j > 0 else F32(0.0)
            e = y[i, j + 1] if j + 1 < w else F32(0.0)
            f = y[i + 1, j - 1] if i + 1 < h and j > 0 else F32(0.0)
            g = y[i + 1, j] if i + 1 < h else F32(0.0)
            k = y[i + 1, j + 1] if i + 1 < h and j + 1 < w else F32(0.0)
            gx = a - c + F32(2.0) * d - F32(2.0) * e + f - k
            gy = a + F32(2.0) * b + c - f - F32(2.0) * g - k
            m = np.sqrt(gx * gx + gy * gy)
            mag[i, j] = m
            lo = min(lo, m)
            hi = max(hi, m)
        row_lo[i] = lo
        row_hi[i] = hi


@njit(parallel=True, cache=True)
def _lookup_rgb(ir: np.ndarray, vi: np.ndarray, context: np.ndarray, y: np.ndarray, mag: np.ndarray,
                lo: np.float32, span: np.float32, corners: np.ndarray, nodes: int, scale: np.float32,
                ir_scale: np.float32, out: np.ndarray) -> None:
    """Coordinates, the quadrilinear lookup in ``models.lut.corner_rows`` and the YCbCr recombination
    of ``models.lut.ycbcr_to_rgb``, one pixel at a time."""
    h, w = y.shape
    top = F32(nodes - 1)
    k255, half = F32(255.0), F32(0.5)
    cb0, cb1, cb2 = CB32
    cr0, cr1, cr2 = CR32
    r_cr, g_cr, g_cb, b_cb = CHROMA32
    for i in prange(h):
        v = np.empty(16, np.float32)
        for j in range(w):
            cy = min(max(y[i, j] * scale, F32(0.0)), top)
            cg = min(max((mag[i, j] - lo) / span * scale, F32(0.0)), top)
            cc = min(max(context[i, j] * scale, F32(0.0)), top)
            ci = min(max(ir[i, j] * ir_scale, F32(0.0)), top)
            ly, lg, lc, li = math.floor(cy), math.floor(cg), math.floor(cc), math.floor(ci)
            row = ((int(ly) * nodes + int(lg)) * nodes + int(lc)) * nodes + int(li)
            for k in range(16):
                v[k] = corners[row, k]
            n = 16
            for wt in (ci - F32(li), cc - F32(lc), cg - F32(lg), cy - F32(ly)):  # IR innermost, Y last
                n //= 2
                for k in range(n):
                    v[k] = v[k] * (F32(1.0) - wt) + v[k + n] * wt
            fy = v[0]
            r, g, b = vi[0, i, j] / k255, vi[1, i, j] / k255, vi[2, i, j] / k255
            cb = (half + cb0 * r + cb1 * g + cb2 * b) - half
            cr = (half + cr0 * r + cr1 * g + cr2 * b) - half
            out[0, i, j] = fy + r_cr * cr
            out[1, i, j] = fy + g_cb * cb + g_cr * cr
            out[2, i, j] = fy + b_cb * cb


def lutfuse_lookup(ir: np.ndarray, vi: np.ndarray, context: np.ndarray, corners: np.ndarray, nodes: int,
                   scale: float) -> np.ndarray:
    """Fused RGB (3 x H x W, [0, 1] scale, unclamped) of one IR (H x W) and visible (3 x H x W) frame on
    0..255 and the context map (H x W, sigmoid) at full size: everything LUT-Fuse does but the context
    network. ``corners`` is ``models.lut.corner_rows`` of the table."""
    h, w = ir.shape
    y = np.empty((h, w), np.float32)
    mag = np.empty((h, w), np.float32)
    row_lo = np.empty(h, np.float32)
    row_hi = np.empty(h, np.float32)
    _luma01(vi, y)
    _sobel_magnitude(y, mag, row_lo, row_hi)
    lo, hi = row_lo.min(), row_hi.max()
    span = np.float32(hi - lo + np.float32(MINMAX_EPS))
    out = np.empty((3, h, w), np.float32)
    _lookup_rgb(ir, vi, context, y, mag, np.float32(lo), span, corners, nodes, np.float32(scale),
                np.float32(scale / 255.0), out)
    return out


ROWS_PER_BLOCK = 32  # the student's rows per parallel task: 2 halo feature rows recomputed per block


@njit(cache=True, inline="always")
def _reflect(i: int, n: int) -> int:
    """ReflectionPad2d(1)'s index: -1 -> 1, n -> n - 2."""
    return 1 if i < 0 else (n - 2 if i >= n else i)


@njit(parallel=True, cache=True)
def _student_rows(ir: np.ndarray, vi: np.ndarray, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray,
                  out: np.ndarray) -> None:
    """Blocks of output rows in parallel; each block computes the 4-channel ReLU features of its rows and
    one halo row each side (reflected), so no full-size intermediate is written."""
    h, w = ir.shape
    k255 = F32(255.0)
    for block in prange((h + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK):
        r0 = block * ROWS_PER_BLOCK
        r1 = min(h, r0 + ROWS_PER_BLOCK)
        n = r1 - r0 + 2
        x = np.empty((2, 3, w + 2), np.float32)  # the three input rows around one feature row, columns padded
        feat = np.empty((4, n, w + 2), np.float32)  # feature rows r0 - 1 .. r1, columns padded
        acc = np.empty(w, np.float32)
        for k in range(n):
            fr = _reflect(r0 - 1 + k, h)
            for a in range(3):
                ri = _reflect(fr - 1 + a, h)
                for j in range(w):
                    x[0, a, j + 1] = ir[ri, j] / k255
                    x[1, a, j + 1] = vi[ri, j] / k255
                for c in range(2):
                    x[c, a, 0] = x[c, a, 2]
                    x[c, a, w + 1] = x[c, a, w - 1]
            for o in range(4):
                acc[:] = b1[o]
                for c in range(2):
                    for a in range(3):
                        for b in range(3):
                            wt = w1[o, c, a, b]
                            for j in range(w):
                                acc[j] += wt * x[c, a, j + b]
                for j in range(w):
                    feat[o, k, j + 1] = max(acc[j], F32(0.0))
                feat[o, k, 0] = feat[o, k, 2]
                feat[o, k, w + 1] = feat[o, k, w - 1]
        for i in range(r0, r1):
            k = i - r0
            acc[:] = b2[0]
            for o in range(4):
                for a in range(3):
                    for b in range(3):
                        wt = w2[0, o, a, b]
                        for j in range(w):
                            acc[j] += wt * feat[o, k + a, j + b]
            for j in range(w):
                out[0, i, j] = np.tanh(acc[j])


def mmdr_student(ir: np.ndarray, vi: np.ndarray, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray,
                 b2: np.ndarray) -> np.ndarray:
    """The 113-parameter student (``models.mmdrfuse.MMDRStudent``) on one IR and one visible gray frame
    (H x W, 0..255, at least 2 x 2): reflection pad, conv 2->4, ReLU, reflection pad, conv 4->1, tanh
    -> 1 x H x W."""
    out = np.empty((1, *ir.shape), np.float32)
    _student_rows(ir, vi, w1, b1, w2, b2, out)
    return out
