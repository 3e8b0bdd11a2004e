"""``calibrate``: make a rig file for two unregistered cameras, or check one with an overlay picture."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from lutfuse_deploy.cli import cli

PathArg = click.Path(path_type=Path)


def _read_frames(ir: Path, vi: Path) -> tuple[Any, Any]:
    from lutfuse_deploy.io.images import read_ir, read_vi

    return read_ir(ir), read_vi(vi)


def _size(image: Any) -> tuple[int, int]:
    return int(image.shape[1]), int(image.shape[0])


def _check_frames_match(rig: Any, ir: Any, vi: Any, ir_path: Path, vi_path: Path) -> None:
    from lutfuse_deploy.errors import RigError

    for path, image, want, role in ((ir_path, ir, rig.ir_size, "IR"), (vi_path, vi, rig.vi_size, "visible")):
        if _size(image) != tuple(want):
            raise RigError(f"{path}: {role} frame is {image.shape[1]}x{image.shape[0]}, the rig says "
                           f"{want[0]}x{want[1]}")


@cli.command("calibrate")
@click.option("--ir", "ir_path", type=PathArg, required=True, help="A frame of the thermal (IR) camera.")
@click.option("--vi", "vi_path", type=PathArg, required=True, help="A frame of the visible camera, same moment.")
@click.option("--points", type=PathArg, default=None,
              help="CSV of clicked point pairs: header ir_x,ir_y,vi_x,vi_y, one row per pair (>= 4; 8-20 spread "
                   "over the image fit well). Pixel centres at integer coordinates.")
@click.option("--check", "check_rig", type=PathArg, default=None, metavar="RIG",
              help="Draw how RIG lines the two frames up: -o names the overlay PNG.")
@click.option("--pick", is_flag=True,
              help="Click point pairs in a page in the browser, served on 127.0.0.1 (reach it over SSH with "
                   "ssh -L); its Save button writes -o and stops.")
@click.option("--port", type=int, default=None,
              help="With --pick: the port to serve on (default 8765; 0 picks a free one).")
@click.option("--open", "open_browser", is_flag=True, help="With --pick: also open the page in this machine's browser.")
@click.option("--init", "init_rig", type=PathArg, default=None, metavar="RIG",
              help="A rig to start from. With --pick: the overlay shows it until your pairs fit, its clicked "
                   "pairs are loaded, and 1-3 new pairs correct it.")
@click.option("-o", "--out", type=PathArg, required=True,
              help="The rig file to write (rig.yaml), or with --check the overlay PNG.")
@click.option("--output", "output_region", type=click.Choice(["visible", "overlap"]), default="visible",
              show_default=True, help="Fused frames cover the whole visible frame, or only the box the IR sees.")
@click.option("--overlay", type=PathArg, default=None, help="Also write the new rig's overlay PNG here.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def calibrate_cmd(ir_path: Path, vi_path: Path, points: Path | None, check_rig: Path | None, pick: bool,
                  port: int | None, open_browser: bool, init_rig: Path | None, out: Path, output_region: str,
                  overlay: Path | None, as_json: bool) -> None:
    """Register a thermal and a visible camera: write the rig file every graph, engine and fuse run reads.

    A rig maps IR pixels to visible pixels (a homography); fused frames come out in the visible
    camera's geometry. Give exactly one way to make or check it:

    \b
      --points CSV   fit to point pairs you clicked (robust: wrong clicks are named and left out)
      --check RIG    write an overlay picture of RIG: IR magenta, visible green, grey where they agree
      --pick         click pairs in the browser, watching residuals and the overlay; Save writes -o

    \b
    Examples:
      lutfuse-deploy calibrate --ir ir.png --vi vi.png --points pts.csv -o rig.yaml --overlay overlay.png
      lutfuse-deploy calibrate --ir ir.png --vi vi.png --check rig.yaml -o overlay.png
      lutfuse-deploy calibrate --ir ir.png --vi vi.png --pick -o rig.yaml --port 8765
    """
    from lutfuse_deploy.errors import RigError
    from lutfuse_deploy.io.files import check_outputs

    modes = [name for name, given in (("--points", points), ("--check", check_rig), ("--pick", pick or None))
             if given is not None]
    if len(modes) != 1:
        raise RigError("give exactly one of --points, --check or --pick"
                       + (f" (got {' and '.join(modes)})" if modes else ""))
    if not pick:
        _refuse("--port", port, None, "without --pick")
        _refuse("--open", open_browser, False, "without --pick")
        _refuse("--init", init_rig, None, "with " + modes[0])
    check_outputs(files=[out] + ([overlay] if overlay else []),
                  inputs=[ir_path, vi_path] + [p for p in (points, check_rig, init_rig) if p is not None])
    if pick:
        from lutfuse_deploy.cli.calibrate_pick import pick_rig

        pick_rig(ir_path, vi_path, out, init_rig, port, open_browser, output_region, overlay, as_json)
        return
    if check_rig is not None:
        _check(ir_path, vi_path, check_rig, out, overlay, output_region, as_json)
        return
    assert points is not None
    _from_points(ir_path, vi_path, points, out, output_region, overlay, as_json)


def _refuse(option: str, value: Any, default: Any, why: str) -> None:
    from lutfuse_deploy.errors import RigError

    if value != default:
        raise RigError(f"{option} does not apply {why}")


def _check(ir_path: Path, vi_path: Path, rig_path: Path, out: Path, overlay: Path | None, output_region: str,
           as_json: bool) -> None:
    from lutfuse_deploy.rig.file import load_rig
    from lutfuse_deploy.rig.overlay import write_overlay

    _refuse("--overlay", overlay, None, "with --check (-o is the overlay)")
    _refuse("--output", output_region, "visible", "with --check (the rig file says its output)")
    if out.suffix.lower() != ".png":
        from lutfuse_deploy.errors import RigError

        raise RigError(f"{out}: with --check, -o names the overlay picture (.png)")
    rig = load_rig(rig_path)
    ir, vi = _read_frames(ir_path, vi_path)
    _check_frames_match(rig, ir, vi, ir_path, vi_path)
    write_overlay(out, ir, vi, rig)
    if as_json:
        click.echo(json.dumps({"rig": str(rig_path), "overlay": str(out), "describe": rig.describe()}, indent=2))
    else:
        click.echo(f"{rig_path}: {rig.describe()}")
        click.echo(f"wrote {out}")


def _from_points(ir_path: Path, vi_path: Path, points: Path, out: Path, output_region: str, overlay: Path | None,
                 as_json: bool) -> None:
    from lutfuse_deploy.rig.file import save_rig
    from lutfuse_deploy.rig.overlay import write_overlay
    from lutfuse_deploy.rig.points import read_points

    ir, vi = _read_frames(ir_path, vi_path)
    table = read_points(points)
    from lutfuse_deploy.rig.points import fit_points

    fit = fit_points(table, _size(ir), _size(vi), output_region,
                     source={"ir": ir_path.name, "vi": vi_path.name, "points": points.name})
    save_rig(fit.rig, out)
    if overlay is not None:
        write_overlay(overlay, ir, vi, fit.rig)
    summary = fit.summary()
    if as_json:
        click.echo(json.dumps({"rig": str(out), **summary, "residuals_px": [float(r) for r in fit.residuals],
                               "describe": fit.rig.describe()}, indent=2))
        return
    click.echo(f"{'pair':>4}  {'ir (x, y)':>16}  {'vi (x, y)':>16}  residual")
    for i, (row, res, ok) in enumerate(zip(table, fit.residuals, fit.inliers), start=1):
        flag = "" if ok else "  outlier: left out of the fit"
        click.echo(f"{i:>4}  {row[0]:7.1f},{row[1]:7.1f}  {row[2]:7.1f},{row[3]:7.1f}  {res:6.2f} px{flag}")
    outl = ", ".join(str(i + 1) for i in fit.outliers) or "none"
    click.echo(f"fit on {summary['inliers']} of {summary['pairs']} pairs: rms {summary['rms_px']:.2f} px, "
               f"worst inlier {summary['max_inlier_px']:.2f} px; outliers: {outl}")
    click.echo(f"wrote {out}: {fit.rig.describe()}" + (f"; overlay {overlay}" if overlay else ""))
