"""Markdown for ``docs/quality.md``: the targets, student-teacher fidelity, noise, one metrics table per set."""

from __future__ import annotations

from typing import Any

import numpy as np

from lutfuse_deploy.metrics.noise import IR_EDGE, NOISE_SCALE, VI_EDGE
from lutfuse_deploy.quality.results import (
    IVIF_SETS,
    NOISE,
    SKY_CROP,
    TARGET_WINS,
    TARGETS,
    CropResult,
    SetResult,
    target_wins,
)

_COLS = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "CC", "PSNR", NOISE)


def _fmt(v: float) -> str:
    return "n/a" if not np.isfinite(v) else f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"


def _table(res: SetResult) -> list[str]:
    lines = ["| method | " + " | ".join(_COLS) + " |", "|---|" + "---:|" * len(_COLS)]
    for row in res.metrics:
        m = res.mean(row)
        lines.append(f"| {row} | " + " | ".join(_fmt(m[c]) for c in _COLS) + " |")
    return lines


def _validation(sources: dict[str, str]) -> str:
    """"teacher, lut: `<data>/ivif/llvip_test`; mini: 30 pairs held out of `<data>/train` (10 per set)"."""
    groups: dict[str, list[str]] = {}
    for role, where in sources.items():
        groups.setdefault(where, []).append(role)
    return "; ".join(f"{', '.join(roles)}: `{where}`" for where, roles in groups.items()) or "not recorded"


def _noise(results: list[SetResult], crop: CropResult | None) -> list[str]:
    top, left, h, w = SKY_CROP[2]
    out = [
        "## Noise in flat regions",
        "",
        (
            "SF and AG reward any high frequency, copied sensor noise included, so the metric tables cannot "
            "show an IR camera's noise carried into a flat sky. `noise` is `metrics.noise.flat_noise`: the "
            f"robust (1.4826 MAD) sigma, in gray levels, of the fused gray's Gaussian high-pass (sigma "
            f"{NOISE_SCALE:g} px, scaled so white noise of sigma s reads s) over the pixels where the visible "
            f"and the IR Sobel magnitudes are below {VI_EDGE:g} and {IR_EDGE:g}; mean over the pairs of "
            "each set; lower is flatter."
        ),
    ]
    if crop is not None:
        out.append(
            f"`{crop.name}`: the same sigma over the crop {w}x{h} at ({left}, {top}) of {SKY_CROP[0]} "
            f"`{SKY_CROP[1]}` (a flat sky where the IR camera shows banded noise; inputs: IR "
            f"{crop.noise['IR']:.2f}, visible {crop.noise['visible']:.2f}); the crop is in the figure."
        )
    cols = [r.name for r in results] + ([crop.name] if crop is not None else [])
    out += ["", "| method | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for row in results[0].metrics:
        cells = [_fmt(r.mean(row)[NOISE]) for r in results]
        if crop is not None:
            cells.append(_fmt(crop.noise[row]))
        out.append(f"| {row} | " + " | ".join(cells) + " |")
    return out + [""]


def render_markdown(results: list[SetResult], info: dict[str, Any]) -> str:
    targets = [tuple(t) for t in info.get("targets", TARGETS)]
    shipped = {k: v for k, v in info["checkpoints"].items() if not k.startswith("extra:")}
    extras = {k.removeprefix("extra:"): v for k, v in info["checkpoints"].items() if k.startswith("extra:")}
    out = [
        "# Quality: shipped models against the official releases",
        "",
        "Written by `make quality` (`" + info["command"].strip() + "`); do not edit by hand.",
        "",
        f"- Date: {info['date']}; machine: {info['machine']}; wall time {info['wall_s']:.0f} s.",
        (
            f"- Shipped checkpoints: {', '.join(f'`{v}`' for v in shipped.values())} "
            "(lutfuse_deploy/pretrained/); official ones imported from the reference folder on the fly."
            + "".join(f" Extra row `{k}`: `{v}`." for k, v in extras.items())
        ),
        (
            "- Metrics: `lutfuse_deploy.metrics.fusion.compute_all` (CDDFuse-evaluator conventions, SSIM data "
            "range 2), mean over the pairs of each set. Every pair is cropped to even height and width for "
            "every row (the MMDRFuse teacher needs it)."
        ),
        (
            f"- 8-bit mapping: LUT-Fuse output clamped to [0, 1]; MMDRFuse tanh output mapped with "
            f"`{info['tanh_map']}` (`fuse.convert.to_8bit`), the same for shipped and official models. "
            "RGB outputs are read as gray with PIL's luma, as `lutfuse-deploy evaluate` does."
        ),
        (
            "- None of these pairs were used for training or for choosing checkpoints (training: "
            f"`<data>/train`; validation during training: {_validation(info.get('validation', {}))}). "
            "`train/msrs` contains MSRS test-split pairs other than those in `ivif/msrs_test` (see the data README)."
        ),
        "",
        "## Targets",
        "",
        (
            f"A student meets its target on a set when it matches or beats the official checkpoint on at least "
            f"{TARGET_WINS} of the 10 metrics EN SD SF AG MI SCD VIF Qabf SSIM CC (higher is better for all)."
        ),
        "",
        "| set | pairs | " + " | ".join(f"{a} vs {b}" for a, b in targets) + " |",
        "|---|---:|" + "---|" * len(targets),
    ]
    for res in results:
        if res.name not in IVIF_SETS:
            continue
        cells = []
        for ours, theirs in targets:
            wins = target_wins(res, ours, theirs)
            verdict = "met" if len(wins) >= TARGET_WINS else "**not met**"
            cells.append(f"{len(wins)}/10 {verdict} ({' '.join(wins) or '-'})")
        out.append(f"| {res.name} | {res.pairs} | " + " | ".join(cells) + " |")
    medical = [r for r in results if r.name not in IVIF_SETS]
    if medical:
        out += [
            "",
            "Medical pairs (MRI as the `ir` input, PET/SPECT as the visible; reported, not a target):",
            "",
            "| set | pairs | " + " | ".join(f"{a} vs {b}" for a, b in targets) + " |",
            "|---|---:|" + "---|" * len(targets),
        ]
        for res in medical:
            cells = [f"{len(target_wins(res, a, b))}/10" for a, b in targets]
            out.append(f"| {res.name} | {res.pairs} | " + " | ".join(cells) + " |")
    out += [
        "",
        "## Fidelity of each student to its teacher",
        "",
        (
            "PSNR (dB) and SSIM (pytorch-msssim, data range 255) between the two models' 8-bit gray outputs, "
            "mean over pairs, on the scale each distillation matches: LUT-Fuse vs teacher with both clipped "
            "to [0, 1] (L1 distillation of the teacher's output); MMDRFuse student vs teacher as `fuse` writes "
            "them (digestible distillation is scale-free, so the tanh min-max mapping of the metrics)."
        ),
        "",
        "| set | " + " | ".join(k for k in results[0].fidelity) + " |",
        "|---|" + "---|" * len(results[0].fidelity),
    ]
    for res in results:
        cells = []
        for vals in res.fidelity.values():
            arr = np.array(vals, dtype=np.float64)
            psnr = arr[:, 0][np.isfinite(arr[:, 0])]
            cells.append(f"{psnr.mean():.2f} dB / {arr[:, 1].mean():.3f}")
        out.append(f"| {res.name} | " + " | ".join(cells) + " |")
    out += ["", *_noise(results, info.get("crop")), "## Metrics per set", ""]
    for res in results:
        out += [f"### {res.name} ({res.pairs} pairs)", "", *_table(res), ""]
    if info.get("figure"):
        out += [
            "## Figure",
            "",
            f"![first pair of each set]({info['figure']})",
            "",
            (
                "The first pair of each set, and last the sky crop of the noise table: inputs, the max "
                "baseline, official and shipped LUT-Fuse, official MMDRFuse student and shipped mini, "
                "official and shipped teacher, then any extra rows (8-bit outputs as scored; the crop "
                "panels are labelled with their noise)."
            ),
            "",
        ]
    return "\n".join(out)
