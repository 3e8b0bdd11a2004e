"""How accurate are the rigs calibrate makes? Measured on rig/roadscene_raw against its ground truth.

Two measurements, each over every pair and several seeds:

* ``points``: 8 point pairs, spread at random over the overlap box, placed with the ground truth, then
  1 px of Gaussian noise (per coordinate) on the visible points only, or on both images' points;
  ``fit_points``; the corner error of the fitted rig.
* ``refine``: a start rig 15 px off (each corner of the true overlap box moved 15 px in a random
  direction, so the start's corner error is exactly 15 px), ``refine_rig`` on the pair; the corner
  error after, the scores before and after, refusals, and accepted results that the ground truth says
  got worse than the start.

    python tools/rig_accuracy.py --what refine --seeds 3 --json results.json

The corner error is ``corner_error_px``: the mean distance (visible pixels) by which a rig misplaces the
four corners of the true overlap box.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from lutfuse_deploy.errors import RigError
from lutfuse_deploy.io.images import read_ir, read_vi
from lutfuse_deploy.paths import data_root
from lutfuse_deploy.rig.file import Rig, apply_homography, corner_error_px, normalise
from lutfuse_deploy.rig.refine import RefineOptions, refine_rig, start_off_by

SET = "rig/roadscene_raw"


def load_set(root: Path) -> list[tuple[str, Rig, np.ndarray, np.ndarray]]:
    truth = json.loads((root / "homographies.json").read_text())
    out = []
    for name in sorted(truth):
        t = truth[name]
        rig = Rig(tuple(t["ir_wh"]), tuple(t["vi_wh"]), normalise(np.array(t["H_ir_to_vi"], dtype=np.float64)))
        ir = read_ir(root / "ir" / f"{name}.png")
        vi = read_vi(next((root / "vi").glob(f"{name}.*")))
        out.append((name, rig, ir, vi))
    return out


def _stats(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    if not len(v):
        return {}
    return {"n": int(len(v)), "median": float(np.median(v)), "mean": float(v.mean()),
            "p90": float(np.percentile(v, 90)), "max": float(v.max()), "min": float(v.min())}


def _place(rng: np.random.Generator, box: tuple[int, int, int, int], n: int, placement: str) -> np.ndarray:
    """``n`` visible points in the box: uniformly at random, or one per cell of a 4-column grid (as a
    person spreading clicks over the frame would), each at a random spot inside its cell's middle 80 %."""
    x0, y0, w, h = box
    if placement == "random":
        return rng.uniform([x0, y0], [x0 + w - 1, y0 + h - 1], size=(n, 2))
    cols = min(4, n)
    rows = -(-n // cols)
    cells = [(i, j) for j in range(rows) for i in range(cols)][:n]
    cw, ch = (w - 1) / cols, (h - 1) / rows
    return np.array([rng.uniform([x0 + (i + 0.1) * cw, y0 + (j + 0.1) * ch], [x0 + (i + 0.9) * cw, y0 + (j + 0.9) * ch])
                     for i, j in cells])


def measure_points(pairs: list, seeds: int, n_points: int, noise: float, placement: str = "random") -> dict:
    from lutfuse_deploy.rig.points import fit_points

    result = {}
    for model in ("vi", "both"):
        errors = []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            for _name, truth, _ir, _vi in pairs:
                box = Rig(truth.ir_size, truth.vi_size, truth.homography, "overlap").output_box()
                vi_pts = _place(rng, box, n_points, placement)
                ir_pts = apply_homography(truth.inverse, vi_pts)
                vi_pts = vi_pts + rng.normal(0, noise, vi_pts.shape)
                if model == "both":
                    ir_pts = ir_pts + rng.normal(0, noise, ir_pts.shape)
                iw, ih = truth.ir_size
                vw, vh = truth.vi_size
                ir_pts = np.clip(ir_pts, [-0.5, -0.5], [iw - 0.5, ih - 0.5])
                vi_pts = np.clip(vi_pts, [-0.5, -0.5], [vw - 0.5, vh - 0.5])
                fit = fit_points(np.concatenate([ir_pts, vi_pts], axis=1), truth.ir_size, truth.vi_size)
                errors.append(corner_error_px(fit.rig.homography, truth))
        result[f"noise_on_{model}"] = _stats(errors)
    return result


def _refine_one(task: tuple) -> dict:
    name, seed, truth, start, ir, vi, opts = task
    e0 = corner_error_px(start.homography, truth)
    t0 = time.perf_counter()
    try:
        out = refine_rig(start, [(ir, vi)], opts)
        row = {"pair": name, "seed": seed, "start_px": e0, "refused": False,
               "end_px": corner_error_px(out.rig.homography, truth),
               "score_start": out.score_start, "score": out.score}
    except RigError as exc:
        row = {"pair": name, "seed": seed, "start_px": e0, "refused": True, "end_px": e0, "why": str(exc)}
    row["seconds"] = time.perf_counter() - t0
    return row


def measure_refine(pairs: list, seeds: int, offset: float, opts: RefineOptions, jobs: int, verbose: bool) -> dict:
    from concurrent.futures import ProcessPoolExecutor

    tasks = []
    for seed in range(seeds):
        rng = np.random.default_rng(1000 + seed)  # the starts depend only on the seed, not on --jobs
        tasks += [(name, seed, truth, start_off_by(truth, offset, rng), ir, vi, opts) for name, truth, ir, vi in pairs]
    rows = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for row in pool.map(_refine_one, tasks):
            rows.append(row)
            if verbose:
                print(f"{row['pair']} seed {row['seed']}: {row['start_px']:.2f} -> {row['end_px']:.2f} px"
                      f"{' REFUSED' if row['refused'] else ''} ({row['seconds']:.1f} s)", file=sys.stderr, flush=True)
    accepted = [r for r in rows if not r["refused"]]
    worse = [r for r in accepted if r["end_px"] > r["start_px"]]
    return {"runs": len(rows), "refused": len(rows) - len(accepted),
            "accepted_worse_by_truth": [(r["pair"], r["seed"], round(r["end_px"], 2)) for r in worse],
            "corner_error_px_all": _stats([r["end_px"] for r in rows]),
            "corner_error_px_accepted": _stats([r["end_px"] for r in accepted]),
            "seconds_per_run": _stats([r["seconds"] for r in rows]),
            "rows": rows}


def _machine() -> dict:
    """What the timings ran on (they scale with the machine's load: a shared machine is noted as such)."""
    import os
    import platform

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": cpu, "cpus": os.cpu_count(), "load_at_start": os.getloadavg()[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--what", choices=("points", "refine", "both"), default="both")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--offset", type=float, default=15.0, help="start error for refine (visible pixels)")
    ap.add_argument("--points", type=int, default=8)
    ap.add_argument("--noise", type=float, default=1.0, help="click noise, px per coordinate")
    ap.add_argument("--placement", choices=("random", "grid"), default="random",
                    help="point pairs uniformly at random in the overlap, or one per cell of a 4-column grid")
    ap.add_argument("--pairs", type=int, default=0, help="only the first N pairs (0: all)")
    ap.add_argument("--jobs", type=int, default=1, help="refinements run in this many processes at once")
    ap.add_argument("--json", type=Path, default=None, help="also write every run here")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    root = data_root() / SET
    if not (root / "homographies.json").is_file():
        print(f"error: {root}: no homographies.json (set LUTFUSE_DATA)", file=sys.stderr)
        return 2
    pairs = load_set(root)[: args.pairs or None]
    report: dict = {"set": SET, "pairs": len(pairs), "seeds": args.seeds, "machine": _machine()}
    if args.what in ("points", "both"):
        report["points"] = measure_points(pairs, args.seeds, args.points, args.noise, args.placement)
    if args.what in ("refine", "both"):
        report["refine"] = measure_refine(pairs, args.seeds, args.offset, RefineOptions(), args.jobs, args.verbose)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    short = {k: ({kk: vv for kk, vv in v.items() if kk != "rows"} if isinstance(v, dict) else v)
             for k, v in report.items()}
    print(json.dumps(short, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
