"""``fuse``: one pair or a folder of pairs through any backend, with a summary at the end."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lutfuse_deploy.cli import cli
from lutfuse_deploy.cli.live import LIVE_PARAMS, fuse_cameras, live_options, live_run
from lutfuse_deploy.cli.options import graph_tanh_map
from lutfuse_deploy.cli.scoped_options import IMAGES, MMDRFUSE, OPENVINO, TORCH, VIDEO
from lutfuse_deploy.cli.video import VIDEO_PARAMS, fuse_videos, tanh_given, video_options
from lutfuse_deploy.runtime.openvino import PRECISIONS as OPENVINO_PRECISIONS

if TYPE_CHECKING:
    from lutfuse_deploy.fuse.pipeline import FuseSummary
    from lutfuse_deploy.runtime.base import Runner


@cli.command("fuse")
@click.option("--model", type=click.Path(path_type=Path), required=True, metavar="FILE|DIR",
              help="Checkpoint (.safetensors or folder) for torch, .onnx for onnxruntime or openvino, "
              ".engine for tensorrt.")
@click.option("--ir", "ir_arg", required=True, metavar="FILE|DIR|URL",
              help="IR image, folder, video or camera (an rtsp, udp or rtp URL, or /dev/videoN).")
@click.option("--vi", "vi_arg", required=True, metavar="FILE|DIR|URL",
              help="Visible image, folder (same names), video or camera.")
@click.option("--out", "out_arg", required=True, metavar="DIR|FILE|URL",
              help="Output folder for NAME.png, a file NAME.png when --ir and --vi are one pair, a video "
              "file, or (live) a stream such as udp://<host>:<port> or a new folder for NNNNNN.png frames.")
@click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime", "openvino", "tensorrt", "numba"]),
              default="auto", show_default=True,
              help="auto: a checkpoint runs as its default ONNX export in ONNX Runtime, exported and verified "
              "on first use and cached in ~/.cache/lutfuse-deploy (PyTorch where ONNX Runtime is missing, "
              "said on stderr); .onnx and engines run on the backend their suffix names. numba: a LUT-Fuse "
              "or MMDRFuse-student checkpoint with its per-pixel stages in single CPU loops (fastest on a "
              "CPU; live cameras).")
@click.option("--precision", type=click.Choice(list(OPENVINO_PRECISIONS)), default="fp32", show_default=True,
              callback=OPENVINO.mark, help="openvino only: bf16 is faster on CPUs with bfloat16 units; its error "
              "against fp32 is measured and printed at load.")
@click.option("--save-float", is_flag=True, callback=IMAGES.mark,
              help="Images: also write the raw output as NAME.npy (unclamped).")
@click.option("--skip-existing", is_flag=True, callback=IMAGES.mark,
              help="Images: leave out pairs whose outputs are already there (continue an interrupted run).")
@click.option("--device", default="cpu", show_default=True, callback=TORCH.mark,
              help="torch device: cpu or cuda[:N].")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads [default: the CPUs this process may use, less those other processes keep busy].")
@click.option("--ir16", type=click.Choice(["refuse", "minmax", "percentile", "linear"]), default="refuse",
              show_default=True, help="16-bit IR: refuse, or map to 8 bits (per-frame min-max, 1-99th "
              "percentile stretch, or linear v*255/65535).")
@click.option("--tanh-to-8bit", "tanh_map", type=click.Choice(["minmax", "clip"]), default="minmax",
              show_default=True, callback=MMDRFUSE.mark, help="MMDRFuse PNGs: per-image min-max stretch of tanh "
              "(official test script) or clip tanh to [0,1] [videos: clip].")
@click.option("--rig", type=click.Path(path_type=Path), default=None, metavar="RIG.yaml",
              help="Two unregistered cameras: IR and visible frames of the rig's sizes, fused in the visible "
              "camera's geometry (checkpoints on auto, torch or numba; a graph exported with --rig carries its "
              "rig and needs no --rig).")
@click.option("--json", "json_out", is_flag=True, help="Print the summary as JSON on stdout.")
@video_options
@live_options
@click.option("--quiet", is_flag=True, help="No progress bar (none is drawn when stderr is not a terminal).")
@click.option("--no-memory-check", is_flag=True,
              help="Run even when a pair's estimated peak memory exceeds the available memory.")
def fuse_cmd(model: Path, ir_arg: str, vi_arg: str, out_arg: str, backend: str, precision: str, save_float: bool,
             skip_existing: bool, device: str, threads: int | None, ir16: str, tanh_map: str, rig: Path | None,
             json_out: bool,
             quiet: bool, no_memory_check: bool, **options: Any) -> None:
    """Fuse IR/visible pairs: --ir and --vi are two images, or two folders of same-named pairs
    (ir/00001.png <-> vi/00001.jpg).

    Writes OUT/NAME.png (or the file OUT.png for one pair): RGB for lutfuse, gray for MMDRFuse.
    Images are read upright (EXIF orientation applied). A bad pair is reported on one line and
    skipped, and so is a pair whose estimated peak memory exceeds the available memory
    (docs/performance.md, "Memory"); the exit status is 1 if anything failed. An output that is
    one of the inputs, or cannot be written, is refused before any work. Reading and writing
    overlap the model; the summary gives the model's time and the wall time per pair. Ctrl-C
    stops after writing what was fused and says what is left; --skip-existing continues.

    Camera rigs: with --rig RIG.yaml (from `calibrate`), or a graph exported with --rig, each pair is
    the two cameras' raw frames (sizes may differ); the IR is warped into the visible frame and the
    fused frame has the rig's output size (docs/rigs.md).

    Videos: with --ir, --vi and --out video files (.mp4, .mkv, ...) the streams are paired frame by
    frame and the fused frames encoded at the input's rate (the Video options; docs/usage.md, Video).

    Live cameras: with camera addresses (or --live) the newest frames captured together are fused
    as they come, into a video file, a stream or a folder of frames (the Live options; docs/usage.md,
    Live cameras). On a small CPU, --backend numba runs the fast variant or the student fast enough
    for 30 and 60 fps cameras on 2 cores (docs/performance.md, Live cameras).

    Options that do not apply to a run (video options with images, --tanh-to-8bit with LUT-Fuse,
    --precision without openvino, --device without torch) are refused, not ignored.
    """
    from lutfuse_deploy.fuse.pipeline import fuse_pairs, memory_check
    from lutfuse_deploy.fuse.plan import is_video_run, plan_pairs

    ctx = click.get_current_context()
    video = {k: options[k] for k in VIDEO_PARAMS}
    live = {k: options[k] for k in LIVE_PARAMS}
    if live_run(ir_arg, vi_arg, ctx, live):
        IMAGES.refuse_unless(ctx, False, "this run fuses live cameras")
        OPENVINO.refuse_unless(ctx, backend == "openvino", f"this run uses --backend {backend}")
        TORCH.refuse_unless(ctx, backend in ("torch", "auto"), f"this run uses --backend {backend}")
        runner = make_runner(model, backend, device, threads, precision, chatty=not (json_out or quiet), rig=rig)
        MMDRFUSE.refuse_unless(ctx, runner.kind != "lutfuse", f"{model} is a {runner.kind} model")
        fuse_cameras(runner, ir_arg, vi_arg, out_arg, json_out=json_out, quiet=quiet,
                     tanh_map=graph_tanh_map(runner, tanh_map if tanh_given(ctx) else "clip", tanh_given(ctx)),
                     ir16=ir16, video=video, live=live)
        return
    ir, vi, out = Path(ir_arg), Path(vi_arg), Path(out_arg)
    video_run = is_video_run(ir, vi, out)
    VIDEO.refuse_unless(ctx, video_run, "--ir, --vi and --out are not video files")
    IMAGES.refuse_unless(ctx, not video_run, "this run fuses videos")
    OPENVINO.refuse_unless(ctx, backend == "openvino", f"this run uses --backend {backend}")
    TORCH.refuse_unless(ctx, backend in ("torch", "auto"), f"this run uses --backend {backend}")
    plan = None if video_run else plan_pairs(ir, vi, out, save_float, skip_existing, model)
    runner = make_runner(model, backend, device, threads, precision, chatty=not (json_out or quiet), rig=rig)
    MMDRFUSE.refuse_unless(ctx, runner.kind != "lutfuse", f"{model} is a {runner.kind} model")
    memory = None if no_memory_check else memory_check(runner, device)
    if plan is None:
        summary: FuseSummary = fuse_videos(runner, ir, vi, out, json_out=json_out, quiet=quiet,
                                           tanh_map=graph_tanh_map(runner, tanh_map if tanh_given(ctx) else "clip",
                                                                   tanh_given(ctx)), ir16=ir16,
                                           memory=memory, **video)
    else:
        for p in plan.problems:
            click.echo(f"error: {p}", err=True)
        summary = fuse_pairs(runner, plan, save_float=save_float, tanh_map=graph_tanh_map(runner, tanh_map,
                             tanh_given(ctx)), ir16=ir16, memory=memory,
                             progress=not quiet and sys.stderr.isatty())
        _report_pairs(summary, json_out, runner.backend)
    if summary.interrupted:
        sys.exit(130)
    if summary.failed or not (summary.done or summary.skipped):
        sys.exit(1)


def _report_pairs(summary: FuseSummary, json_out: bool, backend: str) -> None:
    """The closing lines of an image-pair run: warnings, then the summary (JSON or one line)."""
    checked = len(summary.done) + len(summary.failed)
    if summary.looks_swapped:
        click.echo(f"warning: {summary.looks_swapped} of {checked} pairs have a colour IR image and a gray "
                   "visible one: are --ir and --vi swapped?", err=True)
    if summary.interrupted:
        click.echo(f"interrupted: {len(summary.done)} fused, {len(summary.failed)} failed, {summary.left} left, "
                   f"outputs in {summary.out}; the same command with --skip-existing fuses the rest", err=True)
    if json_out:
        click.echo(json.dumps({**summary.to_dict(), "backend": backend}, indent=2))
        return
    line = f"{len(summary.done)} fused, {len(summary.failed)} failed"
    if summary.skipped:
        line += f", {len(summary.skipped)} skipped (outputs already there)"
    if summary.mean_model_ms is not None and summary.mean_total_ms is not None:
        line += (f"; mean {summary.mean_model_ms:.2f} ms per pair in the model, {summary.mean_total_ms:.2f} ms "
                 "per pair wall time (reading and writing overlapped)")
    click.echo(f"{line} on {backend} -> {summary.out}")


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
    if backend == "auto":
        from lutfuse_deploy.runtime.auto import auto_runner

        say = (lambda line: click.echo(line, err=True)) if chatty else (lambda line: None)
        runner = auto_runner(model, device, threads, say=say, rig=rig,
                             warn=lambda line: click.echo(f"note: {line}", err=True))
    else:
        options: dict[str, object] = {"threads": threads}
        if backend == "torch":
            options["device"] = device
        if backend in ("torch", "numba") and rig is not None:
            options["rig"] = rig
        if backend == "openvino":
            options["precision"] = precision
        runner = create_runner(model, backend, **options)
    if rig is not None and runner.backend not in ("torch", "numba"):
        from lutfuse_deploy.runtime.rigs import check_runner_rig

        check_runner_rig(runner, rig)
    if runner.rig is not None and chatty:
        click.echo(f"rig: {runner.rig.describe()}", err=True)
    if runner.backend == "openvino" and chatty:
        click.echo(runner.describe_precision(), err=True)  # type: ignore[attr-defined]
    return runner
