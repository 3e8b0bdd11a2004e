"""Evaluate a folder of fused images against their IR/VI sources and write JSON/CSV reports.

Images are read the way the papers' evaluators read them: every image as 8-bit gray, the visible
and any RGB fused image with the ITU-R 601-2 luma of PIL ``convert('L')`` (CDDFuse's cv2 float
luma + ``np.round`` differs by one level on ~0.06 % of colours). A pair that cannot be evaluated
becomes one problem line and is skipped; the caller decides whether that is fatal.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from lutfuse_deploy.errors import InputError, LutfuseError
from lutfuse_deploy.io.files import atomic_path, write_json_atomic
from lutfuse_deploy.io.images import IMAGE_EXTS, ImagePair, find_pairs, load_pair, read_vi
from lutfuse_deploy.metrics.fusion import METRIC_NAMES, compute_all

Report = dict[str, dict[str, Any]]


def _fused_index(fused: Path) -> dict[str, list[Path]]:
    """Stem -> image files in the fused folder (fused outputs are often .png while inputs are .jpg)."""
    index: dict[str, list[Path]] = {}
    for p in sorted(fused.iterdir()):
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTS:
            index.setdefault(p.stem, []).append(p)
    return index


def _evaluate_one(pair: ImagePair, fused_path: Path, ssim_data_range: float, ir16: str) -> dict[str, float]:
    ir, vi = load_pair(pair, vi_mode="L", ir16=ir16)  # checks the ir/vi sizes
    fused = read_vi(fused_path, mode="L")  # gray stays gray, RGB gets the same luma as VI
    if fused.shape != ir.shape:
        raise ValueError(
            f"size mismatch, fused {fused_path.name} is {fused.shape[1]}x{fused.shape[0]} but "
            f"ir/vi are {ir.shape[1]}x{ir.shape[0]}"
        )
    return compute_all(ir, vi, fused, ssim_data_range=ssim_data_range)


def mean_metrics(per_image: dict[str, dict[str, float]]) -> dict[str, float]:
    """Plain arithmetic mean per metric over the evaluated images (a nan in any image stays nan)."""
    if not per_image:
        return {}
    return {m: float(np.mean([row[m] for row in per_image.values()])) for m in METRIC_NAMES}


def evaluate_folders(
    ir: str | os.PathLike[str],
    vi: str | os.PathLike[str],
    fused: str | os.PathLike[str],
    ssim_data_range: float = 2.0,
    progress: bool = True,
    ir16: str = "refuse",
) -> tuple[Report, list[str]]:
    """Pair ``ir``/``vi``/``fused`` by file stem and compute every metric per pair.

    ``ir16`` maps 16-bit IR to the 8 bits the metrics read, as ``fuse --ir16`` did before fusing
    (the same mode gives the same IR image the fused one was made from).

    Returns ``({"per_image": {name: {metric: value}}, "mean": {metric: value}}, problems)``;
    ``problems`` holds one line per pair that was skipped (unpaired, missing or ambiguous fused
    file, unreadable image, size mismatch, image too small for a metric). Missing or empty
    folders raise ``InputError`` instead.
    """
    fused_path = Path(fused)
    pairs, pair_problems = find_pairs(Path(ir), Path(vi))
    problems = list(pair_problems)
    if fused_path.is_file():
        if not (Path(ir).is_file() and Path(vi).is_file()):
            raise InputError(f"--fused {fused_path} is a file: give --ir and --vi as files too, or a folder")
        index = {pair.name: [fused_path] for pair in pairs}
    elif fused_path.is_dir():
        index = _fused_index(fused_path)
    else:
        raise InputError(f"{fused_path}: no such fused file or folder")

    per_image: dict[str, dict[str, float]] = {}
    for pair in _progress(pairs, progress):
        candidates = index.get(pair.name, [])
        if not candidates:
            problems.append(f"{pair.name}: no fused image named {pair.name}.* in {fused_path}")
            continue
        if len(candidates) > 1:
            names = ", ".join(p.name for p in candidates)
            problems.append(f"{pair.name}: several fused images match ({names})")
            continue
        try:
            per_image[pair.name] = _evaluate_one(pair, candidates[0], ssim_data_range, ir16)
        except (LutfuseError, OSError, ValueError) as exc:
            msg = str(exc)
            problems.append(msg if msg.startswith(f"{pair.name}:") else f"{pair.name}: {msg}")
    return {"per_image": per_image, "mean": mean_metrics(per_image)}, problems


def _progress(pairs: list, enabled: bool) -> Iterable:
    if not enabled:
        return pairs
    from tqdm import tqdm

    # disable=None: no bar when stderr is not a terminal (CI logs, pipes)
    return tqdm(pairs, desc="evaluate", unit="pair", disable=None, leave=False)


def _json_value(v: float) -> float | None:
    """Strict JSON has no NaN/Infinity: an undefined metric is written as null."""
    return v if math.isfinite(v) else None


def write_json(path: str | os.PathLike[str], report: Report) -> None:
    """The report as strict JSON, written atomically; non-finite values become null."""
    obj = {
        "per_image": {
            name: {m: _json_value(v) for m, v in row.items()} for name, row in report["per_image"].items()
        },
        "mean": {m: _json_value(v) for m, v in report["mean"].items()},
    }
    write_json_atomic(path, obj)  # OS errors become one OutputError naming the path


def write_csv(path: str | os.PathLike[str], report: Report) -> None:
    """One row per image then a ``mean`` row; full float precision; written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", *METRIC_NAMES])
        for name, row in report["per_image"].items():
            writer.writerow([name, *(repr(row[m]) for m in METRIC_NAMES)])
        if report["mean"]:
            writer.writerow(["mean", *(repr(report["mean"][m]) for m in METRIC_NAMES)])
