"""``import-official`` (papers' releases -> project checkpoints) and ``info`` (what a checkpoint,
graph or engine holds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
@click.argument("artifact", type=PathArg)
@click.option("--json", "as_json", is_flag=True,
              help="Print the record as JSON (a folder of checkpoints: a list, each entry with its path).")
def info_cmd(artifact: Path, as_json: bool) -> None:
    """Show what a checkpoint, an exported graph or an engine holds, checked against the file.

    \b
    ARTIFACT is
      a .safetensors checkpoint, or a folder of them (the deployable one first): kind, configuration,
        provenance, parameters; its weights are verified against their recorded sha256 and for
        NaN/Inf, as loading does
      an exported .onnx: inputs, outputs, opset, lowering, io, the 8-bit mapping, source checkpoint
        and export's parity record (from the graph's metadata and its sidecar .json)
      an engine (.engine/.plan/.trt) or a build bundle folder: its manifest, with the engine and
        ONNX checked against the sha256 it records
    \b
    Examples:
      lutfuse-deploy info lutfuse_deploy/pretrained/lutfuse.safetensors
      lutfuse-deploy info lutfuse_deploy/pretrained/
    """
    from lutfuse_deploy.runtime import ARTIFACTS

    if artifact.suffix.lower() == ".onnx":
        from lutfuse_deploy.export.describe import describe_graph

        _show([describe_graph(artifact)], as_json, single=True)
    elif artifact.suffix.lower() in ARTIFACTS["tensorrt"][0] or (artifact / "manifest.json").is_file():
        from lutfuse_deploy.export.describe import describe_bundle

        _show([describe_bundle(artifact)], as_json, single=True)
    else:
        _show_checkpoints(artifact, as_json)


def _show_checkpoints(checkpoint: Path, as_json: bool) -> None:
    from lutfuse_deploy.io.checkpoints import folder_checkpoints, load_model

    paths = folder_checkpoints(checkpoint) if checkpoint.is_dir() else [checkpoint]
    metas = [(p, load_model(p)[1]) for p in paths]  # verifies: sha256 of the weights, finite values
    if as_json:
        doc = metas[0][1] if not checkpoint.is_dir() else [{"path": str(p), **m} for p, m in metas]
        click.echo(json.dumps(doc, indent=2))
        return
    import yaml

    for i, (path, meta) in enumerate(metas):
        click.echo(("\n" if i else "") + f"{path}\n  kind        {meta['kind']}\n  parameters  {meta.get('parameters')}")
        click.echo(f"  config      {json.dumps(meta.get('config'))}\n  sha256      {meta['weights_sha256']} "
                   "(verified: the weights match it, all finite)")
        click.echo("  provenance")
        text = yaml.safe_dump(meta.get("provenance") or {}, sort_keys=False, default_flow_style=False, width=100)
        click.echo("\n".join(f"    {line}" for line in text.rstrip().splitlines()))


def _show(records: list[dict[str, Any]], as_json: bool, single: bool) -> None:
    """A description as JSON, or as ``label  value`` lines (nested records on one line each)."""
    if as_json:
        click.echo(json.dumps(records[0] if single else records, indent=2))
        return
    for i, record in enumerate(records):
        click.echo(("\n" if i else "") + str(record["path"]))
        width = max(len(k) for k in record)
        for key, value in record.items():
            if isinstance(value, dict):
                value = "; ".join(f"{k} {v}" for k, v in value.items() if v is not None)
            if key != "path" and value not in (None, ""):
                click.echo(f"  {key:<{width}}  {value}")
