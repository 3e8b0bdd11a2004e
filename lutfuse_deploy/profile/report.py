"""Profile output: a rich table, a JSON record with the environment, and a PNG plot.

Speed-ups compare p50 against the reference backend's ``e2e`` result for the same model kind and
resolution (the first such runner, in command-line order): ``2.0x`` means half the median latency.
Each row also says how busy other processes kept the CPUs during its rounds and how many rounds were
contended; percentiles from fewer samples than they need are marked ``*``. Peak RSS is the whole
process's high-water mark (every runner loaded so far), not one model's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lutfuse_deploy.errors import ConfigError, MissingDependency
from lutfuse_deploy.io.files import atomic_path, write_json_atomic
from lutfuse_deploy.profile.gate import Check
from lutfuse_deploy.profile.timing import MIN_SAMPLES, Measurement, Settings
from lutfuse_deploy.runtime.cpus import CONTENTION_CPUS

SCHEMA_VERSION = 2  # 2: per-round load, quiet selection, under-sampled percentiles, RSS scope
STAT_KEYS = ("min_ms", "mean_ms", "std_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "fps")


def choose_reference(results: Sequence[Measurement], requested: str | None = None) -> str | None:
    """The backend ratios refer to: the requested one, else torch when measured, else the first."""
    backends = list(dict.fromkeys(m.backend for m in results))
    if requested is not None:
        if requested not in backends:
            raise ConfigError(
                f"--reference {requested}: not among the measured backends ({', '.join(backends)})"
            )
        return requested
    if not backends:
        return None
    return "torch" if "torch" in backends else backends[0]


def speedups(results: Sequence[Measurement], reference: str | None) -> list[float | None]:
    """For each result, reference p50 / its p50 (None where no reference result exists)."""
    refs: dict[tuple[str, Any], Measurement] = {}
    for m in results:
        if m.backend == reference and m.mode == "e2e":
            refs.setdefault((m.kind, m.resolution), m)
    out: list[float | None] = []
    for m in results:
        ref = refs.get((m.kind, m.resolution))
        ok = ref is not None and m.stats.p50_ms > 0
        out.append(ref.stats.p50_ms / m.stats.p50_ms if ok and ref is not None else None)
    return out


def _label(m: Measurement, results: Sequence[Measurement]) -> str:
    """``kind/backend`` plus the file name when two artifacts share kind and backend."""
    twins = {r.artifact for r in results if r.kind == m.kind and r.backend == m.backend}
    name = f"{m.kind}/{m.backend}"
    if len(twins) > 1:  # the file name, or the whole path when two twins share a file name
        short = len({Path(a).name for a in twins}) == len(twins)
        name += f" [{Path(m.artifact).name if short else m.artifact}]"
    return name if m.mode == "e2e" else f"{name} {m.mode}"


def result_dict(m: Measurement, speedup: float | None, reference: str | None) -> dict[str, Any]:
    stats = m.stats.as_dict()
    return {
        "model": m.kind,
        "artifact": m.artifact,
        "backend": m.backend,
        "device": m.device,
        "mode": m.mode,
        "resolution": str(m.resolution),
        "width": m.resolution.width,
        "height": m.resolution.height,
        "megapixels": m.resolution.megapixels,
        "iterations": stats.pop("n"),
        "warmup": m.warmup,
        **{k: _finite(stats[k]) for k in STAT_KEYS},
        "underpowered_percentiles": m.stats.underpowered(),
        "samples": m.selection,
        "other_cpus_mean": None if m.other_cpus is None else round(m.other_cpus, 3),
        "contended_rounds": m.contended_rounds,
        "rounds": [None if x is None else x.as_dict() for x in m.round_loads],
        "peak_rss_mb": round(m.peak_rss_mb, 1),
        "peak_rss_scope": "process",
        "gpu_peak_mb": None if m.gpu_peak_mb is None else round(m.gpu_peak_mb, 1),
        "speedup_vs_reference": _finite(speedup),
        "reference": reference,
    }


def _finite(x: float | None) -> float | None:
    """JSON has no infinity: a non-finite number is written as null."""
    return None if x is None or not math.isfinite(x) else float(x)


def profile_document(
    results: Sequence[Measurement],
    environment: dict[str, Any],
    settings: Settings,
    *,
    inputs: str,
    reference: str | None,
    checks: Sequence[Check] | None = None,
    budget_file: str | None = None,
    run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON record: schema, environment, settings (plus ``run``: what was asked for, so the
    numbers can be re-measured), one entry per result, and the budget checks."""
    ups = speedups(results, reference)
    doc: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "environment": environment,
        "settings": {**settings.as_dict(), "inputs": inputs, "reference": reference,
                     "contention_cpus": CONTENTION_CPUS, "min_samples": MIN_SAMPLES, **(run or {})},
        "results": [result_dict(m, s, reference) for m, s in zip(results, ups, strict=True)],
    }
    if checks is not None:
        doc["budget"] = {
            "file": budget_file,
            "passed": not any(c.failed for c in checks),
            "checks": [c.as_dict() for c in checks],
        }
    return doc


def write_json(path: str | Path, doc: dict[str, Any]) -> None:
    write_json_atomic(path, doc)


# -- tables ----------------------------------------------------------------------------------------
#: How the n column shows which samples a row summarises (see ``table_notes``).
SELECTION_MARK = {"all": "", "quiet": " q", "all (no quiet round)": " !"}


def _ms(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.2f}" if x < 100 else f"{x:.1f}"


def results_table(results: Sequence[Measurement], reference: str | None) -> Any:
    """Rows = runner x mode x resolution; columns = the stats in ms, fps, memory and the speed-up."""
    from rich.markup import escape
    from rich.table import Table

    show_ratio = reference is not None and len({m.backend for m in results}) > 1
    show_gpu = any(m.gpu_peak_mb is not None for m in results)
    table = Table(title="latency (ms)", title_justify="left", header_style="bold")
    for name in (
        "model/backend",
        "size",
        "n",
        "min",
        "p50",
        "p90",
        "p95",
        "p99",
        "max",
        "mean",
        "std",
        "fps",
    ):
        table.add_column(name, justify="left" if name in ("model/backend", "size") else "right")
    table.add_column("busy CPUs", justify="right")
    table.add_column("contended", justify="right")
    table.add_column("proc peak RSS MB", justify="right")
    if show_gpu:
        table.add_column("GPU MB", justify="right")
    if show_ratio:
        table.add_column(f"x faster than {reference}", justify="right")
    for m, up in zip(results, speedups(results, reference), strict=True):
        s = m.stats
        thin = s.underpowered()
        row = [_label(m, results), str(m.resolution), f"{s.n}{SELECTION_MARK[m.selection]}"]
        row += [_ms(s.min_ms), _ms(s.p50_ms)]
        row += [_ms(getattr(s, k)) + ("*" if k in thin else "") for k in ("p90_ms", "p95_ms", "p99_ms")]
        row += [_ms(v) for v in (s.max_ms, s.mean_ms, s.std_ms)]
        busy = "-" if m.other_cpus is None else f"{m.other_cpus:.2f}"
        row += [f"{s.fps:.1f}", busy, f"{m.contended_rounds}/{len(m.round_loads)}", f"{m.peak_rss_mb:.0f}"]
        if show_gpu:
            row.append("-" if m.gpu_peak_mb is None else f"{m.gpu_peak_mb:.0f}")
        if show_ratio:
            row.append("-" if up is None else f"{up:.2f}x")
        table.add_row(escape(row[0]), *row[1:])  # "[file.onnx]" would otherwise be read as rich markup
    return table


def table_notes(results: Sequence[Measurement]) -> list[str]:
    """The footnotes the table's marks need, only those that occur."""
    notes = []
    if any(m.stats.underpowered() for m in results):
        need = ", ".join(f"{k[:-3]} >= {n}" for k, n in MIN_SAMPLES.items())
        notes.append(f"* percentile from fewer samples than it needs ({need}): raise --iters or --duration")
    if any(m.selection == "quiet" for m in results):
        notes.append("q: statistics of the quiet (uncontended) rounds only")
    if any(m.selection == "all (no quiet round)" for m in results):
        notes.append("!: no quiet round at this size: statistics of all rounds")
    if any(m.contended_rounds for m in results):
        notes.append(f"contended: rounds in which other processes kept more than {CONTENTION_CPUS} CPUs busy "
                     "(their timings and ratios are suspect; --quiet-only drops them)")
    return notes


def checks_table(checks: Sequence[Check]) -> Any:
    """Budget checks, the failing ones first, each with limit, measured value and status."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="latency budgets", title_justify="left", header_style="bold")
    for name in ("#", "target", "metric", "limit", "measured", "status", "note"):
        table.add_column(name, justify="right" if name in ("#", "limit", "measured") else "left")
    style = {"held": "green", "over": "bold red", "not measured": "bold red", "ambiguous": "bold red",
             "skipped": "yellow"}
    for c in sorted(checks, key=lambda c: (not c.failed, c.budget.index)):
        measured = "-" if c.measured is None else f"{c.measured:.3f}"
        table.add_row(
            str(c.budget.index), escape(c.budget.target), c.metric, f"{c.limit:g}", measured,
            f"[{style[c.status]}]{c.status}[/]", escape(c.note),
        )  # fmt: skip
    return table


# -- progress --------------------------------------------------------------------------------------
class RoundProgress:
    """``on_round(resolution, done, total)`` for ``run_profile``: a rich bar on a terminal; elsewhere
    (logs, CI) a plain line at most every ``every_s`` seconds, so short runs print nothing extra.
    The bar is redrawn between rounds only: a refresh thread would take CPU from the timed work."""

    def __init__(self, console: Any, every_s: float = 10.0) -> None:
        import time

        self.console, self.every_s, self._clock = console, every_s, time.monotonic
        self._last = self._clock()
        self._bar: Any = None
        self._task: Any = None
        self._res: Any = None

    def __enter__(self) -> RoundProgress:
        if self.console.is_terminal:
            from rich.progress import Progress

            self._bar = Progress(console=self.console, transient=True, auto_refresh=False)
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def message(self, text: str) -> None:
        """A progress line (loading, lanes) printed above the bar instead of through it."""
        self.console.print(text, markup=False, highlight=False)

    def __call__(self, res: Any, done: int, total: int) -> None:
        if self._bar is not None:
            if res != self._res:
                self._res = res
                self._task = self._bar.add_task(f"{res} rounds", total=total)
            self._bar.update(self._task, completed=done, refresh=True)
        elif self._clock() - self._last >= self.every_s:
            self._last = self._clock()
            self.console.print(f"{res}: round {done}/{total}")


# -- plot ------------------------------------------------------------------------------------------
def write_plot(path: str | Path, results: Sequence[Measurement]) -> None:
    """PNG: p50 latency vs megapixels per runner (band min..p95), and histograms at the largest size."""
    fig = plot_figure(results)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def plot_figure(results: Sequence[Measurement]) -> Any:
    """The figure ``write_plot`` saves. The min..p95 range is an error bar at every size (a band
    between sizes has no width when one size was measured); histogram counts are whole numbers."""
    try:
        from matplotlib.figure import Figure  # object API: no pyplot global state, no display needed
        from matplotlib.ticker import MaxNLocator
    except ImportError as exc:
        raise MissingDependency("matplotlib", "plot") from exc
    if not results:
        raise ConfigError("--plot: nothing was measured")
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    ax_lat, ax_hist = fig.subplots(1, 2)
    labels = list(dict.fromkeys(_label(m, results) for m in results))
    for label in labels:
        rows = sorted(
            (m for m in results if _label(m, results) == label), key=lambda m: m.resolution.megapixels
        )
        mp = [m.resolution.megapixels for m in rows]
        p50 = np.array([m.stats.p50_ms for m in rows])
        low, high = np.array([m.stats.min_ms for m in rows]), np.array([m.stats.p95_ms for m in rows])
        bars = ax_lat.errorbar(mp, p50, yerr=[p50 - low, high - p50], marker="o", capsize=4, label=label)
        if len(rows) > 1:
            ax_lat.fill_between(mp, low, high, alpha=0.2, color=bars.lines[0].get_color())
    ax_lat.set(xlabel="megapixels", ylabel="latency p50 (ms), band min..p95", title="latency vs image size")
    ax_lat.set_yscale("log")
    ax_lat.grid(True, which="both", alpha=0.3)
    ax_lat.legend(fontsize="small")

    largest = max((m.resolution for m in results), key=lambda r: r.megapixels)
    at = [m for m in results if m.resolution == largest]
    lo = max(min(float(m.samples_ms.min()) for m in at), 1e-6)
    hi = max(max(float(m.samples_ms.max()) for m in at), lo * 1.01)
    bins = np.geomspace(lo, hi, 50)
    for m in at:
        ax_hist.hist(m.samples_ms, bins=bins, histtype="step", linewidth=1.5, label=_label(m, results))
    ax_hist.set_xscale("log")
    ax_hist.yaxis.set_major_locator(MaxNLocator(integer=True))  # iterations are counted, never fractional
    ax_hist.set(xlabel="latency (ms)", ylabel="iterations", title=f"latency histogram at {largest}")
    ax_hist.legend(fontsize="small")
    return fig
