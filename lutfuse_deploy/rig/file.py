"""The rig file (``rig.yaml``): two camera sizes, the homography between them and how it was made.

Conventions (docs/rigs.md): pixel centres sit at integer coordinates (OpenCV's convention: the first
pixel's centre is (0, 0), an image W wide spans [-0.5, W - 0.5]); ``homography`` maps a thermal (IR)
pixel (x, y, 1) to a visible pixel. Fusing in the visible camera's geometry samples the IR at
H^-1 (x_v, y_v, 1) for every output pixel. A hand-written file with only ``ir_size``, ``vi_size`` and
``homography`` is a valid rig; everything else has a default.

``load_rig`` checks every fault it can find and names them all in one line, so a user fixes a
hand-written file in one go. Loading needs only NumPy and PyYAML: a deployed ``fuse --rig`` does not
need OpenCV.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from lutfuse_deploy.errors import RigError

FORMAT = "lutfuse-deploy/rig-v1"
OUTPUTS = ("visible", "overlap")  # the output frame: the whole visible frame, or the box the IR sees
MIN_SIDE = 3
MIN_COVERAGE = 0.05  # the IR frame must cover at least this share of the visible frame
MIN_OVERLAP_SIDE = 8  # the overlap box must be at least this many pixels on each side
KEYS = ("format", "ir_size", "vi_size", "homography", "output", "made")


@dataclass(frozen=True)
class Rig:
    """A validated rig: sizes are (W, H), ``homography`` maps IR pixels to visible pixels."""

    ir_size: tuple[int, int]
    vi_size: tuple[int, int]
    homography: np.ndarray  # 3 x 3 float64, normalised so that H[2, 2] = 1 (or the largest entry 1)
    output: str = "visible"
    made: dict[str, Any] = field(default_factory=dict)

    @property
    def inverse(self) -> np.ndarray:
        """Visible pixel -> IR pixel (what a warp samples with)."""
        return np.linalg.inv(self.homography)

    def ir_corners_in_vi(self) -> np.ndarray:
        """The IR frame's outer pixel centres (TL, TR, BR, BL) in visible pixels, 4 x 2."""
        w, h = self.ir_size
        return apply_homography(self.homography, np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], float))

    def coverage(self) -> float:
        """The share of the visible frame the IR frame covers (0..1)."""
        vw, vh = self.vi_size
        area = _polygon_area(_clip_to_box(self.ir_corners_in_vi(), -0.5, -0.5, vw - 0.5, vh - 0.5))
        return area / float(vw * vh)

    def output_box(self) -> tuple[int, int, int, int]:
        """(x0, y0, width, height) of the output in visible pixels: the whole frame for ``visible``;
        for ``overlap`` the axis-aligned box whose every pixel sees the IR frame (inside its quad)."""
        vw, vh = self.vi_size
        if self.output == "visible":
            return 0, 0, vw, vh
        tl, tr, br, bl = self.ir_corners_in_vi()
        x0 = max(0, math.ceil(max(tl[0], bl[0])))
        x1 = min(vw - 1, math.floor(min(tr[0], br[0])))
        y0 = max(0, math.ceil(max(tl[1], tr[1])))
        y1 = min(vh - 1, math.floor(min(bl[1], br[1])))
        return x0, y0, max(0, x1 - x0 + 1), max(0, y1 - y0 + 1)

    @property
    def out_size(self) -> tuple[int, int]:
        """(W, H) of the fused output."""
        _, _, w, h = self.output_box()
        return w, h

    def with_homography(self, homography: np.ndarray, made: dict[str, Any]) -> Rig:
        """A new rig with another homography (checked) and a new record of how it was made."""
        rig = replace(self, homography=normalise(np.asarray(homography, dtype=np.float64)), made=made)
        faults = rig_faults(rig)
        if faults:
            raise RigError("the fitted homography is not a usable rig: " + "; ".join(faults))
        return rig

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "ir_size": list(self.ir_size), "vi_size": list(self.vi_size),
                "homography": [[float(f"{v:.12g}") for v in row] for row in self.homography],
                "output": self.output, "made": self.made}

    def describe(self) -> str:
        """One line for people: sizes, output and coverage."""
        w, h = self.out_size
        return (f"IR {self.ir_size[0]}x{self.ir_size[1]} -> visible {self.vi_size[0]}x{self.vi_size[1]}, "
                f"output {self.output} {w}x{h}, IR covers {self.coverage():.0%} of the visible frame")


def apply_homography(h: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Map N x 2 points through a 3 x 3 homography (with the division)."""
    pts = np.concatenate([xy, np.ones((len(xy), 1))], axis=1) @ np.asarray(h, dtype=np.float64).T
    return pts[:, :2] / pts[:, 2:3]


def normalise(h: np.ndarray) -> np.ndarray:
    """Scale a homography so that H[2, 2] = 1 (a homography is defined up to scale)."""
    if abs(h[2, 2]) > 1e-12:
        return h / h[2, 2]
    return h / np.abs(h).max()


def _clip_to_box(poly: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Sutherland-Hodgman clip of a convex polygon to a box (written here, a few lines, so that loading a
    rig needs no OpenCV)."""
    pts = [tuple(p) for p in poly]
    for axis, limit, keep_below in ((0, x0, False), (0, x1, True), (1, y0, False), (1, y1, True)):
        out: list[tuple[float, float]] = []
        for i, cur in enumerate(pts):
            prev = pts[i - 1]
            cur_in = cur[axis] <= limit if keep_below else cur[axis] >= limit
            prev_in = prev[axis] <= limit if keep_below else prev[axis] >= limit
            if cur_in != prev_in:
                t = (limit - prev[axis]) / (cur[axis] - prev[axis])
                out.append((prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])))
            if cur_in:
                out.append(cur)
        pts = out
        if not pts:
            break
    return np.array(pts, dtype=np.float64).reshape(-1, 2)


def _polygon_area(poly: np.ndarray) -> float:
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def _size(value: Any, key: str, faults: list[str]) -> tuple[int, int] | None:
    ok = (isinstance(value, (list, tuple)) and len(value) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
    if not ok:
        faults.append(f"{key} must be [width, height] in whole pixels, got {value!r}")
        return None
    if min(value) < MIN_SIDE:
        faults.append(f"{key} {value[0]}x{value[1]} is smaller than {MIN_SIDE}x{MIN_SIDE}")
        return None
    return int(value[0]), int(value[1])


def _matrix(value: Any, faults: list[str]) -> np.ndarray | None:
    try:
        h = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        faults.append("homography must be a 3x3 list of numbers")
        return None
    if h.shape != (3, 3):
        faults.append(f"homography must be 3x3, got shape {'x'.join(map(str, h.shape)) or 'scalar'}")
        return None
    if not np.isfinite(h).all():
        faults.append("homography holds a non-finite value (nan or inf)")
        return None
    return h


def geometry_faults(h: np.ndarray, ir_size: tuple[int, int], vi_size: tuple[int, int]) -> list[str]:
    """What makes ``h`` unusable between frames of these sizes (empty when it is fine)."""
    if abs(np.linalg.det(h)) < 1e-12 * np.abs(h).max() ** 3 or np.linalg.cond(h) > 1e12:
        return ["homography is not invertible"]
    w, hh = ir_size
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [w - 1, hh - 1, 1], [0, hh - 1, 1]], dtype=np.float64)
    third = corners @ h[2]
    # w = h20 x + h21 y + h22 is affine, so its sign over the frame is its sign at the corners
    if not ((third > 0).all() or (third < 0).all()):
        return ["homography sends part of the IR frame to infinity (the image would fold)"]
    if np.linalg.det(h) / third[0] ** 3 <= 0:  # Jacobian determinant det(H) / w^3, one sign over the frame
        return ["homography mirrors the IR frame (orientation not kept)"]
    rig = Rig(ir_size, vi_size, normalise(h))
    if rig.coverage() < MIN_COVERAGE:
        return [f"the IR frame covers {rig.coverage():.1%} of the visible frame (less than {MIN_COVERAGE:.0%}): "
                "wrong sizes, or the homography maps visible to IR instead of IR to visible"]
    return []


def rig_faults(rig: Rig) -> list[str]:
    faults = geometry_faults(rig.homography, rig.ir_size, rig.vi_size)
    if not faults and rig.output == "overlap":
        _, _, w, h = rig.output_box()
        if min(w, h) < MIN_OVERLAP_SIDE:
            faults.append(f"the overlap box is {w}x{h}, too small to fuse: use output: visible")
    return faults


def rig_from_dict(data: Any, source: str = "rig") -> Rig:
    """Validate a parsed rig file; one ``RigError`` naming every fault found."""
    if not isinstance(data, dict):
        raise RigError(f"{source}: a rig file is a mapping with ir_size, vi_size and homography")
    faults: list[str] = []
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        faults.append(f"unknown key(s) {', '.join(map(str, unknown))} (known: {', '.join(KEYS)})")
    if data.get("format", FORMAT) != FORMAT:
        faults.append(f"format {data.get('format')!r} is not {FORMAT!r} (written by a newer version?)")
    for key in ("ir_size", "vi_size", "homography"):
        if key not in data:
            faults.append(f"{key} is missing")
    ir_size = _size(data["ir_size"], "ir_size", faults) if "ir_size" in data else None
    vi_size = _size(data["vi_size"], "vi_size", faults) if "vi_size" in data else None
    h = _matrix(data["homography"], faults) if "homography" in data else None
    output = data.get("output", "visible")
    if output not in OUTPUTS:
        faults.append(f"output {output!r} must be one of {', '.join(OUTPUTS)}")
    made = data.get("made", {}) or {}
    if not isinstance(made, dict):
        faults.append("made must be a mapping (method, points, residuals, score, date)")
    if not faults and ir_size and vi_size and h is not None:
        rig = Rig(ir_size, vi_size, normalise(h), output, dict(made))
        faults = rig_faults(rig)
        if not faults:
            return rig
    raise RigError(f"{source}: " + "; ".join(faults))


def load_rig(path: str | Path) -> Rig:
    """Read and validate ``rig.yaml``."""
    from lutfuse_deploy.io.files import read_yaml

    return rig_from_dict(read_yaml(path, RigError, "rig file"), str(path))


def save_rig(rig: Rig, path: str | Path) -> Path:
    """Write ``rig`` atomically, with a comment that says what the fields mean."""
    import yaml

    from lutfuse_deploy.io.files import write_text_atomic

    header = ("# lutfuse-deploy rig: homography maps a thermal (IR) pixel (x, y, 1) to a visible pixel;\n"
              "# pixel centres at integer coordinates (OpenCV's convention); sizes are [width, height].\n")
    body = yaml.safe_dump(rig.to_dict(), sort_keys=False, default_flow_style=None, width=100)
    write_text_atomic(path, header + body)
    return Path(path)


def made_record(method: str, **details: Any) -> dict[str, Any]:
    """The ``made`` block: the method, its details and the date (UTC)."""
    return {"method": method, **details,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def corner_error_px(h: np.ndarray, truth: Rig) -> float:
    """Mean distance (visible pixels) by which ``h`` misplaces the corners of the region where the two
    frames overlap (the truth's overlap box): the accuracy measure of docs/rigs.md. Corners of the IR
    frame itself can lie far outside the visible frame, where no output pixel looks."""
    x0, y0, w, hh = replace(truth, output="overlap").output_box()
    corners = np.array([[x0, y0], [x0 + w - 1, y0], [x0 + w - 1, y0 + hh - 1], [x0, y0 + hh - 1]], dtype=np.float64)
    ir = apply_homography(truth.inverse, corners)
    return float(np.linalg.norm(apply_homography(h, ir) - corners, axis=1).mean())
