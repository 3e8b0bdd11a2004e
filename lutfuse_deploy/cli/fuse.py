"""``fuse``: one pair or a folder of pairs through any backend, with a summary at the end."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lutfuse_deploy.cli import cli
from lutfuse_deploy.cli.live import LIVE_PARAMS, fuse_cameras, live_options, live_run
from lutfuse_deploy.cli.video import VIDEO_PARAMS, fuse_videos, tanh_given, video_options, video_run
from lutfuse_deploy.runtime.openvino import PRECISIONS as OPENVINO_PRECISIONS

if TYPE_CHECKING:
    from lutfuse_deploy.runtime.base import Runner


@cli.command("fuse")
@click.option("--model", type=click.Path(path_type=Path), required=True, metavar="FILE|DIR",
              help="Checkpoint (.safetensors or folder) for torch, .onnx for onnxruntime or openvino, "
              ".engine for tensorrt.")
@click.option("--ir", "ir_arg", required=True, metavar="FILE|DIR|URL",
              help="IR image, folder, video or camera (rtsp://, udp://, srt://, /dev/videoN).")
@click.option("--vi", "vi_arg", required=True, metavar="FILE|DIR|URL",
              help="Visible image, folder (same names), video or camera.")
@click.option("--out", "out_arg", required=True, metavar="DIR|FILE|URL",
              help="Output folder for NAME.png, a file NAME.png when --ir and --vi are one pair, a video "
              "file, or (live) a stream such as udp://HOST:PORT.")
@click.option("--backend", type=click.Choice(["torch", "onnxruntime", "openvino", "tensorrt"]), default="torch",
              show_default=True)
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
@click.option("--rig", type=click.Path(path_type=Path), default=None, metavar="RIG.yaml",
              help="Two unregistered cameras: IR and visible frames of the rig's sizes, fused in the visible "
              "camera's geometry (torch; a graph exported with --rig carries its rig and needs no --rig).")
@click.option("--json", "json_out", is_flag=True, help="Print the summary as JSON on stdout.")
@video_options
@live_options
@click.option("--quiet", is_flag=True, help="No progress bar (none is drawn when stderr is not a terminal).")
@click.option("--no-memory-check", is_flag=True,
              help="Run even when the estimated peak memory of the largest pair exceeds the available memory.")
def fuse_cmd(model: Path, ir_arg: str, vi_arg: str, out_arg: str, backend: str, precision: str, save_float: bool,
             device: str, threads: int | None, ir16: str, tanh_map: str, rig: Path | None, json_out: bool,
             quiet: bool, no_memory_check: bool, **options: Any) -> None:
    """Fuse IR/visible pairs: --ir and --vi are two images, or two folders of same-named pairs
    (ir/00001.png <-> vi/00001.jpg).

    Writes OUT/NAME.png (or the file OUT.png for one pair): RGB for lutfuse, gray for MMDRFuse.
    Images are read upright (EXIF orientation applied). A bad pair is reported on one line and
    skipped; the exit status is 1 if anything failed. An output that is one of the inputs, or
    cannot be written, is refused before any work, and so is a pair whose estimated peak memory
    exceeds the available memory (docs/performance.md, "Memory").

    Camera rigs: with --rig RIG.yaml (from `calibrate`), or a graph exported with --rig, each pair is
    the two cameras' raw frames (sizes may differ); the IR is warped into the visible frame and the
    fused frame has the rig's output size (docs/rigs.md).

    Videos: with --ir, --vi and --out video files (.mp4, .mkv, ...) the streams are paired frame by
    frame and the fused frames encoded at the input's rate (the Video options; docs/usage.md, Video).

    Live cameras: with camera addresses (or --live) the newest frames captured together are fused
    as they come, into a video file or a stream (the Live options; docs/usage.md, Live cameras).
    """
    from lutfuse_deploy.errors import InputError
    from lutfuse_deploy.fuse.pipeline import fuse_pairs
    from lutfuse_deploy.fuse.sinks import plan_outputs
    from lutfuse_deploy.io.files import check_outputs
    from lutfuse_deploy.io.images import find_pairs

    if precision != "fp32" and backend != "openvino":
        raise InputError(f"--precision {precision} is for --backend openvino")
    ctx = click.get_current_context()
    video = {k: options[k] for k in VIDEO_PARAMS}
    live = {k: options[k] for k in LIVE_PARAMS}
    if live_run(ir_arg, vi_arg, ctx, live):
        runner = make_runner(model, backend, device, threads, precision, chatty=not (json_out or quiet), rig=rig)
        fuse_cameras(runner, ir_arg, vi_arg, out_arg, json_out=json_out, quiet=quiet,
                     tanh_map=tanh_map if tanh_given(ctx) else "clip", ir16=ir16, video=video, live=live)
        return
    ir, vi, out = Path(ir_arg), Path(vi_arg), Path(out_arg)
    if video_run(ir, vi, out):
        runner = make_runner(model, backend, device, threads, precision, chatty=not (json_out or quiet), rig=rig)
        fuse_videos(runner, ir, vi, out, json_out=json_out, quiet=quiet,
                    tanh_map=tanh_map if tanh_given(ctx) else "clip", ir16=ir16, **video)
        return
    pairs, problems = find_pairs(ir, vi)
    targets = plan_outputs(pairs, out, save_float)
    inputs = [ir, vi, model, *(f for p in pairs for f in (p.ir, p.vi))]
    check_outputs(files=[f for t in targets for f in t if f is not None],
                  folders=[out] if ir.is_dir() else [], inputs=inputs)
    for p in problems:
        click.echo(f"error: {p}", err=True)
    runner = make_runner(model, backend, device, threads, precision, chatty=not (json_out or quiet), rig=rig)
    if not no_memory_check:
        from lutfuse_deploy.runtime.memory import check_memory, largest_image, memory_device

        check_memory(runner.kind, backend, memory_device(backend, device), largest_image([p.ir for p in pairs]))
    summary = fuse_pairs(runner, pairs, out, save_float=save_float, tanh_map=tanh_map, ir16=ir16,
                         progress=not quiet and sys.stderr.isatty())
    summary.failed[:0] = problems
    if json_out:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        click.echo(f"{len(summary.done)} fused, {len(summary.failed)} failed; mean {summary.mean_model_ms:.2f} ms "
                   f"per pair in the model, {summary.mean_total_ms:.2f} ms per pair wall time (reading and writing "
                   f"overlapped) -> {out}")
    if summary.failed or not summary.done:
        sys.exit(1)


def make_runner(model: Path, backend: str, device: str, threads: int | None, precision: str, chatty: bool,
                rig: Path | None = None) -> Runner:
    """The runner for --model on --backend, with the default CPU threads said on stderr when ``chatty``.
    ``rig``: a checkpoint runs behind the rig's warp; a graph must already carry that rig."""
    from lutfuse_deploy.runtime import create_runner

    if threads is None and device == "cpu":
        from lutfuse_deploy.runtime.cpus import default_threads

        choice = default_threads()
        threads = choice.threads
        if chatty:
            click.echo(f"threads: {choice.describe()}", err=True)
    options: dict[str, object] = {"threads": threads}
    if backend == "torch":
        options["device"] = device
        if rig is not None:
            options["rig"] = rig
    if backend == "openvino":
        options["precision"] = precision
    runner = create_runner(model, backend, **options)
    if rig is not None and backend != "torch":
        from lutfuse_deploy.runtime.rigs import check_runner_rig

        check_runner_rig(runner, rig)
    if runner.rig is not None and chatty:
        click.echo(f"rig: {runner.rig.describe()}", err=True)
    if backend == "openvino" and chatty:
        click.echo(runner.describe_precision(), err=True)  # type: ignore[attr-defined]
    return runner
