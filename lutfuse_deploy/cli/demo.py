"""``demo``: fuse a procedural scene with a model that needs no download; print timing and metrics."""

from __future__ import annotations

import json
from pathlib import Path

import click

from lutfuse_deploy.cli import cli


@cli.command("demo")
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo_out"), show_default=True,
              help="Folder for side_by_side.png (IR | visible | fused), ir.png, vi.png, fused.png and lutfuse.onnx.")
@click.option("--size", default="640x480", show_default=True, help="WIDTHxHEIGHT of the synthetic scene.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=10, show_default=True, help="Timed runs.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads [default: the CPUs this process may use, less those other processes keep busy].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def demo_cmd(out: Path, size: str, seed: int, repeats: int, threads: int | None, as_json: bool) -> None:
    """Make a synthetic night-street IR/visible pair, export the shipped LUT-Fuse to ONNX, time the
    graph in ONNX Runtime beside PyTorch eager and the upstream LUT-Fuse code (where it is found: see
    `profile --help`, --upstream), print the ratios and metrics, write a side-by-side image.

    Uses the LUT-Fuse shipped in lutfuse_deploy/pretrained/ (or an analytic-rule table if none is
    shipped); needs no GPU and no download. Both backends are timed in the same process, in
    alternating rounds, with the other processes' CPU use recorded per round.
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
    res = run_demo(out, height=height, width=width, seed=seed, repeats=repeats, threads=threads)
    if as_json:
        click.echo(json.dumps({"model": res.model, "size": [width, height], "latency": res.latency,
                               "metrics": res.metrics, "outputs": {k: str(v) for k, v in res.outputs.items()},
                               "notes": res.notes}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    from lutfuse_deploy.cli.tables import print_table

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    console.print(f"[bold]{res.model}[/bold] on a synthetic {width}x{height} night street (seed {seed})")
    for note in res.notes:
        console.print(note, markup=False)
    lat = res.latency
    names = {"torch": "PyTorch eager", "onnxruntime": "exported graph (ONNX Runtime)",
             "upstream": "upstream LUT-Fuse code"}
    for backend, name in names.items():
        if backend in lat:
            b = lat[backend]
            console.print(f"{name:30s} median {b['median_ms']:8.1f} ms, min {b['min_ms']:8.1f} ms ({b['n']} runs)")
    busy = "" if lat["other_cpus"] is None else f"; other processes kept {lat['other_cpus']:.2f} CPUs busy"
    console.print(f"CPU, {lat['threads']} thread(s), interleaved rounds{busy}, "
                  f"{lat['contended_rounds']}/{lat['rounds']} rounds contended")
    if "ratio" in lat:
        console.print(f"[bold]the exported graph is {lat['ratio']:.2f}x PyTorch eager's speed[/bold] (median / median, "
                      f"same run); its 8-bit output is within {lat['max_lsb_vs_torch']} LSB of PyTorch's")
    for backend, ratio in lat.get("ratio_to_upstream", {}).items():
        console.print(f"[bold]{names[backend]} runs at {ratio:.2f}x the upstream code's speed[/bold] (same run)")
    if ("ratio" in lat or "ratio_to_upstream" in lat) and lat["contended_rounds"] * 2 > lat["rounds"]:
        console.print("[yellow]most rounds ran on a busy machine: the ratio is suspect[/yellow]")
    methods = list(res.metrics)
    table = Table(title="Fusion metrics (docs/semantics.md §5 conventions; SSIM summed, data_range 2)")
    table.add_column("metric")
    for m in methods:
        table.add_column(m, justify="right")
    for name in next(iter(res.metrics.values())):
        table.add_row(name, *(f"{res.metrics[m][name]:.3f}" for m in methods))
    print_table(table, console)
    console.print(f"wrote {', '.join(str(p) for p in res.outputs.values())}")
