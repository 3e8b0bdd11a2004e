"""What the quality report compares and the per-set results: rows, targets, sets, the sky crop.

Every other module of the package imports from here and nothing here imports them back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IVIF_SETS = ("msrs_test", "tno", "roadscene")
MEDICAL_SETS = {"mri_pet": ("mri", "pet"), "mri_spect": ("mri", "spect")}
TARGET_METRICS = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "CC")
TARGET_WINS = 6
NOISE = "noise"  # metrics.noise.flat_noise of the fused gray, added to every row's metrics
SHIPPED = {"teacher": "mmdrfuse-teacher", "lut": "lutfuse", "mini": "mmdrfuse-student"}
SHIPPED_STEMS = {"teacher": "teacher", "lut": "lutfuse", "mini": "mini"}  # the role's file among variants
# (row name, checkpoint key) in table order; baselines follow.
ROWS = (
    ("LUT-Fuse (shipped)", "lut"),
    ("LUT-Fuse (official)", "official-lut"),
    ("mini (shipped)", "mini"),
    ("MMDRFuse student (official)", "official-student"),
    ("teacher (shipped)", "teacher"),
    ("MMDRFuse teacher (official)", "official-teacher"),
)
# The official row a checkpoint of each kind is measured against (extra checkpoints use it too).
OFFICIAL_ROW = {
    "lutfuse": "LUT-Fuse (official)",
    "mmdrfuse-student": "MMDRFuse student (official)",
    "mmdrfuse-teacher": "MMDRFuse teacher (official)",
}
BASELINES = ("max(ir, vi)", "mean(ir, vi)")
TARGETS = (("LUT-Fuse (shipped)", "LUT-Fuse (official)"), ("mini (shipped)", "MMDRFuse student (official)"))
# (student, teacher, 8-bit mapping both are compared in): the scale each distillation matches.
# LUT-Fuse distils the teacher's output on the [0, 1] scale (L1), so both are clipped to [0, 1];
# MMDRFuse digestible distillation is scale-free (normalised maps), so both are compared as `fuse`
# writes them (tanh min-max): clipping would drop the negative half a student may use.
FIDELITY = (
    ("LUT-Fuse (shipped)", "teacher (shipped)", "clip"),
    ("mini (shipped)", "teacher (shipped)", "written"),
    ("MMDRFuse student (official)", "MMDRFuse teacher (official)", "written"),
)
FIGURE_COLUMNS = (
    "IR",
    "visible",
    "max(ir, vi)",
    "LUT-Fuse (official)",
    "LUT-Fuse (shipped)",
    "MMDRFuse student (official)",
    "mini (shipped)",
    "MMDRFuse teacher (official)",
    "teacher (shipped)",
)
# A flat sky where the FLIR camera of RoadScene shows banded noise: (set, pair, (top, left, height,
# width)). SF and AG reward copying that noise, so the report shows this crop and its noise per model.
SKY_CROP = ("roadscene", "FLIR_00211", (4, 8, 64, 192))


@dataclass
class SetResult:
    name: str
    pairs: int = 0
    metrics: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    fidelity: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    figure: dict[str, np.ndarray] = field(default_factory=dict)

    def mean(self, row: str) -> dict[str, float]:
        rows = self.metrics[row]
        return {m: float(np.nanmean([r[m] for r in rows])) for m in rows[0]}


@dataclass
class CropResult:
    """The sky crop of every column (uint8, as scored) and each fused row's noise there."""

    name: str
    images: dict[str, np.ndarray] = field(default_factory=dict)
    noise: dict[str, float] = field(default_factory=dict)


def target_wins(res: SetResult, ours: str, theirs: str) -> list[str]:
    """The target metrics on which ``ours`` matches or beats ``theirs`` (higher is better for all ten)."""
    a, b = res.mean(ours), res.mean(theirs)
    return [m for m in TARGET_METRICS if a[m] >= b[m]]
