"""``train``: teacher, LUT-Fuse or the 113-parameter student, from a YAML recipe."""

from __future__ import annotations

import os
from pathlib import Path

import click

from lutfuse_deploy.cli import cli
from lutfuse_deploy.cli.options import ir16_option


@cli.command("train")
@click.argument("kind", type=click.Choice(["teacher", "lut", "mini"]))
@click.option(
    "--recipe", type=click.Path(path_type=Path), required=True, help="Recipe YAML (recipes/*.yaml)."
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="Training root holding the recipe's sets (SET/ir, SET/vi). Default: recipe, else <data>/train.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    show_default="runs/KIND",
    help="Run folder: KIND-last/-best.safetensors, train_state.pt, log.jsonl.",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last saved step.")
@click.option(
    "--device", default="cpu", show_default=True, help="cpu or cuda[:N] (under torchrun: each rank's GPU)."
)
@click.option(
    "--teacher",
    type=click.Path(path_type=Path),
    default=None,
    help="lut/mini: teacher checkpoint to distil (overrides the recipe's); refused for a mini recipe "
    "with no teacher term (distilling LUT-Fuse alone).",
)
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Override the recipe's step count.")
@click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads (overrides the recipe)."
)
@click.option("--val", type=click.Path(path_type=Path), default=None,
              help="Validation folder with ir/ and vi/ (overrides the recipe's; default <data>/ivif/llvip_test; "
                   "not with a recipe that holds out training pairs, data.holdout).")
@ir16_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_cmd(
    kind: str,
    recipe: Path,
    data: Path | None,
    out: Path | None,
    resume: bool,
    device: str,
    teacher: Path | None,
    steps: int | None,
    threads: int | None,
    val: Path | None,
    ir16: str,
    quiet: bool,
) -> None:
    """Train KIND (teacher | lut | mini) with a recipe; the same command under torchrun uses DDP.

    \b
    lutfuse-deploy train teacher --recipe recipes/teacher.yaml --out runs/teacher
    lutfuse-deploy train lut  --recipe recipes/lut.yaml  --teacher runs/teacher/teacher-best.safetensors
    lutfuse-deploy train mini --recipe recipes/mini.yaml --teacher runs/teacher/teacher-best.safetensors
    """
    from lutfuse_deploy.train import train

    result = train(
        kind,
        recipe,
        data=data,
        out=out,
        resume=resume,
        device=device,
        teacher=teacher,
        steps=steps,
        threads=threads,
        val=val,
        ir16=None if ir16 == "refuse" else ir16,  # "refuse" (the default) leaves the recipe's data.ir16
        progress=not quiet,
    )
    if int(os.environ.get("RANK", "0")) != 0:
        return
    best = (
        f"{result.best} (step {result.best_step}, score {result.best_score:.4f})" if result.best else "none"
    )
    if result.start_step:
        click.echo(f"trained {kind} from step {result.start_step} to {result.steps} ({result.new_steps} new steps); "
                   f"{result.wall_s:.1f} s of training in all runs")
    else:
        click.echo(f"trained {kind} for {result.steps} steps in {result.wall_s:.1f} s of training")
    click.echo(f"last: {result.last}")
    click.echo(f"best: {best}")
