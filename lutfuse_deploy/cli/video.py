"""The video half of ``fuse``: its options and its summary line.

Kept apart from ``cli/fuse.py`` so the image path reads as before; ``fuse`` routes here when --ir,
--vi and --out name video files. Every option here is refused for image pairs (``scoped_options``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lutfuse_deploy.cli.scoped_options import VIDEO

if TYPE_CHECKING:
    from lutfuse_deploy.fuse.pipeline import VideoSummary
    from lutfuse_deploy.fuse.sources import MemoryCheck
    from lutfuse_deploy.runtime.base import Runner

VIDEO_OPTIONS = (
    click.option("--encoder", default="libx264", show_default=True, callback=VIDEO.mark,
                 help="Video: any FFmpeg video encoder PyAV has (libx264, libx265, libvpx-vp9, mpeg4, ffv1, ...)."),
    click.option("--crf", type=click.IntRange(min=0, max=63), default=None, callback=VIDEO.mark,
                 help="Video: constant-rate-factor quality for libx264/libx265/vp9/av1 (lower is better; "
                      "x264: 0 lossless, 18 visually lossless, 23 its default)."),
    click.option("--bitrate", default=None, metavar="RATE", callback=VIDEO.mark,
                 help="Video: target bit rate, e.g. 4M or 800k (encoders without --crf)."),
    click.option("--pix-fmt", default=None, metavar="FORMAT", callback=VIDEO.mark,
                 help="Video: encoder pixel format [default: yuv420p, yuv444p for odd sizes]."),
    click.option("--resample-to", type=click.Choice(["ir", "vi"]), default=None, callback=VIDEO.mark,
                 help="Video with different frame rates: follow this stream's frames and rate, pairing each "
                      "with the other stream's frame nearest in time (refused otherwise)."),
    click.option("--trim", is_flag=True, callback=VIDEO.mark,
                 help="Video of different lengths: keep the frames that pair instead of refusing."),
    click.option("--save-frames", type=click.Path(path_type=Path), default=None, metavar="DIR", callback=VIDEO.mark,
                 help="Video: also write each fused frame as DIR/NNNNNN.png."),
)
VIDEO_PARAMS = ("encoder", "crf", "bitrate", "pix_fmt", "resample_to", "trim", "save_frames")


def video_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(VIDEO_OPTIONS):
        f = option(f)
    return f


def tanh_given(ctx: click.Context) -> bool:
    """Whether --tanh-to-8bit was set: video defaults to ``clip`` (per-frame min-max would flicker)."""
    from click.core import ParameterSource

    return ctx.get_parameter_source("tanh_map") is not ParameterSource.DEFAULT


def fuse_videos(runner: Runner, ir: Path, vi: Path, out: Path, json_out: bool, quiet: bool, tanh_map: str,
                ir16: str, memory: MemoryCheck | None, **video: Any) -> VideoSummary:
    from lutfuse_deploy.fuse.pipeline import VideoOptions, fuse_video

    options = VideoOptions(tanh_map=tanh_map, ir16=ir16, **{k: video[k] for k in VIDEO_PARAMS})
    summary = fuse_video(runner, ir, vi, out, options, memory=memory, progress=not quiet)
    if summary.leftover:
        click.echo(f"note: {summary.leftover} (--trim)", err=True)
    if summary.interrupted:
        of = f" of {summary.total}" if summary.total else ""
        click.echo(f"interrupted: {summary.frames}{of} frames fused, nothing written ({out} is written only when "
                   "every frame is in it)", err=True)
    if json_out:
        click.echo(json.dumps({**summary.to_dict(), "backend": runner.backend}, indent=2))
    elif not summary.interrupted:
        rate = f"{float(summary.rate):g} fps" if summary.rate else "unknown rate"
        click.echo(f"{summary.frames} frames fused in {summary.seconds:.2f} s ({summary.fps:.1f} fps), mean "
                   f"{summary.mean_model_ms:.2f} ms per frame in the model on {runner.backend} -> {out} ({rate}, "
                   f"{options.encoder})")
    sys.stdout.flush()
    return summary
