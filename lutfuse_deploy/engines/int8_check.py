"""What INT8 did to the output: a quantised graph (or engine) against the float32 export, measured.

A Q/DQ graph runs in ONNX Runtime on the CPU, so its error is known before anything reaches a
device: both graphs fuse the same check pairs (never the calibration pairs), both outputs become
the 8-bit images users see (``pipeline.to_8bit``), and the report holds the mean, 99th percentile
and largest difference in 8-bit steps (LSB, over every channel value), the share of values more than
``LSB_OFF`` steps off, and each fusion metric (``metrics.fusion``) on both, averaged over the pairs.
``Tolerance`` is the ``--int8-tolerance`` policy the build holds a quantised graph to.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from lutfuse_deploy.engines.calibration import CalibrationSet
from lutfuse_deploy.errors import InputError

LSB_OFF = 8  # a value this many 8-bit steps off is visibly wrong in a fused image
CHECK_PAIRS = 4  # pairs held out of the calibration source when --check-data is not given
CHECK_NPZ = "check.npz"


@dataclass(frozen=True)
class Tolerance:
    """``--int8-tolerance``: the error a quantised graph may show against float32, in 8-bit LSB, and
    the share of quantisable layers the sensitive-layer search may keep in float to get there."""

    p99: float = 4.0
    max: float = 32.0
    float_share: float = 0.5

    KEYS = ("p99", "max", "float")

    @classmethod
    def parse(cls, text: str | None) -> Tolerance:
        """``p99=4,max=32,float=0.5`` (any subset; the rest keep their defaults)."""
        if text is None:
            return cls()
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, eq, raw = part.partition("=")
            key = key.strip()
            if not eq or key not in cls.KEYS:
                raise InputError(f"--int8-tolerance {text!r}: expected KEY=VALUE with KEY in {', '.join(cls.KEYS)}")
            try:
                value = float(raw)
            except ValueError:
                raise InputError(f"--int8-tolerance {text!r}: {key} must be a number, got {raw!r}") from None
            limit = 1.0 if key == "float" else 255.0
            if not 0 <= value <= limit or math.isnan(value):
                raise InputError(f"--int8-tolerance {text!r}: {key} must be within 0..{limit:g}, got {raw}")
            values["float_share" if key == "float" else key] = value
        if not values:
            raise InputError(f"--int8-tolerance {text!r}: give at least one of {', '.join(cls.KEYS)}")
        return cls(**values)

    def __str__(self) -> str:
        return f"p99={self.p99:g},max={self.max:g},float={self.float_share:g}"

    def holds(self, stats: ErrorStats) -> bool:
        return stats.p99 <= self.p99 and stats.max <= self.max

    def excess(self, stats: ErrorStats) -> float:
        """How far ``stats`` is from the tolerance (<= 1: within), to rank candidates on both limits."""
        return max(stats.p99 / max(self.p99, 0.5), stats.max / max(self.max, 0.5))


@dataclass(frozen=True)
class ErrorStats:
    """|quantised - float32| over every channel value of the 8-bit outputs, in LSB."""

    mean: float
    p99: float
    max: float
    share_off: float  # share of values more than LSB_OFF steps off

    @classmethod
    def of(cls, ref: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> ErrorStats:
        diff = np.concatenate(
            [np.abs(a.astype(np.int16) - b.astype(np.int16)).ravel() for a, b in zip(ref, got, strict=True)]
        )
        return cls(
            mean=float(diff.mean()),
            p99=float(np.percentile(diff, 99)),
            max=float(diff.max()),
            share_off=float(np.mean(diff > LSB_OFF)),
        )

    def text(self) -> str:
        return f"p99 {self.p99:g} LSB, max {self.max:g} LSB"


@dataclass
class CheckReport:
    """One measured graph: errors, metrics of float32 and quantised outputs, where the pairs came from."""

    stats: ErrorStats
    pairs: int
    size: str  # WxH of the check pairs
    source: str
    metrics_float: dict[str, float] = field(default_factory=dict)
    metrics_int8: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "size": self.size,
            "source": self.source,
            **asdict(self.stats),
            "metrics_float32": self.metrics_float,
            "metrics_int8": self.metrics_int8,
        }


def held_out(data: CalibrationSet, n: int = CHECK_PAIRS) -> tuple[CalibrationSet, CalibrationSet]:
    """(calibration, check): the last pairs of the calibration source are kept out of calibration,
    so the check measures pairs the scales never saw; a quarter at most, and at least one pair."""
    if len(data) < 2:
        raise InputError(
            f"{data.source}: {len(data)} pair cannot be split into calibration and check pairs: pass --check-data"
        )
    k = max(1, min(n, len(data) // 4))
    cut = len(data) - k
    return (
        replace(data, ir=data.ir[:cut], vi=data.vi[:cut]),
        replace(data, ir=data.ir[cut:], vi=data.vi[cut:],
                source=f"{Path(data.source).name}: last {k}, held out of calibration"),
    )


def int8_sets(
    insert_qdq: bool,
    calib: CalibrationSet | None,
    check_spec: str | None,
    tolerance: str | None,
    *,
    vi_channels: int,
    hw: tuple[int, int],
    ir16: str = "refuse",
    ir_hw: tuple[int, int] | None = None,
) -> tuple[CalibrationSet | None, CalibrationSet | None, Tolerance]:
    """(calibration, check, tolerance) for a build: check pairs only where the Q/DQ graph is made
    here (``insert_qdq``); ``--check-data``/``--int8-tolerance`` anywhere else are refused."""
    if not insert_qdq:
        if check_spec is not None or tolerance is not None:
            raise InputError(
                "--check-data and --int8-tolerance apply to --precision int8 --qdq, where the Q/DQ graph is "
                "made (and measured) here"
            )
        return calib, None, Tolerance()
    policy = Tolerance.parse(tolerance)
    if calib is None:  # plan_precision refuses --qdq without calibration data
        return None, None, policy
    return (*check_sets(calib, check_spec, vi_channels=vi_channels, hw=hw, ir16=ir16, ir_hw=ir_hw), policy)


def check_sets(
    calib: CalibrationSet,
    check_spec: str | None,
    *,
    vi_channels: int,
    hw: tuple[int, int],
    ir16: str = "refuse",
    ir_hw: tuple[int, int] | None = None,
) -> tuple[CalibrationSet, CalibrationSet]:
    """(calibration, check) pairs for a Q/DQ build: ``--check-data`` read like ``--calib`` (a list,
    a folder, a calib.npz or a name from calibration/), else a held-out slice of ``calib``."""
    if check_spec is None:
        return held_out(calib)
    from lutfuse_deploy.engines.calibration import load_calibration

    check = replace(load_calibration(check_spec, vi_channels=vi_channels, hw=hw, ir16=ir16, ir_hw=ir_hw),
                    rig=calib.rig)
    shared = set(_pair_digests(check)) & set(_pair_digests(calib))
    if shared:
        raise InputError(
            f"--check-data {check_spec} shares {len(shared)} pair(s) with --calib: the check must use pairs "
            "the calibration never saw"
        )
    return calib, check


def _pair_digests(data: CalibrationSet) -> list[bytes]:
    import hashlib

    return [hashlib.sha256(data.ir[i].tobytes() + data.vi[i].tobytes()).digest() for i in range(len(data))]


def outputs_8bit(model: Path, data: CalibrationSet, kind: str, backend: str = "onnxruntime") -> list[np.ndarray]:
    """Fuse every check pair with the toolkit's runner for ``backend``; the 8-bit images users get."""
    from lutfuse_deploy.fuse.convert import to_8bit
    from lutfuse_deploy.runtime import create_runner

    options: dict[str, Any] = {"spin": False} if backend == "onnxruntime" else {}
    runner = create_runner(model, backend, **options)
    out = []
    with runner:
        for i in range(len(data)):
            feed = data.feed(i, runner.io)
            out.append(to_8bit(runner.infer(feed["ir"], feed["vi"])[0], kind))
    return out


def mean_metrics(data: CalibrationSet, fused: Sequence[np.ndarray]) -> dict[str, float]:
    """The fusion metrics (gray, as ``evaluate`` scores them) averaged over the check pairs."""
    from lutfuse_deploy.metrics.fusion import METRIC_NAMES, VIF_MIN_SIDE, compute_all, to_gray

    if min(fused[0].shape[:2]) < VIF_MIN_SIDE:
        return {}  # too small for 4-scale VIF: errors only
    sources = data.metric_sources
    rows = [compute_all(ir, vi, to_gray(f) if f.ndim == 3 else f) for (ir, vi), f in zip(sources, fused, strict=True)]
    return {name: float(np.mean([r[name] for r in rows])) for name in METRIC_NAMES}


def measure(
    ref: Sequence[np.ndarray],
    got: Sequence[np.ndarray],
    data: CalibrationSet,
    *,
    metrics_float: dict[str, float] | None = None,
) -> CheckReport:
    """The report for ``got`` against ``ref`` (both 8-bit outputs on ``data``); metrics too when
    ``metrics_float`` (the float32 ones, computed once) is given."""
    h, w = ref[0].shape[:2]
    report = CheckReport(ErrorStats.of(ref, got), len(ref), f"{w}x{h}", data.source)
    if metrics_float is not None:
        report.metrics_float = metrics_float
        report.metrics_int8 = mean_metrics(data, got) if metrics_float else {}
    return report


def compare_models(
    float_model: Path, int8_model: Path, data: CalibrationSet, kind: str, int8_backend: str
) -> CheckReport:
    """float32 ONNX in ONNX Runtime against a quantised ONNX or engine on ``data``, metrics included."""
    ref = outputs_8bit(float_model, data, kind)
    got = outputs_8bit(int8_model, data, kind, int8_backend)
    return measure(ref, got, data, metrics_float=mean_metrics(data, ref))


def _cell(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else "nan"


def table(rows: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """A Markdown table: one row per measured graph (``CheckReport.to_dict()``), error columns first,
    then each metric as int8 - float32."""
    from lutfuse_deploy.metrics.fusion import METRIC_NAMES

    names = [n for n in METRIC_NAMES if any(n in r.get("metrics_int8", {}) for _, r in rows)]
    head = ["graph", "mean LSB", "p99 LSB", "max LSB", f"> {LSB_OFF} LSB"] + [f"Δ{n}" for n in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, r in rows:
        cells = [label, f"{r['mean']:.3f}", f"{r['p99']:g}", f"{r['max']:g}", f"{100 * r['share_off']:.3f}%"]
        for n in names:
            a, b = r.get("metrics_int8", {}).get(n), r.get("metrics_float32", {}).get(n)
            cells.append(_cell(a - b) if a is not None and b is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
