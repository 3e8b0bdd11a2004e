"""``import-official`` (papers' releases -> project checkpoints) and ``info`` (what a file holds)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from lutfuse_deploy.cli import cli

PathArg = click.Path(path_type=Path)


@cli.group("import-official")
def import_official() -> None:
    """Convert the papers' released checkpoints into this project's format (safetensors + metadata).

    OUT ending in .safetensors is a file; anything else is a folder (created). Either works as
    --model OUT afterwards.
    """


@import_official.command("lutfuse")
@click.option("--lut", "lut", type=PathArg, required=True, help="The released table, e.g. fine_tuned_lut.npy.")
@click.option("--context", "context", type=PathArg, required=True, help="The context network, e.g. generator_context.pth.")
@click.option("-o", "--out", type=PathArg, required=True, help="Output .safetensors file or folder.")
def import_lutfuse_cmd(lut: Path, context: Path, out: Path) -> None:
    """LUT-Fuse (ICCV 2025): 16^4 table + 7,825-parameter context network."""
    from lutfuse_deploy.io.official import import_lutfuse

    for p in import_lutfuse(lut, context, out):
        click.echo(f"wrote {p}")


@import_official.command("mmdrfuse")
@click.option("--student", type=PathArg, required=True, help="student.model (113 parameters).")
@click.option("--teacher", type=PathArg, default=None, help="teacher.model (556,489 parameters), optional.")
@click.option("-o", "--out", type=PathArg, required=True, help="Output .safetensors file or folder.")
def import_mmdrfuse_cmd(student: Path, teacher: Path | None, out: Path) -> None:
    """MMDRFuse (ACM MM 2024): the student, and the teacher if given."""
    from lutfuse_deploy.io.official import import_mmdrfuse

    for p in import_mmdrfuse(student, teacher, out):
        click.echo(f"wrote {p}")


@cli.command("info")
@click.argument("checkpoint", type=PathArg)
@click.option("--json", "as_json", is_flag=True,
              help="Print the metadata as JSON (a folder: a list, each entry with its path).")
def info_cmd(checkpoint: Path, as_json: bool) -> None:
    """Show what a checkpoint holds: kind, configuration, provenance, parameter count.

    CHECKPOINT is a .safetensors file or a folder: every checkpoint in it is shown (--model FOLDER
    elsewhere uses the deployable one, listed first).
    """
    from lutfuse_deploy.io.checkpoints import folder_checkpoints, read_metadata

    paths = folder_checkpoints(checkpoint) if checkpoint.is_dir() else [checkpoint]
    metas = [(p, read_metadata(p)) for p in paths]
    if as_json:
        doc = metas[0][1] if not checkpoint.is_dir() else [{"path": str(p), **m} for p, m in metas]
        click.echo(json.dumps(doc, indent=2))
        return
    import yaml

    for i, (path, meta) in enumerate(metas):
        click.echo(("\n" if i else "") + f"{path}\n  kind        {meta['kind']}\n  parameters  {meta.get('parameters')}")
        click.echo(f"  config      {json.dumps(meta.get('config'))}\n  sha256      {meta['weights_sha256']}")
        click.echo("  provenance")
        text = yaml.safe_dump(meta.get("provenance") or {}, sort_keys=False, default_flow_style=False, width=100)
        click.echo("\n".join(f"    {line}" for line in text.rstrip().splitlines()))
