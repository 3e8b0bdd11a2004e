"""A rig from clicked point pairs: a robust homography fit (OpenCV's MAGSAC++), residuals, outliers.

Users click 8-20 pairs of the same scene point in the two images. One wrong click must not bend the
fit, so the fit is robust (MAGSAC++, then a least-squares refit on the inliers) and the outliers are
named by their row, so the user can fix or delete them.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lutfuse_deploy.errors import MissingDependency, RigError
from lutfuse_deploy.rig.file import Rig, apply_homography, made_record, normalise

COLUMNS = ("ir_x", "ir_y", "vi_x", "vi_y")
MIN_POINTS = 4
OUTLIER_PX = 5.0  # a pair further than this from the inliers' fit is a wrong click (clicks are 1-2 px off)
COLLINEAR = 1e-3  # smallest / largest singular value of the centred points below this: on one line


@dataclass(frozen=True)
class PointFit:
    rig: Rig
    residuals: np.ndarray  # per pair, |H ir - vi| in visible pixels
    inliers: np.ndarray  # bool per pair

    @property
    def outliers(self) -> list[int]:
        return [i for i, ok in enumerate(self.inliers) if not ok]

    def summary(self) -> dict[str, Any]:
        inl = self.residuals[self.inliers]
        return {"pairs": int(len(self.residuals)), "inliers": int(self.inliers.sum()),
                "outliers": self.outliers, "rms_px": float(np.sqrt(np.mean(inl ** 2))),
                "max_inlier_px": float(inl.max())}


def read_points(path: str | Path) -> np.ndarray:
    """N x 4 float64 array (ir_x, ir_y, vi_x, vi_y) from a CSV with those columns in a header row."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(line for line in f if line.strip() and not line.lstrip().startswith("#")))
    except FileNotFoundError:
        raise RigError(f"{path}: no such points file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RigError(f"{path}: cannot read the points file ({exc})") from None
    if not rows:
        raise RigError(f"{path}: empty points file (expected a header {','.join(COLUMNS)} and one row per pair)")
    header = [c.strip().lower() for c in rows[0]]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise RigError(f"{path}: header must name the columns {','.join(COLUMNS)} (missing {', '.join(missing)})")
    index = [header.index(c) for c in COLUMNS]
    out = []
    for n, row in enumerate(rows[1:], start=2):
        try:
            values = [float(row[i]) for i in index]
        except (IndexError, ValueError):
            raise RigError(f"{path}: row {n} is not four numbers: {','.join(row)}") from None
        if not all(np.isfinite(values)):
            raise RigError(f"{path}: row {n} holds a non-finite number")
        out.append(values)
    return np.array(out, dtype=np.float64).reshape(-1, 4)


def write_points(path: str | Path, points: np.ndarray) -> None:
    from lutfuse_deploy.io.files import write_text_atomic

    lines = [",".join(COLUMNS)] + [",".join(f"{v:.3f}" for v in row) for row in np.asarray(points)]
    write_text_atomic(path, "\n".join(lines) + "\n")


def _check_inside(points: np.ndarray, size: tuple[int, int], role: str) -> None:
    w, h = size
    bad = [i for i, (x, y) in enumerate(points) if not (-0.5 <= x <= w - 0.5 and -0.5 <= y <= h - 0.5)]
    if bad:
        rows = ", ".join(f"pair {i + 1} ({points[i][0]:g}, {points[i][1]:g})" for i in bad[:5])
        raise RigError(f"{len(bad)} {role} point(s) outside the {w}x{h} {role} image: {rows}")


def _check_spread(points: np.ndarray, role: str) -> None:
    centred = points - points.mean(axis=0)
    s = np.linalg.svd(centred, compute_uv=False)
    if s[0] < 1e-9 or s[-1] / s[0] < COLLINEAR:
        raise RigError(f"the {role} points lie on one line (or one spot): a homography needs points "
                       "spread over the image, at least 4 not on one line")


def fit_points(points: np.ndarray, ir_size: tuple[int, int], vi_size: tuple[int, int],
               output: str = "visible", source: dict[str, Any] | None = None) -> PointFit:
    """Fit the rig's homography to point pairs (N x 4: ir_x, ir_y, vi_x, vi_y)."""
    try:
        import cv2
    except ImportError:
        raise MissingDependency("opencv-python-headless", "rig") from None
    points = np.asarray(points, dtype=np.float64).reshape(-1, 4)
    if len(points) < MIN_POINTS:
        raise RigError(f"{len(points)} point pair(s): a homography needs at least {MIN_POINTS} "
                       "(8-20 spread over the image give a good fit)")
    ir, vi = points[:, :2], points[:, 2:]
    _check_inside(ir, ir_size, "ir")
    _check_inside(vi, vi_size, "vi")
    _check_spread(ir, "ir")
    _check_spread(vi, "vi")
    if len(points) == MIN_POINTS:
        h, mask = cv2.findHomography(ir, vi, 0)
        mask = None if h is None else np.ones((4, 1), np.uint8)
    else:
        h, mask = cv2.findHomography(ir, vi, cv2.USAC_MAGSAC, OUTLIER_PX, maxIters=10000, confidence=0.9999)
    if h is None or mask is None or int(mask.sum()) < MIN_POINTS:
        raise RigError("no homography fits these points (three of them on one line, or too many wrong clicks)")
    # MAGSAC finds the wrong clicks; the rig is then a least-squares fit on every pair within OUTLIER_PX
    # of the inliers' fit (MAGSAC alone drops good pairs whose 1-2 px click noise falls near its threshold).
    inliers = mask.ravel().astype(bool)
    for _ in range(3):
        refit, _ = cv2.findHomography(ir[inliers], vi[inliers], 0)
        if refit is None:
            break
        h = refit
        keep = np.linalg.norm(apply_homography(h, ir) - vi, axis=1) <= OUTLIER_PX
        if keep.sum() < MIN_POINTS or (keep == inliers).all():
            break
        inliers = keep
    residuals = np.linalg.norm(apply_homography(h, ir) - vi, axis=1)
    made = made_record("points", points=[[float(v) for v in row] for row in points],
                       residuals_px=[round(float(r), 3) for r in residuals],
                       outliers=[int(i) + 1 for i in np.flatnonzero(~inliers)], **({"source": source} if source else {}))
    rig = Rig(ir_size, vi_size, normalise(h), output, {}).with_homography(h, made)
    return PointFit(rig, residuals, inliers)
