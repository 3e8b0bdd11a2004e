"""``calibrate``: make a rig file for two unregistered cameras, or check one with an overlay picture."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from lutfuse_deploy.cli import cli
from lutfuse_deploy.cli.options import ir16_option

PathArg = click.Path(path_type=Path)


def _read_frames(ir: Path, vi: Path, ir16: str) -> tuple[Any, Any]:
    from lutfuse_deploy.rig.frames import read_frame_pair

    return read_frame_pair(ir, vi, ir16)


def _size(image: Any) -> tuple[int, int]:
    return int(image.shape[1]), int(image.shape[0])


def _check_frames_match(rig: Any, ir: Any, vi: Any, ir_path: Path, vi_path: Path) -> None:
    from lutfuse_deploy.rig.frames import check_frames_match

    check_frames_match(rig, ir, vi, ir_path, vi_path)


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
              help="A rig to start from. With --refine: the rough rig to improve (clicked points, or the cameras' "
                   "fields of view). With --pick: the overlay shows it until your pairs fit, its clicked pairs "
                   "are loaded, and 1-3 new pairs correct it.")
@click.option("--refine", is_flag=True,
              help="Improve --init by lining up thermal and visible edges; --ir/--vi may be two folders of pairs "
                   "or two videos (pooled). Refused, nothing written, if its score is no better than the start's.")
@click.option("--frames", "max_frames", type=int, default=None,
              help="With --refine: pool at most this many pairs from folders or videos, spread evenly (default 8).")
@click.option("-o", "--out", type=PathArg, required=True,
              help="The rig file to write (rig.yaml), or with --check the overlay PNG.")
@click.option("--output", "output_region", type=click.Choice(["visible", "overlap"]), default="visible",
              show_default=True, help="Fused frames cover the whole visible frame, or only the box the IR sees.")
@click.option("--overlay", type=PathArg, default=None, help="Also write the new rig's overlay PNG here.")
@ir16_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def calibrate_cmd(ir_path: Path, vi_path: Path, points: Path | None, check_rig: Path | None, pick: bool,
                  port: int | None, open_browser: bool, init_rig: Path | None, refine: bool, max_frames: int | None,
                  out: Path, output_region: str, overlay: Path | None, ir16: str, as_json: bool) -> None:
    """Register a thermal and a visible camera: write the rig file every graph, engine and fuse run reads.

    A rig maps IR pixels to visible pixels (a homography); fused frames come out in the visible
    camera's geometry. Give exactly one way to make or check it:

    \b
      --points CSV   fit to point pairs you clicked (robust: wrong clicks are named and left out)
      --check RIG    write an overlay picture of RIG: IR magenta, visible green, grey where they agree
      --pick         click pairs in the browser, watching residuals and the overlay; Save writes -o
      --init RIG --refine
                     improve a rough RIG from the images (one pair, two folders of pairs, or two videos)

    \b
    Examples:
      lutfuse-deploy calibrate --ir ../shared/data/rig/roadscene_raw/ir/FLIR_00550.png \
          --vi ../shared/data/rig/roadscene_raw/vi/FLIR_00550.jpg \
          --points recipes/rigs/roadscene-FLIR_00550.points.csv -o rig.yaml --overlay overlay.png
      lutfuse-deploy calibrate --ir ../shared/data/rig/roadscene_raw/ir/FLIR_00550.png \
          --vi ../shared/data/rig/roadscene_raw/vi/FLIR_00550.jpg --check rig.yaml -o check.png
      lutfuse-deploy calibrate --ir ../shared/data/rig/roadscene_raw/ir/FLIR_00550.png \
          --vi ../shared/data/rig/roadscene_raw/vi/FLIR_00550.jpg \
          --init recipes/rigs/roadscene-FLIR_00550.rough.yaml --refine -o rig-refined.yaml
      lutfuse-deploy calibrate --ir ir.png --vi vi.png --pick -o rig.yaml --port 8765
    """
    from lutfuse_deploy.errors import RigError
    from lutfuse_deploy.io.files import check_outputs

    if refine and init_rig is None:
        raise RigError("--refine starts from a rough rig: give it with --init RIG")
    if init_rig is not None and not (refine or pick or points or check_rig):
        raise RigError("--init is the start of --refine (or of --pick): add --refine")
    modes = [name for name, given in (("--points", points), ("--check", check_rig), ("--pick", pick or None),
                                      ("--refine", refine or None)) if given is not None]
    if len(modes) != 1:
        raise RigError("give exactly one of --points, --check, --pick or --refine"
                       + (f" (got {' and '.join(modes)})" if modes else ""))
    if not pick:
        _refuse("--port", port, None, "without --pick")
        _refuse("--open", open_browser, False, "without --pick")
    if not (pick or refine):
        _refuse("--init", init_rig, None, "with " + modes[0] + " (it is the start of --refine or --pick)")
    if not refine:
        _refuse("--frames", max_frames, None, "without --refine (only a refinement pools frames)")
    check_outputs(files=[out] + ([overlay] if overlay else []),
                  inputs=[ir_path, vi_path] + [p for p in (points, check_rig, init_rig) if p is not None])
    if pick:
        from lutfuse_deploy.cli.calibrate_pick import pick_rig

        pick_rig(ir_path, vi_path, out, init_rig, port, open_browser, output_region, overlay, as_json, ir16)
        return
    if refine:
        assert init_rig is not None
        _refine(ir_path, vi_path, init_rig, 8 if max_frames is None else max_frames, out, output_region, overlay,
                as_json, ir16)
        return
    if check_rig is not None:
        _check(ir_path, vi_path, check_rig, out, overlay, output_region, as_json, ir16)
        return
    assert points is not None
    _from_points(ir_path, vi_path, points, out, output_region, overlay, as_json, ir16)


def _refuse(option: str, value: Any, default: Any, why: str) -> None:
    from lutfuse_deploy.errors import RigError

    if value != default:
        raise RigError(f"{option} does not apply {why}")


def _check(ir_path: Path, vi_path: Path, rig_path: Path, out: Path, overlay: Path | None, output_region: str,
           as_json: bool, ir16: str) -> None:
    from lutfuse_deploy.rig.file import load_rig
    from lutfuse_deploy.rig.overlay import write_overlay

    _refuse("--overlay", overlay, None, "with --check (-o is the overlay)")
    _refuse("--output", output_region, "visible", "with --check (the rig file says its output)")
    if out.suffix.lower() != ".png":
        from lutfuse_deploy.errors import RigError

        raise RigError(f"{out}: with --check, -o names the overlay picture (.png)")
    rig = load_rig(rig_path)
    ir, vi = _read_frames(ir_path, vi_path, ir16)
    _check_frames_match(rig, ir, vi, ir_path, vi_path)
    write_overlay(out, ir, vi, rig)
    if as_json:
        click.echo(json.dumps({"rig": str(rig_path), "overlay": str(out), "describe": rig.describe()}, indent=2))
    else:
        click.echo(f"{rig_path}: {rig.describe()}")
        click.echo(f"wrote {out}")


def _from_points(ir_path: Path, vi_path: Path, points: Path, out: Path, output_region: str, overlay: Path | None,
                 as_json: bool, ir16: str) -> None:
    from lutfuse_deploy.rig.file import save_rig
    from lutfuse_deploy.rig.overlay import write_overlay
    from lutfuse_deploy.rig.points import read_points

    ir, vi = _read_frames(ir_path, vi_path, ir16)
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


def _refine(ir_path: Path, vi_path: Path, init_rig: Path, max_frames: int, out: Path, output_region: str,
            overlay: Path | None, as_json: bool, ir16: str) -> None:
    from lutfuse_deploy.rig.file import load_rig, save_rig
    from lutfuse_deploy.rig.frames import read_frame_pairs
    from lutfuse_deploy.rig.overlay import write_overlay
    from lutfuse_deploy.rig.refine import refine_rig

    _refuse("--output", output_region, "visible", "with --refine (the --init rig says its output)")
    start = load_rig(init_rig)
    frames, names = read_frame_pairs(ir_path, vi_path, max_frames, ir16)
    for (ir, vi), name in zip(frames, names):
        _check_frames_match(start, ir, vi, Path(f"{ir_path} ({name})"), Path(f"{vi_path} ({name})"))
    result = refine_rig(start, frames, source={"ir": ir_path.name, "vi": vi_path.name, "init": init_rig.name,
                                               "pairs": names})
    save_rig(result.rig, out)
    if overlay is not None:
        write_overlay(overlay, frames[0][0], frames[0][1], result.rig)
    if as_json:
        click.echo(json.dumps({"rig": str(out), "pairs": len(frames), **result.summary(),
                               "describe": result.rig.describe()}, indent=2))
        return
    click.echo(f"refined on {len(frames)} pair(s): score {result.score_start:.4f} -> {result.score:.4f} "
               f"(edge alignment, 0..1), corners moved {result.corner_shift_px:.2f} px")
    click.echo(f"wrote {out}: {result.rig.describe()}" + (f"; overlay {overlay}" if overlay else ""))
