"""``make quality``: fuse, score and write the report (``python -m lutfuse_deploy.quality``).

``python -m lutfuse_deploy.quality`` fuses the held-out sets (``<data>/ivif/{msrs_test,tno,roadscene}``
and the medical pairs) with the shipped teacher, LUT-Fuse and mini checkpoints, the official
LUT-Fuse and MMDRFuse checkpoints (imported on the fly from ``reference_root()`` into a temporary
folder) and the max/mean baselines, scores every output with ``metrics.fusion.compute_all`` and
writes ``docs/quality.md`` (tables, targets, student-teacher fidelity, noise in flat regions) and
``docs/quality.png``. ``--extra NAME=CKPT`` adds any other checkpoint (a training run) as a row,
measured against the official model of its kind.

Conventions, the same for every row: each pair is cropped to even height and width (the MMDRFuse
teacher needs it), outputs go through ``fuse.convert.to_8bit`` (LUT-Fuse: clamp; MMDRFuse tanh: the
``--tanh-map``, default per-image min-max as the official test script and ``fuse`` do), RGB outputs
become gray with PIL's luma, as ``evaluate`` reads them.
"""

from __future__ import annotations

import datetime as _dt
import platform
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from lutfuse_deploy.errors import InputError, LutfuseError
from lutfuse_deploy.quality.results import (
    BASELINES,
    FIDELITY,
    FIGURE_COLUMNS,
    IVIF_SETS,
    MEDICAL_SETS,
    NOISE,
    OFFICIAL_ROW,
    ROWS,
    SHIPPED,
    SHIPPED_STEMS,
    SKY_CROP,
    TARGETS,
    CropResult,
    SetResult,
    target_wins,
)


def shipped_checkpoints(folder: Path) -> dict[str, Path]:
    """The one checkpoint per role in ``folder`` (file name contains teacher / lut / mini).

    A variant beside it (``lutfuse-fast.safetensors`` next to ``lutfuse.safetensors``) is not the
    role's model: where several match, the one named exactly ``SHIPPED_STEMS[role]`` is.
    """
    from lutfuse_deploy.io.checkpoints import read_metadata

    found: dict[str, Path] = {}
    for role, kind in SHIPPED.items():
        cands = [p for p in sorted(folder.glob(f"*{role}*.safetensors")) if read_metadata(p)["kind"] == kind]
        exact = [p for p in cands if p.stem == SHIPPED_STEMS[role]]
        cands = exact if len(cands) > 1 and len(exact) == 1 else cands
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
            # provenance written since checkpoints became portable names the root $LUTFUSE_DATA
            out[role.removeprefix("extra:")] = where.replace(str(data), "<data>").replace("$LUTFUSE_DATA", "<data>")
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
    from lutfuse_deploy.fuse.convert import to_8bit
    from lutfuse_deploy.metrics.fusion import to_gray
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


def _even(ir: np.ndarray, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = ir.shape[0] // 2 * 2, ir.shape[1] // 2 * 2
    return ir[:h, :w], np.ascontiguousarray(rgb[:h, :w])


def _gray(img: np.ndarray) -> np.ndarray:
    from lutfuse_deploy.metrics.fusion import to_gray

    return to_gray(img) if img.ndim == 3 else img


def evaluate_set(
    name: str,
    pairs: list,
    models: Mapping[str, Any],
    tanh_map: str,
    progress: bool,
    rows: Sequence[tuple[str, str]] = ROWS,
) -> SetResult:
    """Every row and baseline on every pair: the ten metrics, PSNR and the flat-region noise."""
    from tqdm import tqdm

    from lutfuse_deploy.io.images import load_pair
    from lutfuse_deploy.metrics.fusion import compute_all, to_gray
    from lutfuse_deploy.metrics.noise import flat_noise

    res = SetResult(name, len(pairs))
    for i, pair in enumerate(tqdm(pairs, desc=name, unit="pair", disable=None if progress else True, leave=False)):
        ir, rgb = _even(*load_pair(pair, vi_mode="RGB"))
        gray = to_gray(rgb)
        outputs: dict[str, np.ndarray] = {}
        grays: dict[str, dict[str, np.ndarray]] = {}
        for row, key in rows:
            img, grays[row] = _fuse(models[key], ir, rgb, tanh_map)
            outputs[row] = img
        outputs.update(_baselines(ir, gray))
        for row, img in outputs.items():
            f = _gray(img)
            res.metrics.setdefault(row, []).append({**compute_all(ir, gray, f), NOISE: flat_noise(f, ir, gray)})
        for student, teacher, mapping in FIDELITY:
            res.fidelity.setdefault(f"{student} vs {teacher}", []).append(
                fidelity(grays[student][mapping], grays[teacher][mapping])
            )
        if i == 0:
            res.figure = {"IR": ir, "visible": rgb, **outputs}
    return res


def _baselines(ir: np.ndarray, gray: np.ndarray) -> dict[str, np.ndarray]:
    return {
        BASELINES[0]: np.maximum(ir, gray),
        BASELINES[1]: np.rint((ir.astype(np.float64) + gray) / 2).astype(np.uint8),
    }


def evaluate_crop(
    root: Path, models: Mapping[str, Any], tanh_map: str, rows: Sequence[tuple[str, str]] = ROWS
) -> CropResult | None:
    """``SKY_CROP`` of every row, baseline and input, with each output's noise sigma over the crop."""
    from lutfuse_deploy.io.images import load_pair
    from lutfuse_deploy.metrics.fusion import to_gray
    from lutfuse_deploy.metrics.noise import noise_sigma

    set_name, stem, (top, left, h, w) = SKY_CROP
    pair = next((p for p in _pairs(root / set_name, "ir", "vi", None) if p.name == stem), None)
    if pair is None:
        return None
    ir, rgb = _even(*load_pair(pair, vi_mode="RGB"))
    outputs = {row: _fuse(models[key], ir, rgb, tanh_map)[0] for row, key in rows}
    outputs.update(_baselines(ir, to_gray(rgb)))
    window = (slice(top, top + h), slice(left, left + w))
    res = CropResult(f"{stem} sky")
    res.images = {"IR": ir[window], "visible": rgb[window]}
    for row, img in outputs.items():
        res.images[row] = img[window]
        res.noise[row] = noise_sigma(_gray(img[window]))
    res.noise["IR"] = noise_sigma(ir[window])
    res.noise["visible"] = noise_sigma(to_gray(rgb)[window])
    return res


def run_quality(
    out_md: Path,
    figure: Path | None,
    pretrained: Path,
    max_pairs: int | None,
    tanh_map: str,
    medical: bool,
    threads: int,
    progress: bool = True,
    extras: Mapping[str, Path] | None = None,
    only: Sequence[str] | None = None,
) -> tuple[list[SetResult], list[tuple[str, str]]]:
    """Score every model on the sets (``only``: a subset by name) and write the report (and figure)."""
    import torch

    from lutfuse_deploy.io.checkpoints import load_model
    from lutfuse_deploy.paths import data_root, reference_root
    from lutfuse_deploy.quality.figure import write_figure
    from lutfuse_deploy.quality.report import render_markdown

    known = list(IVIF_SETS) + (list(MEDICAL_SETS) if medical else [])
    unknown = sorted(set(only or ()) - set(known))
    if unknown:
        raise InputError(f"--sets: unknown set {', '.join(unknown)} (known: {', '.join(known)})")
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    paths = shipped_checkpoints(pretrained)
    extra_keys = {f"extra:{name}": Path(p) for name, p in (extras or {}).items()}
    paths.update(extra_keys)
    with tempfile.TemporaryDirectory(prefix="lutfuse-quality-") as tmp:
        paths.update(official_checkpoints(reference_root(), Path(tmp)))
        loaded = {k: load_model(p) for k, p in paths.items()}
    models = {k: model for k, (model, _) in loaded.items()}
    rows = list(ROWS) + [(key.removeprefix("extra:"), key) for key in extra_keys]
    targets = list(TARGETS) + [(row, OFFICIAL_ROW[str(models[key].kind)]) for row, key in rows[len(ROWS) :]]
    sets: list[tuple[str, list]] = []
    for name in IVIF_SETS:
        sets.append((name, _pairs(data_root() / "ivif" / name, "ir", "vi", max_pairs)))
    if medical:
        for name, (a, b) in MEDICAL_SETS.items():
            sets.append((name, _pairs(data_root() / "medical" / name, a, b, max_pairs)))
    if only:
        sets = [(name, pairs) for name, pairs in sets if name in only]
    results = [evaluate_set(name, pairs, models, tanh_map, progress, rows) for name, pairs in sets if pairs]
    crop = evaluate_crop(data_root() / "ivif", models, tanh_map, rows)
    if figure is not None:
        columns = list(FIGURE_COLUMNS) + [row for row, _ in rows[len(ROWS) :]]
        write_figure(figure, [r for r in results if r.name in IVIF_SETS], columns, crop)
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
        "targets": targets,
        "crop": crop,
    }
    from lutfuse_deploy.io.files import write_text_atomic

    write_text_atomic(out_md, render_markdown(results, info))
    return results, targets


def _parse_extras(extras: Sequence[str]) -> dict[str, Path]:
    """``NAME=CKPT`` pairs; a name must not clash with a built-in row, a checkpoint must exist."""
    out: dict[str, Path] = {}
    taken = {row for row, _ in ROWS} | set(BASELINES)
    for item in extras:
        name, sep, path = item.partition("=")
        name = name.strip()
        if not sep or not name or not path:
            raise InputError(f"--extra: expected NAME=CKPT, got {item!r}")
        if name in taken or name in out:
            raise InputError(f"--extra: row name {name!r} is already used")
        if not Path(path).is_file():
            raise InputError(f"--extra {name}: checkpoint not found: {path}")
        out[name] = Path(path)
    return out


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
    "--sets",
    "only",
    default=None,
    help="Only these sets, comma-separated (e.g. roadscene,tno) [all].",
)
@click.option(
    "--extra",
    "extras",
    multiple=True,
    metavar="NAME=CKPT",
    help="Also score this checkpoint as row NAME, against the official model of its kind (repeatable).",
)
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
    only: str | None,
    extras: tuple[str, ...],
    threads: int,
    quiet: bool,
) -> None:
    """Score shipped vs official models on the held-out sets and write docs/quality.md."""
    from lutfuse_deploy.paths import REPO_ROOT, pretrained_dir

    out_md = out_md or REPO_ROOT / "docs" / "quality.md"
    figure = None if no_figure else (figure or out_md.with_suffix(".png"))
    try:
        named = _parse_extras(extras)
        results, targets = run_quality(
            out_md,
            figure,
            pretrained or pretrained_dir(),
            max_pairs,
            tanh_map,
            not no_medical,
            threads,
            progress=not quiet,
            extras=named,
            only=[x.strip() for x in only.split(",") if x.strip()] if only else None,
        )
    except LutfuseError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    for res in results:
        if res.name in IVIF_SETS:
            verdicts = [f"{ours}: {len(target_wins(res, ours, theirs))}/10" for ours, theirs in targets]
            click.echo(f"{res.name}: " + ", ".join(verdicts))
    click.echo(f"wrote {out_md}" + (f" and {figure}" if figure else ""))


if __name__ == "__main__":
    main()
