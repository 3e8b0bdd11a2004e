"""``demo``: fuse a procedural scene with a model that needs no download; print timing and metrics."""

from __future__ import annotations

import json
from pathlib import Path

import click

from lutfuse_deploy.cli import cli


@cli.command("demo")
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo_out"), show_default=True,
              help="Folder for ir.png, vi.png and fused.png.")
@click.option("--size", default="640x480", show_default=True, help="WIDTHxHEIGHT of the synthetic scene.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=10, show_default=True, help="Timed runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def demo_cmd(out: Path, size: str, seed: int, repeats: int, as_json: bool) -> None:
    """Make a synthetic night-street IR/visible pair, fuse it on the CPU, print latency and metrics.

    Uses the LUT-Fuse shipped in lutfuse_deploy/pretrained/ (or an analytic-rule table if none is
    shipped); needs no GPU and no download.
    """
    from lutfuse_deploy.demo import run_demo
    from lutfuse_deploy.errors import InputError

    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise InputError(f"--size must look like 640x480, got {size!r}") from None
    if min(width, height) < 64:
        raise InputError("--size must be at least 64x64")
    from lutfuse_deploy.io.files import check_outputs

    check_outputs(folders=[out])
    res = run_demo(out, height=height, width=width, seed=seed, repeats=repeats)
    if as_json:
        click.echo(json.dumps({"model": res.model, "size": [width, height], "latency": res.latency_ms,
                               "metrics": res.metrics, "outputs": {k: str(v) for k, v in res.outputs.items()}},
                              indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{res.model}[/bold] on a synthetic {width}x{height} night street (seed {seed})")
    console.print(f"PyTorch eager, CPU, {int(res.latency_ms['threads'])} threads: median "
                  f"{res.latency_ms['median_ms']:.1f} ms, min {res.latency_ms['min_ms']:.1f} ms over {repeats} runs")
    methods = list(res.metrics)
    table = Table(title="Fusion metrics (docs/semantics.md §5 conventions; SSIM summed, data_range 2)")
    table.add_column("metric")
    for m in methods:
        table.add_column(m, justify="right")
    for name in next(iter(res.metrics.values())):
        table.add_row(name, *(f"{res.metrics[m][name]:.3f}" for m in methods))
    console.print(table)
    console.print(f"wrote {', '.join(str(p) for p in res.outputs.values())}")
