"""``export`` (checkpoint -> verified .onnx + sidecar), ``check-onnx`` (will a runtime take it?) and
``compare`` (does an existing graph still equal its checkpoint?)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from lutfuse_deploy.cli import cli
from lutfuse_deploy.cli.options import ir16_option
from lutfuse_deploy.export.checks import TARGETS as ONNX_TARGETS

PathArg = click.Path(path_type=Path)


@cli.command("export")
@click.option("--model", type=PathArg, required=True, help="Checkpoint (.safetensors or a folder holding one).")
@click.option("-o", "--out", type=PathArg, default=None,
              help="Output FILE.onnx (the sidecar FILE.json goes beside it). Optional with --triton.")
@click.option("--opset", type=int, default=17, show_default=True,
              help="ONNX opset. GridSample graphs need 16-19 for TensorRT.")
@click.option("--lowering", type=click.Choice(["gridsample", "gather"]), default="gridsample", show_default=True,
              help="LUT-Fuse lookup: one rank-4 GridSample over a 4-channel corner atlas (TensorRT fuses it into "
                   "one layer) or a flat-table Gather.")
@click.option("--io", type=click.Choice(["float", "uint8"]), default="float", show_default=True,
              help="float: 0..255 floats in, [0,1]-scale output unclamped; uint8: uint8 in and out (clamped, rounded).")
@click.option("--height", type=click.IntRange(min=3), default=None, help="Static input height (with --width).")
@click.option("--width", type=click.IntRange(min=3), default=None, help="Static input width (with --height).")
@click.option("--dynamic", is_flag=True, help="One graph for any H x W (the default when no size is given).")
@click.option("--allow-opset-20", "allow_opset", is_flag=True,
              help="Allow opset >= 20 for a GridSample graph (ONNX Runtime only: TensorRT's parser reads its "
                   "modes as nearest).")
@click.option("--no-simplify", is_flag=True, help="Skip onnxslim.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="ONNX Runtime threads for the parity check.")
@click.option("--rig", type=PathArg, default=None,
              help="A rig file (calibrate): the graph takes each camera's raw frame at its native size and warps "
                   "the IR into the visible camera's geometry inside the graph.")
@click.option("--triton", "triton_repo", type=PathArg, default=None, metavar="REPO",
              help="Write a Triton model repository: REPO/<name>/config.pbtxt and 1/model.onnx, the name "
                   "being -o's stem, or the checkpoint's without -o (then the repository is the only output).")
@click.option("--triton-max-batch", type=click.IntRange(min=0), default=8, show_default=True,
              help="Triton max_batch_size (dynamic batching; 0 = none). Ignored for a static-batch graph.")
def export_cmd(model: Path, out: Path | None, opset: int, lowering: str, io: str, height: int | None, width: int | None,
               dynamic: bool, allow_opset: bool, no_simplify: bool, threads: int, rig: Path | None,
               triton_repo: Path | None, triton_max_batch: int) -> None:
    """Export a checkpoint to ONNX: one float32 graph from (ir, vi) to fused, checked and verified.

    The same graph runs in ONNX Runtime, OpenVINO and TensorRT (build-engine takes it as is). Before
    it is written, it runs in ONNX Runtime on synthetic and real inputs and is judged against the
    PyTorch model evaluated in float64: max abs <= max(1e-4, 2 x PyTorch float32's own error on that
    input), and the 8-bit image within 1 LSB of truth's. If anything fails, nothing is written.

    \b
    Examples:
      lutfuse-deploy export --model lutfuse_deploy/pretrained/lutfuse.safetensors -o lut.onnx
      lutfuse-deploy export --model lutfuse_deploy/pretrained/lutfuse.safetensors -o lut-gather.onnx --lowering gather
      lutfuse-deploy export --model lutfuse_deploy/pretrained/mini.safetensors -o mini.onnx --height 480 --width 640
      lutfuse-deploy export --model lutfuse_deploy/pretrained/lutfuse.safetensors -o lut.onnx --triton models
      lutfuse-deploy export --model lutfuse_deploy/pretrained/mini.safetensors --triton models
      lutfuse-deploy export --model lutfuse_deploy/pretrained/lutfuse.safetensors -o lut-rig.onnx \
          --rig recipes/rigs/example-640x512-to-640x480.yaml
    """
    import tempfile

    from lutfuse_deploy.export.onnx import torch_to_onnx
    from lutfuse_deploy.io.checkpoints import resolve_checkpoint
    from lutfuse_deploy.io.files import check_outputs

    if out is None and triton_repo is None:
        raise click.UsageError("give -o FILE.onnx, or --triton REPO to write a Triton model repository")
    if out is not None:
        check_outputs(files=[out, out.with_suffix(".json")], inputs=[model] + ([rig] if rig else []))
    if triton_repo is not None:
        from lutfuse_deploy.export.triton import model_config_pb2

        model_config_pb2()  # a missing tritonclient fails here, before the export
    with tempfile.TemporaryDirectory() as scratch:  # without -o the graph lives here until Triton's copy
        target = out if out is not None else Path(scratch) / f"{resolve_checkpoint(model).stem}.onnx"
        path = torch_to_onnx(model, target, opset=opset, lowering=lowering, io=io, height=height, width=width,
                             dynamic=dynamic, simplify=not no_simplify, allow_opset_override=allow_opset,
                             threads=threads, rig=rig)
        _report_export(path, written=out is not None)
        if triton_repo is not None:
            from lutfuse_deploy.export.triton import onnx_repository

            folder = onnx_repository(path, triton_repo, max_batch_size=triton_max_batch)
            click.echo(f"wrote Triton model {folder} (config.pbtxt, 1/model.onnx)")


def _report_export(path: Path, written: bool) -> None:
    """One line: what was exported and its parity record (from the sidecar)."""
    side = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    parity = side["parity"]
    worst = (f"max abs {parity['max_abs']:.3g} ({parity['worst_fraction_of_bound']:.0%} of its bound), "
             if parity["max_abs"] is not None else "")
    click.echo(f"{'wrote ' + str(path) if written else 'exported'} ({side['kind']}, opset {side['opset']}, lowering "
               f"{side['lowering']}, io {side['io']}, {_shape_words(side)}); parity vs "
               f"float64 truth over {len(parity['inputs'])} inputs: {worst}8-bit within {parity['max_lsb']} LSB")


def _shape_words(side: dict[str, Any]) -> str:
    if "rig" in side:
        ir, vi, out = (side["inputs"]["ir"]["shape"], side["inputs"]["vi"]["shape"], side["outputs"]["fused"]["shape"])
        return f"rig: ir {ir[3]}x{ir[2]} + vi {vi[3]}x{vi[2]} -> {out[3]}x{out[2]}"
    return "dynamic" if side["dynamic"] else "static"


@cli.command("check-onnx")
@click.argument("file", type=PathArg)
@click.option("--for", "target", type=click.Choice(ONNX_TARGETS), default="tensorrt",
              show_default=True, help="Which runtime's rules to apply.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def check_onnx_cmd(file: Path, target: str, as_json: bool) -> None:
    """Check an ONNX graph: checker, shape inference, and the target's rules. Exit 1 if any check fails."""
    from lutfuse_deploy.export.checks import run_checks

    results = run_checks(file, target)
    failed = [r for r in results if r.status == "fail"]
    verdict = "FAIL" if failed else "PASS"
    if as_json:
        click.echo(json.dumps({"file": str(file), "target": target, "verdict": verdict,
                               "checks": [r.to_dict() for r in results]}, indent=2))
    else:
        width = max(len(r.name) for r in results)
        for r in results:
            click.echo(f"  {r.name:<{width}}  {r.status.upper():<4}  {r.detail}".rstrip())
        click.echo(f"{verdict}: {file} for {target}" + (f" ({len(failed)} check(s) failed)" if failed else ""))
    if failed:
        sys.exit(1)


COMPARE_EPILOG = """\b
Each pair's truth is the checkpoint run in float64; PyTorch float32's own distance from it (e_off)
sets the bound: max |graph - truth| <= max(1e-4, 2 x e_off), and the 8-bit images within 1 LSB
(uint8 graphs: the 8-bit half only). Exit status 1 when any pair fails or none could be judged.
\b
Examples:
  lutfuse-deploy export --model lutfuse_deploy/pretrained/lutfuse.safetensors -o lut.onnx
  lutfuse-deploy compare --onnx lut.onnx --model lutfuse_deploy/pretrained/lutfuse.safetensors \\
      --ir ../shared/data/ivif/msrs_test/ir --vi ../shared/data/ivif/msrs_test/vi --limit 2
"""


@cli.command("compare", epilog=COMPARE_EPILOG)
@click.option("--onnx", "graph", type=PathArg, required=True, help="The exported graph (.onnx).")
@click.option("--model", type=PathArg, required=True, help="The checkpoint it should equal (.safetensors or folder).")
@click.option("--ir", type=PathArg, required=True, metavar="FILE|DIR", help="IR image or folder.")
@click.option("--vi", type=PathArg, required=True, metavar="FILE|DIR", help="Visible image or folder (same names).")
@click.option("--backend", type=click.Choice(["onnxruntime", "openvino"]), default="onnxruntime", show_default=True,
              help="Runtime that runs the graph.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads [default: the runtime's].")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Judge the first N pairs only.")
@ir16_option
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def compare_cmd(graph: Path, model: Path, ir: Path, vi: Path, backend: str, threads: int | None, limit: int | None,
                ir16: str, as_json: bool) -> None:
    """Judge an existing ONNX graph against its checkpoint on image pairs, with export's parity rule."""
    from lutfuse_deploy.errors import InputError
    from lutfuse_deploy.export.compare import compare_graph

    report = compare_graph(graph, model, ir, vi, backend=backend, threads=threads, ir16=ir16, limit=limit)
    doc = report.to_dict()
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        for note in report.notes:
            click.echo(f"note: {note}", err=True)
        for r in report.rows:
            err = "" if r["max_abs"] is None else f"max abs {r['max_abs']:.3g} (bound {r['bound']:.3g}), "
            click.echo(f"  {'PASS' if r['passed'] else 'FAIL'}  {r['pair']} {r['size']}: {err}worst 8-bit "
                       f"difference {r['max_lsb']} LSB")
        click.echo(f"{doc['verdict']}: {len(report.rows) - len(report.failed)}/{len(report.rows)} pairs within the "
                   f"parity rule ({report.kind}, io {report.io}, {backend})")
    for line in report.skipped:
        click.echo(f"error: {line}", err=True)
    if not report.rows:
        raise InputError(f"no pair could be judged ({len(report.skipped)} skipped)")
    if report.failed or report.skipped:
        sys.exit(1)
