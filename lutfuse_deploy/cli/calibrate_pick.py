"""``calibrate --pick``: serve the point picker, say where to find it, and report the rig its Save wrote.

Kept apart from ``cli/calibrate.py`` (which parses the options and picks the mode) because it is the one
mode that talks to a person for minutes: the URL, the SSH hint and what happens on Ctrl-C.
"""

from __future__ import annotations

import getpass
import json
import socket
from pathlib import Path

import click


def _ssh_hint(port: int) -> str:
    """The tunnel command to run on the machine with the browser (this one may be a Jetson on a robot)."""
    try:
        who = f"{getpass.getuser()}@{socket.gethostname()}"
    except (KeyError, OSError):
        who = "USER@THIS-MACHINE"
    return f"ssh -N -L {port}:127.0.0.1:{port} {who}"


def pick_rig(ir_path: Path, vi_path: Path, out: Path, init_path: Path | None, port: int | None, open_browser: bool,
             output_region: str, overlay: Path | None, as_json: bool, ir16: str) -> None:
    from lutfuse_deploy.rig.file import load_rig
    from lutfuse_deploy.rig.frames import check_frames_match as _check_frames_match
    from lutfuse_deploy.rig.frames import read_frame_pair as _read_frames
    from lutfuse_deploy.rig.overlay import write_overlay
    from lutfuse_deploy.rig.picker import DEFAULT_PORT, PickerServer, PickerSession

    ir, vi = _read_frames(ir_path, vi_path, ir16)
    init = None
    if init_path is not None:
        init = load_rig(init_path)
        _check_frames_match(init, ir, vi, ir_path, vi_path)
        source = click.get_current_context().get_parameter_source("output_region")
        if source is click.core.ParameterSource.DEFAULT:
            output_region = init.output  # the initial rig's output region, unless --output says otherwise
    session = PickerSession(ir, vi, output_region, init, {"ir": ir_path.name, "vi": vi_path.name})
    server = PickerServer(session, out, DEFAULT_PORT if port is None else port)
    err = as_json  # with --json, stdout holds only the result
    click.echo(f"point picker for {ir_path} ({session.ir_size[0]}x{session.ir_size[1]}) and {vi_path} "
               f"({session.vi_size[0]}x{session.vi_size[1]}): open {server.url}", err=err)
    click.echo(f"from another machine: {_ssh_hint(server.port)}, then open {server.url} there", err=err)
    click.echo(f"Save in the page writes {out} and stops; Ctrl-C stops without writing anything", err=err)
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    rig = server.serve()
    if rig is None:  # serve() returns None only on a timeout, which the CLI never sets
        raise click.ClickException("the picker stopped without a rig")
    if overlay is not None:
        write_overlay(overlay, ir, vi, rig)
    made = rig.made
    if as_json:
        click.echo(json.dumps({"rig": str(out), "method": made.get("method"), "pairs": len(made.get("points", [])),
                               "residuals_px": made.get("residuals_px"), "outliers": made.get("outliers"),
                               "overlay": str(overlay) if overlay else None, "describe": rig.describe()}, indent=2))
        return
    pairs = len(made.get("points", []))
    outliers = ", ".join(map(str, made.get("outliers") or [])) or "none"
    click.echo(f"{made.get('method')} from {pairs} pair(s); outliers: {outliers}")
    click.echo(f"wrote {out}: {rig.describe()}" + (f"; overlay {overlay}" if overlay else ""))
