"""``fuse``: one pair or a folder of pairs through any backend, with a summary at the end."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lutfuse_deploy.cli import cli
from lutfuse_deploy.cli.video import fuse_videos, tanh_given, video_options, video_run
from lutfuse_deploy.runtime.openvino import PRECISIONS as OPENVINO_PRECISIONS

if TYPE_CHECKING:
    from lutfuse_deploy.runtime.base import Runner


@cli.command("fuse")
@click.option("--model", type=click.Path(path_type=Path), required=True, metavar="FILE|DIR",
              help="Checkpoint (.safetensors or folder) for torch, .onnx for onnxruntime or openvino, "
              ".engine for tensorrt.")
@click.option("--ir", type=click.Path(path_type=Path), required=True, metavar="FILE|DIR", help="IR image or folder.")
@click.option("--vi", type=click.Path(path_type=Path), required=True, metavar="FILE|DIR", help="Visible image or folder (same names).")
@click.option("--out", type=click.Path(path_type=Path), required=True, metavar="DIR|FILE.png",
              help="Output folder for NAME.png, or a file NAME.png when --ir and --vi are one pair.")
@click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime", "openvino", "tensorrt"]),
              default="auto", show_default=True,
              help="auto: a checkpoint runs as its default ONNX export in ONNX Runtime, exported and verified "
              "on first use and cached in ~/.cache/lutfuse-deploy (PyTorch where ONNX Runtime is missing, "
              "said on stderr); .onnx and engines run on the backend their suffix names.")
@click.option("--precision", type=click.Choice(list(OPENVINO_PRECISIONS)), default="fp32", show_default=True,
              help="openvino only: bf16 is faster on CPUs with bfloat16 units; its error against fp32 is "
              "measured and printed at load.")
@click.option("--save-float", is_flag=True, help="Also write the raw output as NAME.npy (unclamped).")
@click.option("--device", default="cpu", show_default=True, help="torch device: cpu or cuda[:N].")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads [default: the CPUs this process may use, less those other processes keep busy].")
@click.option("--ir16", type=click.Choice(["refuse", "minmax", "percentile", "linear"]), default="refuse",
              show_default=True, help="16-bit IR: refuse, or map to 8 bits (per-frame min-max, 1-99th "
              "percentile stretch, or linear v*255/65535).")
@click.option("--tanh-to-8bit", "tanh_map", type=click.Choice(["minmax", "clip"]), default="minmax",
              show_default=True, help="MMDRFuse PNGs: per-image min-max stretch of tanh (official test "
              "script) or clip tanh to [0,1].")
@click.option("--json", "json_out", is_flag=True, help="Print the summary as JSON on stdout.")
@video_options
@click.option("--quiet", is_flag=True, help="No progress bar (none is drawn when stderr is not a terminal).")
@click.option("--no-memory-check", is_flag=True,
              help="Run even when the estimated peak memory of the largest pair exceeds the available memory.")
def fuse_cmd(model: Path, ir: Path, vi: Path, out: Path, backend: str, precision: str, save_float: bool,
             device: str, threads: int | None, ir16: str, tanh_map: str, json_out: bool, quiet: bool,
             no_memory_check: bool, **video: Any) -> None:
    """Fuse IR/visible pairs: --ir and --vi are two images, or two folders of same-named pairs
    (ir/00001.png <-> vi/00001.jpg).

    Writes OUT/NAME.png (or the file OUT.png for one pair): RGB for lutfuse, gray for MMDRFuse.
    Images are read upright (EXIF orientation applied). A bad pair is reported on one line and
    skipped; the exit status is 1 if anything failed. An output that is one of the inputs, or
    cannot be written, is refused before any work, and so is a pair whose estimated peak memory
    exceeds the available memory (docs/performance.md, "Memory").

    Videos: with --ir, --vi and --out video files (.mp4, .mkv, ...) the streams are paired frame by
    frame and the fused frames encoded at the input's rate (the Video options; docs/usage.md, Video).
    """
    from lutfuse_deploy.errors import InputError
    from lutfuse_deploy.io.files import check_outputs
    from lutfuse_deploy.io.images import find_pairs
    from lutfuse_deploy.pipeline import fuse_pairs, plan_outputs

    if precision != "fp32" and backend != "openvino":
        raise InputError(f"--precision {precision} is for --backend openvino")
    if video_run(ir, vi, out):
        runner = make_runner(model, backend, device, threads, precision, chatty=not (json_out or quiet))
        fuse_videos(runner, ir, vi, out, json_out=json_out, quiet=quiet,
                    tanh_map=tanh_map if tanh_given(click.get_current_context()) else "clip", ir16=ir16,
                    **video)
        return
    pairs, problems = find_pairs(ir, vi)
    targets = plan_outputs(pairs, out, save_float)
    inputs = [ir, vi, model, *(f for p in pairs for f in (p.ir, p.vi))]
    check_outputs(files=[f for t in targets for f in t if f is not None],
                  folders=[out] if ir.is_dir() else [], inputs=inputs)
    for p in problems:
        click.echo(f"error: {p}", err=True)
    runner = make_runner(model, backend, device, threads, precision, chatty=not (json_out or quiet))
    if not no_memory_check:
        from lutfuse_deploy.runtime.memory import check_memory, largest_image, memory_device

        check_memory(runner.kind, runner.backend, memory_device(runner.backend, device),
                     largest_image([p.ir for p in pairs]))
    summary = fuse_pairs(runner, pairs, out, save_float=save_float, tanh_map=tanh_map, ir16=ir16,
                         progress=not quiet and sys.stderr.isatty())
    summary.failed[:0] = problems
    if json_out:
        click.echo(json.dumps({**summary.to_dict(), "backend": runner.backend}, indent=2))
    else:
        click.echo(f"{len(summary.done)} fused, {len(summary.failed)} failed; mean {summary.mean_model_ms:.2f} ms "
                   f"per pair in the model ({summary.mean_total_ms:.2f} ms with reading and writing) on "
                   f"{runner.backend} -> {out}")
    if summary.failed or not summary.done:
        sys.exit(1)


def make_runner(model: Path, backend: str, device: str, threads: int | None, precision: str, chatty: bool) -> Runner:
    """The runner for --model on --backend, with the default CPU threads said on stderr when ``chatty``."""
    from lutfuse_deploy.runtime import create_runner

    if threads is None and device == "cpu":
        from lutfuse_deploy.runtime.cpus import default_threads

        choice = default_threads()
        threads = choice.threads
        if chatty:
            click.echo(f"threads: {choice.describe()}", err=True)
    if backend == "auto":
        from lutfuse_deploy.runtime.auto import auto_runner

        say = (lambda line: click.echo(line, err=True)) if chatty else (lambda line: None)
        return auto_runner(model, device, threads, say=say, warn=lambda line: click.echo(f"note: {line}", err=True))
    options: dict[str, object] = {"threads": threads}
    if backend == "torch":
        options["device"] = device
    if backend == "openvino":
        options["precision"] = precision
    runner = create_runner(model, backend, **options)
    if backend == "openvino" and chatty:
        click.echo(runner.describe_precision(), err=True)  # type: ignore[attr-defined]
    return runner
