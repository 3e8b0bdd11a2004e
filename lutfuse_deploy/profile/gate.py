"""Latency budgets: strict YAML in, one check per limit out, an exit status from the checks.

File format (``recipes/budgets/*.yaml``)::

    budgets:
      - model: lutfuse            # model kind from the artifact's metadata
        backend: onnxruntime
        resolution: 640x480       # WIDTHxHEIGHT
        mode: e2e                 # optional: e2e (default) | device | cuda-graph
        artifact: lut.onnx        # optional: file name, when two artifacts share kind and backend
        p50_ms: 30                # optional absolute limits (ms) for a known device: p50_ms p95_ms p99_ms
        ratio_to:                 # optional relative limit, measured in the same run
          backend: torch          #   the reference: same model kind and resolution, this backend
                                  #   (or ``upstream``: the upstream LUT-Fuse code, ``profile --upstream``)
          max: 0.25               #   stat(this) / stat(reference) must be <= max
          stat: p50               #   optional: p50 (default) | p90 | p95 | p99 | mean | min
          mode: e2e               #   optional: the reference's mode (default: this entry's mode)
          artifact: lut.safetensors  # optional, as above

A ratio of p50 by default: the median is the statistic least moved by a noisy neighbour, and the
relative budget is the one a shared CI machine can hold. "4x faster than torch" is ``max: 0.25``.
Each entry needs at least one limit. An unknown key or a bad value is a ConfigError naming it; a
budget whose result was not measured is a failed check, never a silent pass. The one exception is a
reference the run reports as unavailable with a reason (the upstream code where its folder is absent):
its checks are ``skipped`` with that reason, shown in the table, and do not fail the gate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lutfuse_deploy import MODEL_KINDS
from lutfuse_deploy.errors import ConfigError, InputError
from lutfuse_deploy.profile.lanes import MODES, UPSTREAM
from lutfuse_deploy.profile.timing import MIN_SAMPLES, Measurement, Resolution
from lutfuse_deploy.runtime import BACKENDS

LIMIT_KEYS = ("p50_ms", "p95_ms", "p99_ms")
BUDGET_KEYS = ("model", "backend", "resolution", "mode", "artifact", *LIMIT_KEYS, "ratio_to")
RATIO_KEYS = ("backend", "max", "stat", "mode", "artifact")
RATIO_STATS = ("p50", "p90", "p95", "p99", "mean", "min")
STATUSES = ("held", "over", "not measured", "ambiguous", "skipped")
#: what ``ratio_to.backend`` may name: a runtime backend, or the upstream code's lane
REFERENCE_BACKENDS = (*BACKENDS, UPSTREAM)


@dataclass(frozen=True)
class RatioLimit:
    backend: str
    max: float
    stat: str = "p50"
    mode: str | None = None
    artifact: str | None = None


@dataclass(frozen=True)
class Budget:
    index: int
    model: str
    backend: str
    resolution: Resolution
    mode: str = "e2e"
    artifact: str | None = None
    limits: tuple[tuple[str, float], ...] = ()
    ratio: RatioLimit | None = None

    @property
    def target(self) -> str:
        art = f" [{self.artifact}]" if self.artifact else ""
        return f"{self.model}/{self.backend}{art} {self.resolution} {self.mode}"


@dataclass(frozen=True)
class Check:
    """One limit of one budget against the run: ``status`` is one of STATUSES."""

    budget: Budget
    metric: str
    limit: float
    measured: float | None
    status: str
    note: str = ""

    @property
    def held(self) -> bool:
        return self.status == "held"

    @property
    def failed(self) -> bool:
        """Over, not measured or ambiguous; a skipped check (its reason in ``note``) does not fail."""
        return self.status not in ("held", "skipped")

    def as_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget.index,
            "model": self.budget.model,
            "backend": self.budget.backend,
            "resolution": str(self.budget.resolution),
            "mode": self.budget.mode,
            "artifact": self.budget.artifact,
            "metric": self.metric,
            "limit": self.limit,
            "measured": self.measured,
            "status": self.status,
            "note": self.note,
        }


# -- loading and validation ------------------------------------------------------------------------
def load_budgets(path: str | Path) -> list[Budget]:
    """Read and strictly validate a budgets YAML file."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read budget file ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"{p}: not valid YAML{at}") from exc
    return parse_budgets(data, source=str(p))


def parse_budgets(data: Any, source: str = "budgets") -> list[Budget]:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with the key 'budgets'")
    _no_unknown(data, ("budgets",), source)
    items = data.get("budgets")
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{source}: 'budgets' must be a non-empty list")
    return [_parse_budget(item, i, f"{source}: budgets[{i}]") for i, item in enumerate(items)]


def _parse_budget(item: Any, index: int, where: str) -> Budget:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(item).__name__}")
    _no_unknown(item, BUDGET_KEYS, where)
    for key in ("model", "backend", "resolution"):
        if key not in item:
            raise ConfigError(f"{where}: missing required key '{key}'")
    limits = tuple((k, _positive(item[k], f"{where}.{k}")) for k in LIMIT_KEYS if k in item)
    ratio = _parse_ratio(item["ratio_to"], f"{where}.ratio_to") if "ratio_to" in item else None
    if not limits and ratio is None:
        raise ConfigError(f"{where}: no limit given (one of {', '.join(LIMIT_KEYS)}, ratio_to)")
    return Budget(
        index=index,
        model=_choice(item["model"], MODEL_KINDS, f"{where}.model"),
        backend=_choice(item["backend"], BACKENDS, f"{where}.backend"),
        resolution=_resolution(item["resolution"], f"{where}.resolution"),
        mode=_choice(item.get("mode", "e2e"), MODES, f"{where}.mode"),
        artifact=_text(item["artifact"], f"{where}.artifact") if "artifact" in item else None,
        limits=limits,
        ratio=ratio,
    )


def _parse_ratio(value: Any, where: str) -> RatioLimit:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping like {{backend: torch, max: 0.25}}")
    _no_unknown(value, RATIO_KEYS, where)
    for key in ("backend", "max"):
        if key not in value:
            raise ConfigError(f"{where}: missing required key '{key}'")
    return RatioLimit(
        backend=_choice(value["backend"], REFERENCE_BACKENDS, f"{where}.backend"),
        max=_positive(value["max"], f"{where}.max"),
        stat=_choice(value.get("stat", "p50"), RATIO_STATS, f"{where}.stat"),
        mode=_choice(value["mode"], MODES, f"{where}.mode") if "mode" in value else None,
        artifact=_text(value["artifact"], f"{where}.artifact") if "artifact" in value else None,
    )


def _no_unknown(mapping: dict[Any, Any], allowed: Sequence[str], where: str) -> None:
    for key in mapping:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r} (allowed: {', '.join(allowed)})")


def _positive(value: Any, where: str) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{where}: expected a positive number, got {value!r}")
    return float(value)


def _choice(value: Any, allowed: Sequence[str], where: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{where}: expected one of {', '.join(allowed)}, got {value!r}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a non-empty file name, got {value!r}")
    return value


def _resolution(value: Any, where: str) -> Resolution:
    try:
        return Resolution.parse(value) if isinstance(value, str) else Resolution.parse("")
    except InputError:
        raise ConfigError(f"{where}: expected WIDTHxHEIGHT such as 640x480, got {value!r}") from None


# -- evaluation ------------------------------------------------------------------------------------
def _find(
    results: Iterable[Measurement], model: str, backend: str, res: Resolution, mode: str, artifact: str | None
) -> list[Measurement]:
    return [
        r
        for r in results
        if r.kind == model
        and r.backend == backend
        and r.resolution == res
        and r.mode == mode
        and (artifact is None or Path(r.artifact).name == artifact or r.artifact == artifact)
    ]


def _stat(m: Measurement, stat: str) -> float:
    return float(getattr(m.stats, f"{stat}_ms"))


def evaluate(budgets: Sequence[Budget], results: Sequence[Measurement],
             unavailable: Mapping[str, str] | None = None) -> list[Check]:
    """One Check per limit; unmeasured or ambiguous targets are failed checks, not skipped ones.

    ``unavailable`` maps a reference backend the run could not measure to the reason: ratio checks
    against it are ``skipped`` with that reason.
    """
    checks: list[Check] = []
    unavailable = unavailable or {}
    for b in budgets:
        wanted = [(k, v) for k, v in b.limits]
        if b.ratio is not None:
            wanted.append((f"{b.ratio.stat} ratio to {b.ratio.backend}", b.ratio.max))
        found = _find(results, b.model, b.backend, b.resolution, b.mode, b.artifact)
        if len(found) != 1:
            status = "not measured" if not found else "ambiguous"
            note = (
                f"no result for {b.target}"
                if not found
                else f"{len(found)} results match {b.target}; add 'artifact:' to choose one"
            )
            checks.extend(Check(b, metric, limit, None, status, note) for metric, limit in wanted)
            continue
        m = found[0]
        for key, limit in b.limits:
            value = _stat(m, key[:-3])
            checks.append(Check(b, key, limit, value, "held" if value <= limit else "over", _caveats(m, key)))
        if b.ratio is not None and b.ratio.backend in unavailable:
            metric = f"{b.ratio.stat} ratio to {b.ratio.backend}"
            checks.append(Check(b, metric, b.ratio.max, None, "skipped", unavailable[b.ratio.backend]))
        elif b.ratio is not None:
            checks.append(_ratio_check(b, b.ratio, m, results))
    return checks


def _ratio_check(b: Budget, r: RatioLimit, m: Measurement, results: Sequence[Measurement]) -> Check:
    metric = f"{r.stat} ratio to {r.backend}"
    refs = _find(results, b.model, r.backend, b.resolution, r.mode or b.mode, r.artifact)
    refs = [x for x in refs if x is not m]
    if len(refs) != 1:
        status = "not measured" if not refs else "ambiguous"
        what = f"{b.model}/{r.backend} {b.resolution} {r.mode or b.mode}"
        note = f"no reference {what}" if not refs else f"{len(refs)} references {what}; add ratio_to.artifact"
        return Check(b, metric, r.max, None, status, note)
    ref = _stat(refs[0], r.stat)
    value = _stat(m, r.stat) / ref if ref > 0 else math.inf
    note = "; ".join(x for x in (f"{1 / value:.2f}x faster" if value > 0 else "",
                                 _caveats(refs[0], f"{r.stat}_ms", contention=False), _caveats(m, f"{r.stat}_ms"))
                    if x)
    return Check(b, metric, r.max, value, "held" if value <= r.max else "over", note)


def _caveats(m: Measurement, key: str, contention: bool = True) -> str:
    """What makes a measured number weaker than it looks: too few samples, a busy machine (the
    rounds are shared by every result at one size, so a ratio names them once)."""
    out = []
    if key in m.stats.underpowered():
        out.append(f"{m.backend} {key[:-3]} from {m.stats.n} samples (needs {MIN_SAMPLES[key]})")
    if contention and m.contended_rounds:
        out.append(f"{m.contended_rounds}/{len(m.round_loads)} rounds contended")
    return "; ".join(out)


def unplannable(budgets: Sequence[Budget], planned: set[tuple[str, str, Resolution]],
                unavailable: Mapping[str, str] | None = None) -> list[str]:
    """Budgets the planned run cannot measure (kind, backend, resolution), as one-line reasons;
    references in ``unavailable`` are skipped by ``evaluate``, not missing."""
    out = []
    for b in budgets:
        needs = [(b.model, b.backend)] + ([(b.model, b.ratio.backend)] if b.ratio else [])
        for model, backend in needs:
            if backend in (unavailable or {}) or (model, backend, b.resolution) in planned:
                continue
            hint = " (add --upstream)" if backend == UPSTREAM else ""
            out.append(f"budgets[{b.index}] needs {model}/{backend} at {b.resolution}{hint}")
    return out


def all_held(checks: Sequence[Check]) -> bool:
    """At least one check held and none failed (skipped ones, with their reason, do not fail)."""
    return any(c.held for c in checks) and not any(c.failed for c in checks)
