"""Count target wins of candidate checkpoints against one reference on folders of pairs.

``python -m lutfuse_deploy.quality.compare --against REF --set NAME=DIR ... NAME=CKPT ...`` fuses every
pair of every set with each candidate and the reference, as ``fuse`` writes them (the same 8-bit
mapping, even crop and gray conversion as the quality report), and prints, per set, the ten target
metrics each candidate matches or beats. It exists to choose a student on a validation split of
cameras it never trained on (``train/m3svd``, ``train/llvip_extra``) without running the full report,
whose dense teachers cost most of its time; the report's own sets stay untouched until the choice is made.
``--holdout RECIPE`` adds the pairs a recipe keeps out of training (``data.holdout``), one set per training
set, so the cameras a student did train on are judged on images it did not.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import click

from lutfuse_deploy.errors import InputError, LutfuseError
from lutfuse_deploy.quality.results import MEDICAL_SETS, TARGET_METRICS, SetResult, target_wins
from lutfuse_deploy.quality.run import _even, _fuse, _pairs

if TYPE_CHECKING:
    from lutfuse_deploy.io.images import ImagePair

REFERENCE = "reference"
LAYOUTS = (("ir", "vi"), *dict.fromkeys(MEDICAL_SETS.values()))  # first folder where the report puts the IR


def _layout(folder: Path) -> tuple[str, str] | None:
    """The (ir-like, vi-like) sub-folders of a set: ir/ + vi/, or a medical set's mri/ + pet/ or spect/."""
    return next(((a, b) for a, b in LAYOUTS if (folder / a).is_dir() and (folder / b).is_dir()), None)


def holdout_sets(recipe: Path, root: Path | None = None) -> dict[str, list[ImagePair]]:
    """``holdout/<set>`` -> the pairs ``recipe`` holds out of each training set (as ``train`` splits them)."""
    from lutfuse_deploy.paths import data_root
    from lutfuse_deploy.train.config import load_recipe
    from lutfuse_deploy.train.data import collect_pairs, pair_set, set_folders, split_holdout

    r = load_recipe(recipe)
    if not r.data.holdout:
        raise InputError(f"--holdout {recipe}: the recipe holds no pairs out of training (data.holdout: 0)")
    base = root if root is not None else Path(r.data.root) if r.data.root else data_root() / "train"
    out: dict[str, list[ImagePair]] = {}
    for p in split_holdout(collect_pairs(set_folders(base, r.data.sets)), r.data.holdout)[1]:
        out.setdefault(f"holdout/{pair_set(p.name)}", []).append(p)
    return out


def score_sets(
    sets: Mapping[str, Path | list[ImagePair]], models: Mapping[str, Path], tanh_map: str = "minmax"
) -> list[SetResult]:
    """Every model (row name -> checkpoint) on every pair of every set (name -> folder with ir/, vi/, or
    its pairs)."""
    from lutfuse_deploy.io.checkpoints import load_model
    from lutfuse_deploy.io.images import load_pair
    from lutfuse_deploy.metrics.fusion import compute_all, to_gray

    loaded = {row: load_model(path)[0] for row, path in models.items()}
    results = []
    for name, folder in sets.items():
        if isinstance(folder, list):
            pairs = folder
        else:
            subs = _layout(folder)
            pairs = _pairs(folder, *subs, None) if subs else []
        if not pairs:
            raise InputError(f"--set {name}: no ir/vi pairs in {folder}")
        res = SetResult(name, len(pairs))
        for pair in pairs:
            ir, rgb = _even(*load_pair(pair, vi_mode="RGB"))
            gray = to_gray(rgb)
            for row, model in loaded.items():
                fused = _fuse(model, ir, rgb, tanh_map)[1]["written"]
                res.metrics.setdefault(row, []).append(compute_all(ir, gray, fused))
        results.append(res)
    return results


def summary(results: list[SetResult], reference: str = REFERENCE) -> dict[str, dict[str, dict[str, object]]]:
    """Per set: each row's mean metrics and, for candidates, the metrics won against ``reference``."""
    out: dict[str, dict[str, dict[str, object]]] = {}
    for res in results:
        rows: dict[str, dict[str, object]] = {}
        for row in res.metrics:
            entry: dict[str, object] = {"mean": res.mean(row)}
            if row != reference:
                entry["wins"] = target_wins(res, row, reference)
            rows[row] = entry
        out[res.name] = rows
    return out


def _named(items: tuple[str, ...], what: str, must_be_dir: bool) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path:
            raise InputError(f"{what}: expected NAME=PATH, got {item!r}")
        p = Path(path)
        if name.strip() in out or name.strip() == REFERENCE:
            raise InputError(f"{what}: name {name.strip()!r} is used twice")
        if must_be_dir and _layout(p) is None:
            raise InputError(f"{what} {name.strip()}: {p} holds no ir/ folder with a vi/ beside it "
                             "(nor mri/ with pet/ or spect/)")
        if not must_be_dir and not p.is_file():
            raise InputError(f"{what} {name.strip()}: checkpoint not found: {p}")
        out[name.strip()] = p
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("candidates", nargs=-1, required=True, metavar="NAME=CKPT...")
@click.option("--against", required=True, type=click.Path(path_type=Path), help="Reference checkpoint.")
@click.option("--set", "sets", multiple=True, metavar="NAME=DIR",
              help="Folder of ir/ and vi/ pairs (or mri/ and pet/ or spect/, as the report reads them).")
@click.option("--holdout", type=click.Path(path_type=Path), default=None, metavar="RECIPE",
              help="Also the pairs RECIPE holds out of training (data.holdout), as sets holdout/<set>.")
@click.option("--data", "data", type=click.Path(path_type=Path), default=None,
              help="With --holdout: the training root. Default: the recipe's, else <data>/train.")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Write means and wins.")
@click.option("--tanh-map", type=click.Choice(["minmax", "clip"]), default="minmax", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="torch CPU threads.")
def main(
    candidates: tuple[str, ...],
    against: Path,
    sets: tuple[str, ...],
    holdout: Path | None,
    data: Path | None,
    json_out: Path | None,
    tanh_map: str,
    threads: int,
) -> None:
    """Print, per set, the target metrics each candidate matches or beats against --against."""
    import torch

    from lutfuse_deploy.io.files import write_text_atomic

    try:
        if data is not None and holdout is None:
            raise InputError("--data: applies only with --holdout")
        if not sets and holdout is None:
            raise InputError("give at least one --set NAME=DIR or --holdout RECIPE")
        folders: dict[str, Path | list[ImagePair]] = {**_named(sets, "--set", must_be_dir=True)}
        if holdout is not None:
            if not holdout.is_file():
                raise InputError(f"--holdout: recipe not found: {holdout}")
            held = holdout_sets(holdout, data)
            if clash := sorted(set(held) & set(folders)):
                raise InputError(f"--set: name {clash[0]!r} is also a --holdout set")
            folders.update(held)
        models = _named(candidates, "candidate", must_be_dir=False)
        if not against.is_file():
            raise InputError(f"--against: checkpoint not found: {against}")
        torch.set_num_threads(threads)
        results = score_sets(folders, {REFERENCE: against, **models}, tanh_map)
    except LutfuseError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    for res in results:
        for row in models:
            wins = target_wins(res, row, REFERENCE)
            click.echo(f"{res.name}: {row}: {len(wins)}/{len(TARGET_METRICS)} ({' '.join(wins)})")
    for row in models:
        counts = [len(target_wins(res, row, REFERENCE)) for res in results]
        click.echo(f"{row}: worst set {min(counts)}/{len(TARGET_METRICS)}, total {sum(counts)}")
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(summary(results), indent=1) + "\n")


if __name__ == "__main__":
    main()
