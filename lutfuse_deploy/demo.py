"""The no-download demo: a procedural night street seen by a thermal and a visible camera, fused.

The scene is built so fusion visibly matters: a pedestrian and a car's engine are warm (bright in
IR) but stand in shadow (nearly invisible in the visible image), while texture, lane markings and lit
windows exist only in the visible image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage


@dataclass
class DemoResult:
    model: str
    size: tuple[int, int]
    latency_ms: dict[str, float]
    metrics: dict[str, dict[str, float]]
    outputs: dict[str, Path]


def synthetic_scene(height: int = 480, width: int = 640, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(IR uint8 H x W, visible uint8 H x W x 3) of the same procedural scene."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    v, u = yy / height, xx / width
    horizon = 0.45
    texture = ndimage.gaussian_filter(rng.standard_normal((height, width)), 1.2)
    # Visible: dusk sky, dark buildings with lit windows, asphalt with lane marks, a shadowed pedestrian.
    vis = np.where(v < horizon, 70 + 60 * (1 - v / horizon), 35 + 20 * (v - horizon))
    ir = np.where(v < horizon, 25 + 10 * v, 95 + 40 * (v - horizon))  # cold sky, warm road
    for x0 in range(0, width, width // 6):
        top = horizon * height * rng.uniform(0.25, 0.7)
        bw = width // 6 - 8
        bld = (xx >= x0) & (xx < x0 + bw) & (yy >= top) & (yy < horizon * height)
        vis[bld] = 45 + 8 * texture[bld]
        ir[bld] = 80 + 6 * texture[bld]
        win = bld & ((xx - x0) % 22 < 9) & ((yy - top) % 26 < 11) & (rng.uniform(size=bld.shape) < 2)
        lit = win & (((xx - x0) // 22 + (yy - top) // 26) % 3 == 0)
        vis[lit] = 215
        ir[win] = 100
    road = v >= horizon
    vis[road] += 10 * texture[road]
    ir[road] += 3 * texture[road]
    lane = road & (np.abs(u - 0.5 - (v - horizon) * 0.1) < 0.004 + 0.01 * (v - horizon)) & ((yy // 18) % 2 == 0)
    vis[lane] = 230
    ir[lane] -= 12  # paint is slightly cooler than asphalt
    # A pedestrian in shadow: invisible in the visible image, hot in IR.
    cx, cy, s = 0.3 * width, 0.68 * height, height / 480
    body = ((xx - cx) / (14 * s)) ** 2 + ((yy - cy) / (48 * s)) ** 2 < 1
    head = (xx - cx) ** 2 + (yy - cy + 60 * s) ** 2 < (12 * s) ** 2
    person = body | head
    vis[person] = 30 + 4 * texture[person]
    ir[person] = 225 + 10 * texture[person]
    # A car: visible body and headlights; warm engine and tyres in IR.
    car = (np.abs(xx - 0.7 * width) < 70 * s) & (np.abs(yy - 0.75 * height) < 28 * s)
    vis[car] = 90 + 5 * texture[car]
    ir[car] = 120
    engine = car & (xx > 0.7 * width + 20 * s)
    ir[engine] = 205
    for lx in (0.7 * width - 55 * s, 0.7 * width - 35 * s):
        lamp = (xx - lx) ** 2 + (yy - 0.75 * height) ** 2 < (7 * s) ** 2
        vis[lamp] = 250
    ir = ndimage.gaussian_filter(ir, 1.5) + rng.normal(0, 1.5, ir.shape)  # thermal optics blur + noise
    vis = vis + rng.normal(0, 2.0, vis.shape)
    tint = np.stack([vis * 1.05, vis, vis * 0.88], axis=-1)
    tint[v < horizon] *= np.array([0.9, 0.95, 1.15])  # bluish sky
    return (np.clip(np.rint(ir), 0, 255).astype(np.uint8), np.clip(np.rint(tint), 0, 255).astype(np.uint8))


def _shipped_or_analytic() -> tuple[Path | None, str]:
    from lutfuse_deploy.paths import pretrained_dir

    shipped = sorted(pretrained_dir().glob("*lut*.safetensors"))
    if shipped:
        return shipped[0], f"shipped LUT-Fuse ({shipped[0].name})"
    return None, "analytic-rule LUT-Fuse (no trained weights shipped yet)"


def run_demo(out_dir: str | Path, height: int = 480, width: int = 640, seed: int = 0, repeats: int = 10) -> DemoResult:
    """Make the scene, fuse it, time it and score it against the two naive baselines."""
    import torch

    from lutfuse_deploy.io.checkpoints import save_checkpoint
    from lutfuse_deploy.io.files import ensure_dir
    from lutfuse_deploy.io.images import save_png
    from lutfuse_deploy.metrics.fusion import compute_all, to_gray
    from lutfuse_deploy.models.lut import analytic_lutfuse
    from lutfuse_deploy.pipeline import prepare, to_8bit
    from lutfuse_deploy.runtime import create_runner

    out = ensure_dir(out_dir)
    ir, vi = synthetic_scene(height, width, seed)
    ckpt, label = _shipped_or_analytic()
    if ckpt is None:
        ckpt = save_checkpoint(analytic_lutfuse(), out / "analytic-lut.safetensors",
                               provenance={"source": "lutfuse_deploy.models.lut.analytic_table"})
    runner = create_runner(ckpt, "torch", threads=torch.get_num_threads())
    batch = prepare(ir, vi, "float")
    with runner:
        fused = runner.infer(*batch)[0]  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            runner.infer(*batch)
            times.append((time.perf_counter() - t0) * 1e3)
    fused8 = to_8bit(fused, "lutfuse")
    vi_gray = to_gray(vi)
    candidates = {
        "LUT-Fuse": to_gray(fused8),
        "max(ir, vi)": np.maximum(ir, vi_gray),
        "mean(ir, vi)": np.rint((ir.astype(np.float64) + vi_gray) / 2).astype(np.uint8),
    }
    metrics = {name: compute_all(ir, vi_gray, img) for name, img in candidates.items()}
    paths = {"ir": out / "ir.png", "vi": out / "vi.png", "fused": out / "fused.png"}
    save_png(paths["ir"], ir)
    save_png(paths["vi"], vi)
    save_png(paths["fused"], fused8)
    lat = {"median_ms": float(np.median(times)), "min_ms": float(np.min(times)), "threads": float(torch.get_num_threads())}
    return DemoResult(label, (height, width), lat, metrics, paths)
