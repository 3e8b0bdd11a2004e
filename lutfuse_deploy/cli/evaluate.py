"""``lutfuse-deploy evaluate``: fusion metrics for a folder of fused images, as papers compute them."""

from __future__ import annotations

from pathlib import Path

import click

from lutfuse_deploy.cli import cli
from lutfuse_deploy.cli.options import ir16_option

EPILOG = """\b
Pairs ir/, vi/ and fused/ by file stem (fused 00001.png matches ir/vi 00001.jpg). Every image is
read as 8-bit gray; visible and RGB fused images use the ITU-R 601-2 luma of PIL convert('L').
Metrics follow the CDDFuse evaluator: EN SD SF AG MI(nats) SCD VIF Qabf SSIM CC PSNR; SSIM is the
sum over IR and VI with data_range 2 unless --ssim-range 255.

\b
Exit status 1 when any pair could not be evaluated (one line each; the others are still
reported and written) or when nothing was evaluated.

\b
Example (fuse, then score what was fused):
  lutfuse-deploy fuse --model lutfuse_deploy/pretrained/lutfuse.safetensors \\
      --ir ../shared/data/ivif/msrs_test/ir --vi ../shared/data/ivif/msrs_test/vi --out fused
  lutfuse-deploy evaluate --ir ../shared/data/ivif/msrs_test/ir --vi ../shared/data/ivif/msrs_test/vi \\
      --fused fused --json metrics.json --csv metrics.csv
"""


@cli.command("evaluate", epilog=EPILOG)
@click.option(
    "--ir",
    "ir_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Infrared image folder (or one file).",
)
@click.option(
    "--vi",
    "vi_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Visible image folder (or one file).",
)
@click.option(
    "--fused",
    "fused_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Fused image folder (or one file, with --ir/--vi files).",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the report as JSON."
)
@click.option(
    "--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the report as CSV."
)
@click.option(
    "--ssim-range",
    type=click.Choice(["2", "255"]),
    default="2",
    show_default=True,
    help="SSIM data_range: 2 reproduces published numbers, 255 is the textbook value.",
)
@ir16_option
def evaluate(
    ir_dir: Path,
    vi_dir: Path,
    fused_dir: Path,
    json_path: Path | None,
    csv_path: Path | None,
    ssim_range: str,
    ir16: str,
) -> None:
    """Compute fusion metrics per image and their mean; print a table, optionally write JSON/CSV."""
    from lutfuse_deploy.errors import InputError
    from lutfuse_deploy.io.files import check_outputs
    from lutfuse_deploy.io.images import IMAGE_EXTS
    from lutfuse_deploy.metrics.evaluate import evaluate_folders, write_csv, write_json

    folders = [d for d in (ir_dir, vi_dir, fused_dir) if d.is_dir()]
    images = [p for d in folders for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTS]
    check_outputs(files=[p for p in (json_path, csv_path) if p], inputs=[ir_dir, vi_dir, fused_dir, *images])
    report, problems = evaluate_folders(ir_dir, vi_dir, fused_dir, ssim_data_range=float(ssim_range), ir16=ir16)
    for line in problems:
        click.echo(f"skipped: {line}", err=True)
    n_ok = len(report["per_image"])
    if n_ok == 0:
        raise InputError(
            f"nothing evaluated: no usable ir/vi/fused triplet in {ir_dir}, {vi_dir}, {fused_dir}"
        )

    _print_table(report)
    if json_path is not None:
        write_json(json_path, report)
    if csv_path is not None:
        write_csv(csv_path, report)
    if problems:
        written = ", their metrics are in the report" if json_path or csv_path else ""
        raise InputError(
            f"{len(problems)} problem(s), listed above as 'skipped'; {n_ok} pair(s) evaluated{written}"
        )


def _print_table(report: dict) -> None:
    from rich.table import Table

    from lutfuse_deploy.cli.tables import print_table
    from lutfuse_deploy.metrics.fusion import METRIC_NAMES

    table = Table(title="Fusion metrics (CDDFuse conventions)")
    table.add_column("image", no_wrap=True)
    for m in METRIC_NAMES:
        table.add_column(m, justify="right", no_wrap=True)
    rows = list(report["per_image"].items())
    for i, (name, row) in enumerate(rows):
        table.add_row(name, *(f"{row[m]:.4f}" for m in METRIC_NAMES), end_section=i == len(rows) - 1)
    table.add_row(f"mean ({len(rows)})", *(f"{report['mean'][m]:.4f}" for m in METRIC_NAMES), style="bold")
    print_table(table)
