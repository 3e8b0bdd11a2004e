"""The no-download demo: a procedural night street seen by a thermal and a visible camera, fused.

The scene is built so fusion visibly matters: a pedestrian and a car's engine are warm (bright in
IR) but stand in shadow (nearly invisible in the visible image), while texture, lane markings and lit
windows exist only in the visible image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage


@dataclass
class DemoResult:
    model: str
    size: tuple[int, int]
    #: per backend: median/min/p90 ms, samples; plus "threads", "ratio" (PyTorch / graph medians), load
    #: and "ratio_to_upstream" (upstream code / each backend, medians) where the upstream code was found
    latency: dict[str, Any]
    metrics: dict[str, dict[str, float]]
    outputs: dict[str, Path]
    notes: list[str] = field(default_factory=list)


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

    shipped = pretrained_dir() / "lutfuse.safetensors"
    if shipped.is_file():
        return shipped, f"shipped LUT-Fuse ({shipped.name})"
    return None, "analytic-rule LUT-Fuse (no trained weights shipped)"


def side_by_side(panels: dict[str, np.ndarray], gap: int = 8) -> np.ndarray:
    """Label and join H x W (x 3) uint8 images left to right on a dark background (one RGB image)."""
    from PIL import Image, ImageDraw, ImageFont

    h = max(img.shape[0] for img in panels.values())
    bar = max(18, h // 20)
    rgb = [np.repeat(img[..., None], 3, -1) if img.ndim == 2 else img for img in panels.values()]
    width = sum(img.shape[1] for img in rgb) + gap * (len(rgb) + 1)
    canvas = Image.new("RGB", (width, h + bar + 2 * gap), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=bar * 3 // 4)
    x = gap
    for label, img in zip(panels, rgb, strict=True):
        draw.text((x, gap // 2), label, fill=(235, 235, 235), font=font)
        canvas.paste(Image.fromarray(img), (x, bar + gap))
        x += img.shape[1] + gap
    return np.asarray(canvas)


def run_demo(out_dir: str | Path, height: int = 480, width: int = 640, seed: int = 0, repeats: int = 10,
             threads: int | None = None) -> DemoResult:
    """Make the scene, export the shipped LUT-Fuse with the default export, time that graph in ONNX
    Runtime beside PyTorch eager and, where it is found, the upstream LUT-Fuse code itself
    (``runtime.upstream``; interleaved rounds in one process, load recorded), score the fused image
    against two naive baselines and write it beside its inputs."""
    import importlib.util

    from lutfuse_deploy.fuse.convert import prepare, to_8bit
    from lutfuse_deploy.io.checkpoints import save_checkpoint
    from lutfuse_deploy.io.files import ensure_dir
    from lutfuse_deploy.io.images import save_png
    from lutfuse_deploy.metrics.fusion import compute_all, to_gray
    from lutfuse_deploy.models.lut import analytic_lutfuse
    from lutfuse_deploy.profile.lanes import upstream_runner
    from lutfuse_deploy.profile.timing import Resolution, Settings, profile_runners
    from lutfuse_deploy.runtime import create_runner
    from lutfuse_deploy.runtime.cpus import default_threads

    out = ensure_dir(out_dir)
    notes: list[str] = []
    if threads is None:
        choice = default_threads()
        threads = choice.threads
        notes.append(f"threads: {choice.describe()}")
    ir, vi = synthetic_scene(height, width, seed)
    ckpt, label = _shipped_or_analytic()
    if ckpt is None:
        ckpt = save_checkpoint(analytic_lutfuse(), out / "analytic-lut.safetensors",
                               provenance={"source": "lutfuse_deploy.models.lut.analytic_table"})
    runners = [create_runner(ckpt, "torch", threads=threads)]
    paths = {"ir": out / "ir.png", "vi": out / "vi.png", "fused": out / "fused.png",
             "side_by_side": out / "side_by_side.png"}
    if importlib.util.find_spec("onnx") and importlib.util.find_spec("onnxruntime"):
        from lutfuse_deploy.export.onnx import torch_to_onnx

        paths["onnx"] = torch_to_onnx(ckpt, out / "lutfuse.onnx", dynamic=True, threads=threads)
        runners.append(create_runner(paths["onnx"], "onnxruntime", threads=threads))
    else:
        notes.append("onnx/onnxruntime not installed (pip install 'lutfuse-deploy[onnx]'): PyTorch timed alone")
    upstream, upstream_note = upstream_runner(None, threads, "cpu")
    notes.append(upstream_note if upstream else f"{upstream_note} (no ratio to the official code measured)")
    batch = prepare(ir, vi, "float")
    res = Resolution(width, height)
    results = profile_runners([*runners, *([upstream] if upstream else [])], [res],
                              Settings(warmup=1, iters=repeats, rounds=repeats), lambda _res, _runner: batch)
    latency: dict[str, Any] = {"threads": threads}
    for m in results:
        latency[m.backend] = {"median_ms": m.stats.p50_ms, "min_ms": m.stats.min_ms, "n": m.stats.n}
    first = results[0]
    latency["contended_rounds"] = first.contended_rounds
    latency["rounds"] = len(first.round_loads)
    latency["other_cpus"] = first.other_cpus
    if len(runners) > 1:
        latency["ratio"] = results[0].stats.p50_ms / results[1].stats.p50_ms
    if upstream:  # upstream median / each lane's median: "x the official code's speed"
        up = results[-1].stats.p50_ms
        latency["ratio_to_upstream"] = {m.backend: up / m.stats.p50_ms for m in results[:-1]}
    fused = runners[-1].infer(*batch)[0]  # the exported graph's output when there is one
    fused8 = to_8bit(fused, "lutfuse")
    if len(runners) > 1:
        eager8 = to_8bit(runners[0].infer(*batch)[0], "lutfuse")
        latency["max_lsb_vs_torch"] = int(np.abs(fused8.astype(np.int16) - eager8).max())
    vi_gray = to_gray(vi)
    candidates = {
        "LUT-Fuse": to_gray(fused8),
        "max(ir, vi)": np.maximum(ir, vi_gray),
        "mean(ir, vi)": np.rint((ir.astype(np.float64) + vi_gray) / 2).astype(np.uint8),
    }
    metrics = {name: compute_all(ir, vi_gray, img) for name, img in candidates.items()}
    save_png(paths["ir"], ir)
    save_png(paths["vi"], vi)
    save_png(paths["fused"], fused8)
    how = "exported graph, ONNX Runtime" if len(runners) > 1 else "PyTorch"
    save_png(paths["side_by_side"], side_by_side({"IR": ir, "visible": vi, f"fused (LUT-Fuse, {how})": fused8}))
    return DemoResult(label, (height, width), latency, metrics, paths, notes)
