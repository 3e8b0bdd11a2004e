"""``make quality``: the shipped models against the official releases and simple baselines.

``python -m lutfuse_deploy.quality`` fuses the held-out sets (``<data>/ivif/{msrs_test,tno,roadscene}``
and the medical pairs) with the shipped teacher, LUT-Fuse and mini checkpoints, the official
LUT-Fuse and MMDRFuse checkpoints (imported on the fly from ``reference_root()`` into a temporary
folder) and the max/mean baselines, scores every output with ``metrics.fusion.compute_all`` and
writes ``docs/quality.md`` (tables, targets, student-teacher fidelity) and ``docs/quality.png``.

Conventions, the same for every row: each pair is cropped to even height and width (the MMDRFuse
teacher needs it), outputs go through ``pipeline.to_8bit`` (LUT-Fuse: clamp; MMDRFuse tanh: the
``--tanh-map``, default per-image min-max as the official test script and ``fuse`` do), RGB outputs
become gray with PIL's luma, as ``evaluate`` reads them.
"""

from __future__ import annotations

import datetime as _dt
import platform
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np

from lutfuse_deploy.errors import InputError, LutfuseError

IVIF_SETS = ("msrs_test", "tno", "roadscene")
MEDICAL_SETS = {"mri_pet": ("mri", "pet"), "mri_spect": ("mri", "spect")}
TARGET_METRICS = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "CC")
TARGET_WINS = 6
SHIPPED = {"teacher": "mmdrfuse-teacher", "lut": "lutfuse", "mini": "mmdrfuse-student"}
# (row name, checkpoint key) in table order; baselines follow.
ROWS = (
    ("LUT-Fuse (shipped)", "lut"),
    ("LUT-Fuse (official)", "official-lut"),
    ("mini (shipped)", "mini"),
    ("MMDRFuse student (official)", "official-student"),
    ("teacher (shipped)", "teacher"),
    ("MMDRFuse teacher (official)", "official-teacher"),
)
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
    "teacher (shipped)",
)


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


def shipped_checkpoints(folder: Path) -> dict[str, Path]:
    """The one checkpoint per role in ``folder`` (file name contains teacher / lut / mini)."""
    from lutfuse_deploy.io.checkpoints import read_metadata

    found: dict[str, Path] = {}
    for role, kind in SHIPPED.items():
        cands = [p for p in sorted(folder.glob(f"*{role}*.safetensors")) if read_metadata(p)["kind"] == kind]
        if len(cands) != 1:
            raise InputError(
                f"{folder}: expected one {kind} checkpoint named *{role}*.safetensors, found {len(cands)}"
            )
        found[role] = cands[0]
    return found


def validation_sources(metas: Mapping[str, dict[str, Any]], data: Path) -> dict[str, str]:
    """What each shipped checkpoint was chosen on, from its provenance, with the data root as ``<data>``:
    the report must say which pairs were used for choosing, and that can differ between models."""
    out = {}
    for role, meta in metas.items():
        if not role.startswith("official"):
            where = str(meta.get("provenance", {}).get("validation", "not recorded"))
            out[role] = where.replace(str(data), "<data>")
    return out


def official_checkpoints(reference: Path, tmp: Path) -> dict[str, Path]:
    from lutfuse_deploy.io.official import import_lutfuse, import_mmdrfuse

    lut, mm = reference / "lutfuse_official", reference / "mmdrfuse_official"
    if not (lut / "fine_tuned_lut.npy").is_file() or not (mm / "student.model").is_file():
        raise InputError(f"official checkpoints not found under {reference} (set LUTFUSE_REFERENCE)")
    (lp,) = import_lutfuse(lut / "fine_tuned_lut.npy", lut / "generator_context.pth", tmp / "lut.safetensors")
    sp, tp = import_mmdrfuse(mm / "student.model", mm / "teacher.model", tmp / "mmdrfuse")
    return {"official-lut": lp, "official-student": sp, "official-teacher": tp}


def _pairs(root: Path, ir_sub: str, vi_sub: str, limit: int | None) -> list:
    from lutfuse_deploy.io.images import find_pairs

    pairs, _problems = find_pairs(root / ir_sub, root / vi_sub)
    return pairs[:limit] if limit else pairs


def _fuse(model, ir: np.ndarray, rgb: np.ndarray, tanh_map: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(8-bit image as written by ``fuse``, {"written": its gray, "clip": gray of the [0, 1] clip})."""
    from lutfuse_deploy.metrics.fusion import to_gray
    from lutfuse_deploy.pipeline import to_8bit
    from lutfuse_deploy.train.validate import fused_output

    out = fused_output(model, ir, rgb)
    img = to_8bit(out, model.kind, tanh_map)
    clip = to_8bit(out, model.kind, "clip")
    return img, {m: (to_gray(x) if x.ndim == 3 else x) for m, x in (("written", img), ("clip", clip))}


def fidelity(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """PSNR (dB, peak 255) and SSIM (pytorch-msssim, Gaussian 11x11, data range 255) of two 8-bit grays."""
    import torch
    from pytorch_msssim import ssim

    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    psnr = float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)
    ta, tb = (torch.from_numpy(x.astype(np.float32))[None, None] for x in (a, b))
    return psnr, float(ssim(ta, tb, data_range=255.0))


def evaluate_set(
    name: str, pairs: list, models: Mapping[str, Any], tanh_map: str, progress: bool
) -> SetResult:
    from tqdm import tqdm

    from lutfuse_deploy.io.images import load_pair
    from lutfuse_deploy.metrics.fusion import compute_all, to_gray

    res = SetResult(name, len(pairs))
    for i, pair in enumerate(tqdm(pairs, desc=name, unit="pair", disable=not progress, leave=False)):
        ir, rgb = load_pair(pair, vi_mode="RGB")
        h, w = ir.shape[0] // 2 * 2, ir.shape[1] // 2 * 2
        ir, rgb = ir[:h, :w], np.ascontiguousarray(rgb[:h, :w])
        gray = to_gray(rgb)
        outputs: dict[str, np.ndarray] = {}
        grays: dict[str, dict[str, np.ndarray]] = {}
        for row, key in ROWS:
            img, grays[row] = _fuse(models[key], ir, rgb, tanh_map)
            outputs[row] = img
        outputs["max(ir, vi)"] = np.maximum(ir, gray)
        outputs["mean(ir, vi)"] = np.rint((ir.astype(np.float64) + gray) / 2).astype(np.uint8)
        for row, img in outputs.items():
            res.metrics.setdefault(row, []).append(
                compute_all(ir, gray, to_gray(img) if img.ndim == 3 else img)
            )
        for student, teacher, mapping in FIDELITY:
            res.fidelity.setdefault(f"{student} vs {teacher}", []).append(
                fidelity(grays[student][mapping], grays[teacher][mapping])
            )
        if i == 0:
            res.figure = {"IR": ir, "visible": rgb, **outputs}
    return res


def target_wins(res: SetResult, ours: str, theirs: str) -> list[str]:
    """The target metrics on which ``ours`` matches or beats ``theirs`` (higher is better for all ten)."""
    a, b = res.mean(ours), res.mean(theirs)
    return [m for m in TARGET_METRICS if a[m] >= b[m]]


def write_figure(path: Path, results: list[SetResult]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lutfuse_deploy.io.files import atomic_path

    rows = [r for r in results if r.figure]
    fig, axes = plt.subplots(
        len(rows), len(FIGURE_COLUMNS), figsize=(2.2 * len(FIGURE_COLUMNS), 1.9 * len(rows)), squeeze=False
    )
    for r, res in enumerate(rows):
        for c, col in enumerate(FIGURE_COLUMNS):
            ax = axes[r][c]
            img = res.figure[col]
            ax.imshow(img, cmap=None if img.ndim == 3 else "gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col, fontsize=8)
            if c == 0:
                ax.set_ylabel(res.name, fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def run_quality(
    out_md: Path,
    figure: Path | None,
    pretrained: Path,
    max_pairs: int | None,
    tanh_map: str,
    medical: bool,
    threads: int,
    progress: bool = True,
) -> list[SetResult]:
    import torch

    from lutfuse_deploy.io.checkpoints import load_model
    from lutfuse_deploy.paths import data_root, reference_root
    from lutfuse_deploy.quality_report import render_markdown

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    paths = shipped_checkpoints(pretrained)
    with tempfile.TemporaryDirectory(prefix="lutfuse-quality-") as tmp:
        paths.update(official_checkpoints(reference_root(), Path(tmp)))
        loaded = {k: load_model(p) for k, p in paths.items()}
    models = {k: model for k, (model, _) in loaded.items()}
    sets: list[tuple[str, list]] = []
    for name in IVIF_SETS:
        sets.append((name, _pairs(data_root() / "ivif" / name, "ir", "vi", max_pairs)))
    if medical:
        for name, (a, b) in MEDICAL_SETS.items():
            sets.append((name, _pairs(data_root() / "medical" / name, a, b, max_pairs)))
    results = [evaluate_set(name, pairs, models, tanh_map, progress) for name, pairs in sets if pairs]
    if figure is not None:
        write_figure(figure, [r for r in results if r.name in IVIF_SETS])
    info = {
        "command": "python -m lutfuse_deploy.quality " + " ".join(sys.argv[1:]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, torch {torch.__version__}, "
        f"{threads} thread(s)",
        "wall_s": time.perf_counter() - t0,
        "tanh_map": tanh_map,
        "checkpoints": {k: p.name for k, p in paths.items() if not k.startswith("official")},
        "validation": validation_sources({k: meta for k, (_, meta) in loaded.items()}, data_root()),
        "figure": figure.name if figure is not None else None,
    }
    from lutfuse_deploy.io.files import write_text_atomic

    write_text_atomic(out_md, render_markdown(results, info))
    return results


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--out",
    "out_md",
    type=click.Path(path_type=Path),
    default=None,
    help="Markdown report [docs/quality.md].",
)
@click.option(
    "--figure", type=click.Path(path_type=Path), default=None, help="PNG figure [docs/quality.png]."
)
@click.option("--no-figure", is_flag=True, help="Skip the figure.")
@click.option(
    "--pretrained", type=click.Path(path_type=Path), default=None, help="Folder of shipped checkpoints."
)
@click.option(
    "--max-pairs",
    type=click.IntRange(min=1),
    default=None,
    help="Only the first N pairs per set (quick look).",
)
@click.option(
    "--tanh-map",
    type=click.Choice(["minmax", "clip"]),
    default="minmax",
    show_default=True,
    help="MMDRFuse tanh -> 8 bits, for shipped and official alike.",
)
@click.option("--no-medical", is_flag=True, help="Skip the medical pairs.")
@click.option(
    "--threads", type=click.IntRange(min=1), default=1, show_default=True, help="torch CPU threads."
)
@click.option("--quiet", is_flag=True)
def main(
    out_md: Path | None,
    figure: Path | None,
    no_figure: bool,
    pretrained: Path | None,
    max_pairs: int | None,
    tanh_map: str,
    no_medical: bool,
    threads: int,
    quiet: bool,
) -> None:
    """Score shipped vs official models on the held-out sets and write docs/quality.md."""
    from lutfuse_deploy.paths import REPO_ROOT, pretrained_dir

    out_md = out_md or REPO_ROOT / "docs" / "quality.md"
    figure = None if no_figure else (figure or out_md.with_suffix(".png"))
    try:
        results = run_quality(
            out_md,
            figure,
            pretrained or pretrained_dir(),
            max_pairs,
            tanh_map,
            not no_medical,
            threads,
            progress=not quiet,
        )
    except LutfuseError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    for res in results:
        if res.name in IVIF_SETS:
            verdicts = [f"{ours}: {len(target_wins(res, ours, theirs))}/10" for ours, theirs in TARGETS]
            click.echo(f"{res.name}: " + ", ".join(verdicts))
    click.echo(f"wrote {out_md}" + (f" and {figure}" if figure else ""))


if __name__ == "__main__":
    main()
