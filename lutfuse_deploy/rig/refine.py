"""Refine a rough rig from image content: maximise how well thermal and visible edges line up.

Thermal and visible intensities are unrelated (a warm wall is bright in one, dark in the other), but
the two cameras see the same object outlines. The score is the normalised gradient field (NGF)
similarity of Haber & Modersitzki (2006): the mean over the visible frame of the squared cosine
between the warped IR's gradient and the visible gradient, each regularised by an edge-noise level,
so flat areas count for nothing and an edge counts whatever its contrast or polarity.

The homography is parametrised by where four fixed IR points (those the start rig sends to the
corners of the overlap box) land in the visible frame: eight offsets in visible pixels, the very
quantity the accuracy measure (``corner_error_px``) looks at, well conditioned for a gradient method.
The IR is warped with GridSample and the offsets are optimised with Adam, coarse to fine over a
pyramid of the visible frame. At the coarsest scale a grid search over translations picks the
starts (a gradient method alone stops at the nearest local optimum). Frames of one rig are pooled: the score is their mean.

The same full-resolution score judges the start and the result; a result that does not score
higher than the start is refused (``RigError``), never handed back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lutfuse_deploy.errors import RigError
from lutfuse_deploy.rig.file import Rig, apply_homography, made_record, overlap_corners

EPS_FLOOR = 0.1  # grey levels per pixel: gradients below this are 8-bit rounding, not edges
LUMA = (0.299, 0.587, 0.114)  # PIL's ITU-R 601-2 luma, as io.images reads gray visible frames


@dataclass(frozen=True)
class RefineOptions:
    """The knobs of the search; the defaults are what docs/rigs.md measured."""

    scales: tuple[float, ...] = (1 / 4, 1 / 2, 1.0)  # visible-frame pyramid, coarse to fine
    steps: tuple[int, ...] = (60, 40, 30)  # Adam steps per scale
    lr: float = 0.3  # Adam step, in pixels of the current scale
    blur: float = 1.0  # Gaussian sigma (pixels of the current scale) before the gradients
    noise: float = 0.5  # NGF's edge-noise level, as a share of the mean gradient magnitude
    search_px: float = 32.0  # translation grid search radius at the coarsest scale (visible pixels)
    starts: int = 3  # best translations kept from the grid search, each refined at the coarse scales
    keep_after: int = 3  # scales after which only the best start goes on (3: all reach full scale)
    points: int = 20000  # strongest visible edge points scored per frame and scale (bounds the cost)
    margin: float = 0.02  # share of the visible frame's size trimmed off the scored region's edges


@dataclass(frozen=True)
class Refined:
    rig: Rig
    score_start: float
    score: float
    corner_shift_px: float  # how far the overlap box corners moved from the start (visible pixels)
    history: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"score_start": round(self.score_start, 6), "score": round(self.score, 6),
                "corner_shift_px": round(self.corner_shift_px, 3), "scales": self.history}


def to_gray(image: np.ndarray) -> np.ndarray:
    """Float32 gray from a gray or RGB uint8 frame."""
    x = np.asarray(image, dtype=np.float32)
    return x if x.ndim == 2 else x[..., :3] @ np.asarray(LUMA, dtype=np.float32)


def _torch() -> Any:
    import torch

    return torch


def _dlt(src: Any, dst: Any) -> Any:
    """The 3 x 3 homography sending four points ``src`` to ``dst`` (float64 tensors, 4 x 2),
    differentiable in both: an 8 x 8 linear solve with H[2, 2] = 1."""
    torch = _torch()
    x, y, u, v = src[:, 0], src[:, 1], dst[:, 0], dst[:, 1]
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y], dim=1)
    rows_v = torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y], dim=1)
    a = torch.cat([rows_u, rows_v], dim=0)
    h = torch.linalg.solve(a, torch.cat([u, v]))
    return torch.cat([h, torch.ones(1, dtype=h.dtype)]).reshape(3, 3)


def _gaussian(x: Any, sigma: float) -> Any:
    """Separable Gaussian blur of N x 1 x H x W (reflect padding)."""
    torch = _torch()
    import torch.nn.functional as F

    if sigma <= 0:
        return x
    r = max(1, math.ceil(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype) / sigma) ** 2)
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))


def _gradient(x: Any) -> tuple[Any, Any]:
    """Central differences of N x 1 x H x W (replicate padding: zero across the frame's border)."""
    import torch.nn.functional as F

    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return 0.5 * (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]), 0.5 * (p[..., 2:, 1:-1] - p[..., :-2, 1:-1])


def _resize(x: Any, size: tuple[int, int]) -> Any:
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


@dataclass
class _Level:
    """One pyramid scale: visible edge points with their gradients, and the IR image they sample."""

    scale: float
    ir: Any  # N x 1 x h x w, the IR blurred at a size matching this level's pixel size
    ir_scale: tuple[float, float]  # IR level pixels per full-resolution IR pixel (x, y)
    pts: Any  # N x K x 3 homogeneous full-resolution visible coordinates of the scored points
    vgx: Any  # N x K visible gradient at those points (per level pixel)
    vgy: Any
    vnorm2: Any  # N x K: |grad vi|^2 + eps^2
    weight: Any  # N x K: 1 for a scored point, 0 for padding
    count: float  # scored points in all
    ir_size: tuple[int, int]
    ir_eps2: float = 0.0  # set from the start rig's warped IR


def _build_level(irs: Any, vis: Any, scale: float, ir_per_vi: float, region_full: np.ndarray,
                 ir_size: tuple[int, int], opts: RefineOptions) -> _Level:
    torch = _torch()
    n, _, vh, vw = vis.shape
    h, w = max(8, round(vh * scale)), max(8, round(vw * scale))
    sx, sy = w / vw, h / vh
    vi = _gaussian(_resize(vis, (h, w)), opts.blur)
    gx, gy = _gradient(vi)
    mag2 = gx ** 2 + gy ** 2
    vi_eps2 = max(float(opts.noise * mag2.sqrt().mean()), EPS_FLOOR) ** 2
    region = torch.from_numpy(region_full.astype(np.float32))[None, None]
    region = (_resize(region, (h, w))[0, 0] > 0.999).flatten()
    # the score's points: the strongest visible edges inside the region (flat areas add ~0 to an NGF mean)
    k = int(min(region.sum(), opts.points))
    key = torch.where(region, mag2.view(n, -1), torch.tensor(-1.0))
    idx = torch.topk(key, k, dim=1).indices  # N x K
    ys, xs = idx // w, idx % w
    pts = torch.stack([(xs.double() + 0.5) / sx - 0.5, (ys.double() + 0.5) / sy - 0.5,
                       torch.ones(n, k, dtype=torch.float64)], dim=-1)
    take = lambda t: torch.gather(t.view(n, -1), 1, idx)  # noqa: E731
    # one level pixel spans 1/scale visible pixels, that is ir_per_vi/scale IR pixels: shrink the IR to match
    iw, ih = ir_size
    ir_shrink = min(1.0, scale / ir_per_vi)
    ih_l, iw_l = max(8, round(ih * ir_shrink)), max(8, round(iw * ir_shrink))
    ir = _gaussian(_resize(irs, (ih_l, iw_l)), opts.blur)
    return _Level(scale, ir, (iw_l / iw, ih_l / ih), pts, take(gx), take(gy), take(mag2) + vi_eps2,
                  torch.ones(n, k), float(n * k), ir_size)


def _ir_gradient(level: _Level, hinvs: Any) -> tuple[Any, Any, Any]:
    """The warped IR's gradient (per level pixel) at every scored point, for each visible -> IR homography
    in ``hinvs`` (B x 3 x 3): central differences of four bilinear samples one level pixel apart, and
    whether the point's IR sample lies inside the IR frame."""
    torch = _torch()
    import torch.nn.functional as F

    b = hinvs.shape[0]
    n, k, _ = level.pts.shape
    d = 1.0 / level.scale
    steps = torch.tensor([[d, 0, 0], [-d, 0, 0], [0, d, 0], [0, -d, 0], [0, 0, 0]], dtype=torch.float64)
    p = level.pts[:, None] + steps[None, :, None]  # N x 5 x K x 3
    m = torch.einsum("bij,nskj->bnski", hinvs, p)
    x, y = m[..., 0] / m[..., 2], m[..., 1] / m[..., 2]  # full-resolution IR pixel coordinates
    iw, ih = level.ir_size
    with torch.no_grad():
        cx, cy = x[:, :, 4], y[:, :, 4]
        seen = ((cx >= 0) & (cx <= iw - 1) & (cy >= 0) & (cy <= ih - 1)).float()
    iw_l, ih_l = level.ir.shape[-1], level.ir.shape[-2]
    gxn = (2 * ((x[:, :, :4] + 0.5) * level.ir_scale[0] - 0.5) + 1) / iw_l - 1
    gyn = (2 * ((y[:, :, :4] + 0.5) * level.ir_scale[1] - 0.5) + 1) / ih_l - 1
    grid = torch.stack([gxn, gyn], dim=-1).float().reshape(b * n, 4, k, 2)
    ir = level.ir[None].expand(b, *level.ir.shape).reshape(b * n, *level.ir.shape[1:])
    v = F.grid_sample(ir, grid, mode="bilinear", padding_mode="border", align_corners=False)
    v = v.view(b, n, 4, k)
    return 0.5 * (v[:, :, 0] - v[:, :, 1]), 0.5 * (v[:, :, 2] - v[:, :, 3]), seen


def _scores(level: _Level, hinvs: Any) -> Any:
    """NGF score of each visible -> IR homography in ``hinvs`` (B x 3 x 3), averaged over points and frames."""
    gx, gy, seen = _ir_gradient(level, hinvs)
    dot = gx * level.vgx + gy * level.vgy
    cos2 = dot ** 2 / ((gx ** 2 + gy ** 2 + level.ir_eps2) * level.vnorm2)
    return (cos2 * seen * level.weight).sum(dim=(1, 2)) / level.count


def _hinv(corners: Any, ir_points: Any, offsets: Any) -> Any:
    """Visible -> IR homography for corner offsets: sends ``corners + offsets`` to ``ir_points``."""
    return _dlt(corners + offsets, ir_points)


def _translations(radius: float, step: float) -> np.ndarray:
    n = int(math.floor(radius / step))
    t = np.arange(-n, n + 1) * step
    return np.stack(np.meshgrid(t, t), axis=-1).reshape(-1, 2)


def scored_region(rig: Rig, margin: float) -> np.ndarray:
    """Bool mask over the visible frame: pixels the start rig's IR frame covers, trimmed by ``margin`` of
    the frame's size on every side (the score is a mean over a region fixed before the search, so scores
    of different homographies compare)."""
    from lutfuse_deploy.rig.overlay import seen_mask

    seen = seen_mask(replace(rig, output="visible"))
    vw, vh = rig.vi_size
    mx, my = round(margin * vw), round(margin * vh)
    region = np.zeros_like(seen)
    region[my:vh - my, mx:vw - mx] = True
    return seen & region


def refine_rig(start: Rig, frames: Sequence[tuple[np.ndarray, np.ndarray]],
               opts: RefineOptions | None = None, source: dict[str, Any] | None = None) -> Refined:
    """Refine ``start`` on one or more (IR, visible) frame pairs of the rig's sizes; raises ``RigError``
    when the result does not score higher than the start.

    Runs on one CPU thread: the work is hundreds of small steps, and on a busy machine OpenMP's
    threads spin-waiting on each other made a step 10-30x slower (measured in docs/rigs.md)."""
    torch = _torch()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _refine(start, frames, opts or RefineOptions(), source)
    finally:
        torch.set_num_threads(threads)


def _refine(start: Rig, frames: Sequence[tuple[np.ndarray, np.ndarray]], opts: RefineOptions,
            source: dict[str, Any] | None) -> Refined:
    torch = _torch()
    if not frames:
        raise RigError("no frame pairs to refine on")
    for ir, vi in frames:
        if (ir.shape[1], ir.shape[0]) != start.ir_size or (vi.shape[1], vi.shape[0]) != start.vi_size:
            raise RigError(f"a frame pair is IR {ir.shape[1]}x{ir.shape[0]} / visible {vi.shape[1]}x{vi.shape[0]}, "
                           f"the rig says {start.ir_size[0]}x{start.ir_size[1]} / {start.vi_size[0]}x{start.vi_size[1]}")
    region = scored_region(start, opts.margin)
    if region.sum() < 64:
        raise RigError("the start rig's IR frame covers too little of the visible frame to score")
    irs = torch.from_numpy(np.stack([to_gray(ir) for ir, _ in frames]))[:, None]
    vis = torch.from_numpy(np.stack([to_gray(vi) for _, vi in frames]))[:, None]
    ir_per_vi = 1.0 / math.sqrt(abs(np.linalg.det(_local_jacobian(start))))
    levels = [_build_level(irs, vis, s, ir_per_vi, region, start.ir_size, opts) for s in opts.scales]
    if float(levels[-1].vnorm2.max() - levels[-1].vnorm2.min()) == 0.0:
        raise RigError("refinement refused: the visible frame(s) show no edges where the start rig's IR lands "
                       "(nothing to line up; the start rig is kept)")
    corners_np = overlap_corners(start)
    with torch.no_grad():
        h_start = torch.from_numpy(start.inverse)[None]
        for level in levels:  # the IR's edge-noise level, from the start rig's warp (fixed from then on)
            gx, gy, seen = _ir_gradient(level, h_start)
            mag = (gx ** 2 + gy ** 2).sqrt()
            level.ir_eps2 = max(float(opts.noise * (mag * seen).sum() / seen.sum().clamp(min=1)), EPS_FLOOR) ** 2
    corners = torch.from_numpy(corners_np)
    ir_points = torch.from_numpy(apply_homography(start.inverse, corners_np))
    zero = torch.zeros(4, 2, dtype=torch.float64)

    def score_of(level: _Level, offsets: Any) -> float:
        with torch.no_grad():
            return float(_scores(level, _hinv(corners, ir_points, offsets)[None])[0])

    finest = levels[-1]
    score_start = score_of(finest, zero)
    # grid search over translations at the coarsest scale, one level pixel apart
    coarse = levels[0]
    shifts = _translations(opts.search_px, 1.0 / coarse.scale)
    with torch.no_grad():
        h0 = _hinv(corners, ir_points, zero)
        hinvs = torch.stack([h0 @ torch.tensor([[1, 0, -tx], [0, 1, -ty], [0, 0, 1]], dtype=torch.float64)
                             for tx, ty in shifts])
        grid_scores = _scores(coarse, hinvs)
    order = torch.argsort(grid_scores, descending=True)[: opts.starts].tolist()
    candidates = [torch.from_numpy(np.repeat(shifts[i][None], 4, axis=0)) for i in order]
    history: list[dict[str, float]] = []
    for li, level in enumerate(levels):
        results = []
        for offsets in candidates:
            offsets, best = _adam(level, corners, ir_points, offsets, opts.lr / level.scale, opts.steps[li])
            results.append((best, offsets))
        results.sort(key=lambda r: -r[0])
        history.append({"scale": level.scale, "score": results[0][0]})
        if li + 1 >= opts.keep_after:
            results = results[:1]
        candidates = [r[1] for r in results]
    offsets = candidates[0]
    score = score_of(finest, offsets)
    h = torch.linalg.inv(_hinv(corners, ir_points, offsets)).detach().numpy()
    shift = float(np.linalg.norm(offsets.numpy(), axis=1).mean())
    if not score > score_start:
        raise RigError(f"refinement refused: the score went from {score_start:.4f} to {score:.4f}, no better than "
                       "the start (the start rig is kept; give a closer start, e.g. from clicked points)")
    made = made_record("refine", score_start=round(score_start, 6), score=round(score, 6),
                       corner_shift_px=round(shift, 3), frames=len(frames), similarity="ngf",
                       **({"source": source} if source else {}))
    rig = start.with_homography(h, made)
    return Refined(rig, score_start, score, shift, history)


def _adam(level: _Level, corners: Any, ir_points: Any, offsets: Any, lr: float, steps: int) -> tuple[Any, float]:
    """Adam on the corner offsets at one scale; the best iterate by this scale's score."""
    torch = _torch()
    p = offsets.clone().requires_grad_(True)
    opt = torch.optim.Adam([p], lr=lr)
    best, best_p = -1.0, offsets.clone()
    for i in range(steps + 1):
        opt.zero_grad()
        s = _scores(level, _hinv(corners, ir_points, p)[None])[0]
        if float(s.detach()) > best:
            best, best_p = float(s.detach()), p.detach().clone()
        if i == steps:
            break
        (-s).backward()
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * i / steps))
        opt.step()
    return best_p, best


def _local_jacobian(rig: Rig) -> np.ndarray:
    """The 2 x 2 Jacobian of IR -> visible at the IR frame's centre (how many visible pixels an IR pixel spans)."""
    w, h = rig.ir_size
    c = np.array([[(w - 1) / 2, (h - 1) / 2]])
    d = 1.0
    px = apply_homography(rig.homography, c + [[d, 0]]) - apply_homography(rig.homography, c - [[d, 0]])
    py = apply_homography(rig.homography, c + [[0, d]]) - apply_homography(rig.homography, c - [[0, d]])
    return np.stack([px[0], py[0]], axis=1) / (2 * d)


def start_off_by(truth: Rig, px: float, rng: np.random.Generator) -> Rig:
    """A start rig whose corner error against ``truth`` is exactly ``px``: each corner of the true overlap
    box moved ``px`` visible pixels in its own random direction (how the refinement is measured)."""
    corners = overlap_corners(truth)
    angles = rng.uniform(0, 2 * np.pi, 4)
    moved = corners + px * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    torch = _torch()
    h = _dlt(torch.from_numpy(apply_homography(truth.inverse, corners)), torch.from_numpy(moved)).numpy()
    return truth.with_homography(h, made_record("perturbed", corner_error_px=px))
