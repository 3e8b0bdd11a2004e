"""The live half of ``fuse``: its options, when a run is live, and its summary line.

``fuse`` routes here when --ir or --vi is a camera address (an rtsp, udp, rtp or srt URL, /dev/videoN)
or --live is given; the work is ``fuse.live_run.fuse_live``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from lutfuse_deploy.runtime.base import Runner


def _key_values(_ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for v in values:
        key, eq, value = v.partition("=")
        if not eq or not key:
            raise click.BadParameter(f"{v!r}: expected KEY=VALUE", param=param)
        out[key] = value
    return out


LIVE_OPTIONS = (
    click.option("--live", is_flag=True,
                 help="Live: treat --ir/--vi files as cameras (played at their own rate); implied by camera "
                      "addresses (rtsp, udp, srt or rtp URLs, /dev/videoN)."),
    click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
                 help="Live: stop after this many seconds of fusing (Ctrl-C or SIGTERM also stop; the output "
                      "is finalized either way)."),
    click.option("--reconnect", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
                 help="Live: reopen a camera that stalls or disconnects up to N times per outage (waits 0.5, "
                      "1, 2, 4, 8 s) before ending the run."),
    click.option("--stall-timeout", type=click.FloatRange(min=0.1), default=3.0, show_default=True,
                 metavar="SECONDS", help="Live: no frame from a camera for this long is a stall."),
    click.option("--sync-tolerance", type=click.FloatRange(min=0, min_open=True), default=None, metavar="MS",
                 help="Live: pair frames captured at most this far apart [default: half the slower camera's "
                      "frame period]."),
    click.option("--sync-offset", type=float, default=0.0, show_default=True, metavar="MS",
                 help="Live: how much later the IR camera's timestamps are than the visible camera's for frames "
                      "captured together (a thermal core's readout, a slower encoder); subtracted from the IR "
                      "capture times before pairing. Measure it once per rig (docs/usage.md, Live cameras)."),
    click.option("--clock", type=click.Choice(["stream", "arrival"]), default="stream", show_default=True,
                 help="Live: capture time from each stream's timestamps (mapped to this host's clock) or "
                      "the frames' arrival here."),
    click.option("--ir-option", "ir_options", multiple=True, callback=_key_values, metavar="KEY=VALUE",
                 help="Live: an FFmpeg option for the IR camera (e.g. video_size=640x512, framerate=30, "
                      "input_format=yuyv422 for V4L2; rtsp_transport=udp). Repeatable."),
    click.option("--vi-option", "vi_options", multiple=True, callback=_key_values, metavar="KEY=VALUE",
                 help="Live: an FFmpeg option for the visible camera. Repeatable."),
    click.option("--encoder-option", "encoder_options", multiple=True, callback=_key_values, metavar="KEY=VALUE",
                 help="Live: an encoder option over the live defaults (x264/x265: preset=ultrafast, "
                      "tune=zerolatency; a key frame a second). Repeatable."),
)
LIVE_PARAMS = ("live", "duration", "reconnect", "stall_timeout", "sync_tolerance", "sync_offset", "clock", "ir_options",
               "vi_options", "encoder_options")


def live_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(LIVE_OPTIONS):
        f = option(f)
    return f


def live_run(ir: str, vi: str, ctx: click.Context, options: dict[str, Any]) -> bool:
    """Whether ``fuse`` was given cameras; live options on a run that is not live are refused."""
    from click.core import ParameterSource

    from lutfuse_deploy.errors import InputError
    from lutfuse_deploy.fuse.cameras import is_live_address

    if options["live"] or is_live_address(ir) or is_live_address(vi):
        from lutfuse_deploy.io.video import import_av

        for keys, what in ((("no_memory_check",), "images"), (("resample_to", "trim", "save_frames"), "video files")):
            given = [f"--{k.replace('_', '-')}" for k in keys if ctx.params.get(k)]
            if given:  # refused before the model loads
                raise InputError(f"{', '.join(given)}: for {what}, not live cameras")

        import_av()  # a missing extra is named before the model loads
        return True
    given = [f"--{k.removesuffix('s').replace('_', '-')}" for k in LIVE_PARAMS
             if ctx.get_parameter_source(k) is not ParameterSource.DEFAULT]
    if given:
        raise InputError(f"{', '.join(given)}: for live cameras only (camera addresses or --live)")
    return False


def fuse_cameras(runner: Runner, ir: str, vi: str, out: str, json_out: bool, quiet: bool, tanh_map: str,
                 ir16: str, video: dict[str, Any], live: dict[str, Any]) -> None:
    from lutfuse_deploy.fuse.live import LiveOptions
    from lutfuse_deploy.fuse.live_run import fuse_live
    from lutfuse_deploy.fuse.pipeline import VideoOptions

    options = LiveOptions(duration=live["duration"], tolerance_ms=live["sync_tolerance"],
                          sync_offset_ms=live["sync_offset"], clock=live["clock"],
                          reconnect=live["reconnect"], stall_s=live["stall_timeout"],
                          ir_options=live["ir_options"], vi_options=live["vi_options"])
    summary = fuse_live(runner, ir, vi, out, options, VideoOptions(tanh_map=tanh_map, ir16=ir16, **video),
                        live["encoder_options"], progress=not quiet)
    if json_out:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        click.echo(summary.line())
    sys.stdout.flush()
    if summary.exit_code:
        sys.exit(summary.exit_code)
