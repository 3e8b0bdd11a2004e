"""``profile --live IR VI``: one model fusing two live cameras for a while, its time per stage.

Kept apart from ``cli/profile.py``, whose options time models on still frames; the live numbers
are the same as a live ``fuse --json`` run gives, without keeping its recording.
"""

from __future__ import annotations

import click

#: profile's options that time still frames: refused with --live
STILL_OPTIONS = ("resolutions", "warmup", "iters", "quiet_only", "data_dir", "video", "reference", "plot_path",
                 "budget_path")


def profile_live_command(ctx: click.Context, models: tuple[str, ...], backends: tuple[str, ...],
                         cameras: tuple[str, str], device: str, duration: float | None, threads: int | None,
                         precision: str, json_path: str | None, rig_path: str | None) -> None:
    from pathlib import Path

    from click.core import ParameterSource

    from lutfuse_deploy.cli.fuse import make_runner
    from lutfuse_deploy.errors import InputError
    from lutfuse_deploy.fuse.live_run import profile_live
    from lutfuse_deploy.io.files import check_outputs, write_json_atomic
    from lutfuse_deploy.io.video import import_av
    from lutfuse_deploy.profile.session import pair_models, split_backends

    given = [f"--{name.removesuffix('_path').removesuffix('_dir').replace('_', '-')}" for name in STILL_OPTIONS
             if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT]
    if given:
        raise InputError(f"{', '.join(given)}: for still-frame profiles, not --live")
    pairs = pair_models(list(models), split_backends(backends))
    if len(pairs) != 1:
        raise InputError(f"--live times one model on one backend; these are {len(pairs)} pairs")
    model, backend = pairs[0]
    check_outputs(files=[json_path] if json_path else [], inputs=[model])
    import_av()
    runner = make_runner(Path(model), backend, device, threads, precision, chatty=True,
                         rig=Path(rig_path) if rig_path else None)
    seconds = duration or 10.0
    click.echo(f"fusing {cameras[0]} and {cameras[1]} for {seconds:g} s ...", err=True)
    summary = profile_live(runner, cameras[0], cameras[1], seconds)
    click.echo(summary.line().rsplit(" -> ", 1)[0])
    rows = [("warp+fuse", summary.model), ("convert+encode", summary.encode), ("capture->out", summary.latency)]
    click.echo(f"{'stage':<16}{'mean ms':>10}{'p50 ms':>10}{'p95 ms':>10}")
    for name, t in rows:
        click.echo(f"{name:<16}{t.mean:>10.2f}{t.percentile(50):>10.2f}{t.percentile(95):>10.2f}")
    if json_path:
        doc = {"model": model, "backend": backend, "cameras": list(cameras), **summary.to_dict()}
        doc.pop("out")
        write_json_atomic(json_path, doc)
        click.echo(f"wrote {json_path}")
