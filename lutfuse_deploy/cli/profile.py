"""``lutfuse-deploy profile``: time backends side by side, write reports, gate on budgets."""

from __future__ import annotations

import click

from lutfuse_deploy.cli import cli
from lutfuse_deploy.cli.options import ir16_option
from lutfuse_deploy.runtime.openvino import PRECISIONS as OPENVINO_PRECISIONS

DEFAULT_RESOLUTIONS = "640x480,800x600,1280x1024,1280x720,1920x1080"

EPILOG = """\b
Pairing of --model and --backend (both repeatable; --backend also takes a comma list):
  no --backend           each model on the backend its suffix implies
                         (.onnx -> onnxruntime, .engine/.plan/.trt -> tensorrt, else torch)
  one model, k backends  that model on each backend (each must run that file: an .onnx on
                         onnxruntime and openvino; a checkpoint on torch only)
  n models, one backend  every model on that backend
  n models, n backends   zipped in the order given (1st --model with 1st --backend, ...)

\b
All runners are timed interleaved (round-robin in rotating order, 10 rounds per resolution, fewer
when --iters is below 10) on the same frames, so their ratios hold on a noisy machine. Each round records the CPU time other
processes used meanwhile (from /proc): the table shows the mean busy CPUs and the contended rounds
(others kept more than 0.25 CPUs busy); --quiet-only reports and gates on the quiet rounds only. --iters N gives each runner exactly N timed
runs; --duration S gives each at least S seconds of measured time (default: --duration 1).
On --device cuda, runners that offer them also get 'device' (no host<->device copies) and
'cuda-graph' rows, timed with CUDA events.

\b
Budgets (--budget FILE.yaml, see recipes/budgets/): absolute p50_ms/p95_ms/p99_ms and ratio_to
(p50 of this backend / p50 of the reference, same run). Exit status 1 with a table when any
check is over or not measured, 0 when all hold. A budget may refer to the upstream LUT-Fuse code
(ratio_to: {backend: upstream}, with --upstream): where that code is not found its checks are
skipped with the reason, and the others still gate.

\b
Examples:
  lutfuse-deploy export --model lutfuse_deploy/pretrained/lutfuse.safetensors -o lut.onnx
  lutfuse-deploy profile --model lut.onnx --backend onnxruntime,openvino --resolutions 640x480 --threads 2
  lutfuse-deploy profile --model lutfuse_deploy/pretrained/lutfuse.safetensors --backend torch --model lut.onnx \\
      --backend onnxruntime --resolutions 640x480 --iters 50 --json prof.json --plot prof.png
  lutfuse-deploy profile --model lutfuse_deploy/pretrained/lutfuse.safetensors --model lut.onnx \\
      --resolutions 640x480 --threads 2 --budget recipes/budgets/example.yaml
  lutfuse-deploy export --model lutfuse_deploy/pretrained/lutfuse.safetensors -o lut-rig.onnx \
      --rig recipes/rigs/example-640x512-to-640x480.yaml
  lutfuse-deploy profile --model lut.onnx --model lut-rig.onnx --rig recipes/rigs/example-640x512-to-640x480.yaml \
      --threads 2 --iters 10
"""


@cli.command("profile", epilog=EPILOG)
@click.option(
    "--model",
    "models",
    multiple=True,
    required=True,
    type=click.Path(),
    help="Checkpoint (.safetensors or a folder holding one), .onnx or TensorRT engine; repeatable.",
)
@click.option(
    "--backend",
    "backends",
    multiple=True,
    metavar="torch|onnxruntime|openvino|tensorrt",
    help="Backend(s); repeatable or comma list. Paired with --model as below.",
)
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="Where runners execute; cuda never falls back to cpu.",
)
@click.option(
    "--resolutions",
    default=DEFAULT_RESOLUTIONS,
    show_default=True,
    metavar="WxH[,WxH...]",
    help="Sizes as WIDTHxHEIGHT (640x480 = 640 wide, 480 high).",
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Untimed runs per runner and size before timing.",
)
@click.option("--iters", type=click.IntRange(min=1), help="Timed runs per runner and size.")
@click.option(
    "--duration",
    type=float,
    metavar="SECONDS",
    help="Minimum measured time per runner and size [default: 1 when --iters is not given].",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="CPU threads per runner [default: the CPUs this process may use, less those other processes "
    "keep busy].",
)
@click.option(
    "--precision",
    type=click.Choice(list(OPENVINO_PRECISIONS)),
    default="fp32",
    show_default=True,
    help="OpenVINO runners' precision; bf16's error against fp32 is measured and printed at load.",
)
@click.option(
    "--quiet-only", is_flag=True, help="Statistics, ratios and budgets from uncontended rounds only."
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False),
    help="Folder with ir/ and vi/: its first pair, resized, is the input (default: synthetic).",
)
@click.option(
    "--video",
    nargs=2,
    type=click.Path(dir_okay=False),
    default=None,
    metavar="IR VI",
    help="Two videos (needs the video extra): their first frame pair, resized, is the input.",
)
@ir16_option
@click.option(
    "--reference", metavar="BACKEND", help="Backend of the 'x faster than' column [default: torch]."
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False), help="Write results + environment as JSON."
)
@click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False), help="Write a PNG plot (needs matplotlib)."
)
@click.option("--budget", "budget_path", type=click.Path(dir_okay=False), help="Budgets YAML to gate on.")
@click.option("--upstream", is_flag=True,
              help="Also time the upstream LUT-Fuse code itself (its released scripts/calculate.py and weights, "
              "CPU); skipped, with the reason, where they are not found.")
@click.option("--upstream-dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Folder holding lutfuse_official_code/ and lutfuse_official/ (implies --upstream) "
              "[default: $LUTFUSE_REFERENCE, else 'reference' beside $LUTFUSE_DATA].")
@click.option("--no-memory-check", is_flag=True,
              help="Run even when the estimated peak memory at the largest size exceeds the available memory.")
@click.option("--rig", "rig_path", type=click.Path(dir_okay=False), default=None, metavar="RIG.yaml",
              help="Time raw frames of a two-camera rig: torch and numba lanes run behind the rig's warp, rig graphs take "
                   "the cameras' sizes; --resolutions defaults to the rig's visible size (lanes without a rig "
                   "run there on frames of one size: the cost of the warp, side by side).")
@click.option("--live", "cameras", nargs=2, default=None, metavar="IR_URL VI_URL",
              help="Time one model fusing two live cameras (as `fuse` takes them) for --duration seconds "
                   "[default: 10]: fps, drops, capture->out latency and the time per stage; nothing is kept.")
def profile_command(
    models: tuple[str, ...],
    backends: tuple[str, ...],
    device: str,
    resolutions: str,
    warmup: int,
    iters: int | None,
    duration: float | None,
    threads: int | None,
    precision: str,
    quiet_only: bool,
    data_dir: str | None,
    video: tuple[str, str] | None,
    ir16: str,
    reference: str | None,
    json_path: str | None,
    plot_path: str | None,
    budget_path: str | None,
    upstream: bool,
    upstream_dir: str | None,
    no_memory_check: bool,
    rig_path: str | None,
    cameras: tuple[str, str] | None,
) -> None:
    """Measure latency of one or more models/backends side by side, on the same inputs."""
    import importlib.util

    if cameras is not None:
        from lutfuse_deploy.cli.profile_live import profile_live_command

        profile_live_command(click.get_current_context(), models, backends, cameras, device, duration, threads,
                             precision, json_path, rig_path)
        return

    from rich.console import Console

    from lutfuse_deploy.cli.tables import print_table
    from lutfuse_deploy.errors import BudgetExceeded, ConfigError, MissingDependency
    from lutfuse_deploy.io.files import check_outputs
    from lutfuse_deploy.profile import report
    from lutfuse_deploy.profile.gate import load_budgets
    from lutfuse_deploy.profile.session import pair_models, run_profile, split_backends
    from lutfuse_deploy.profile.timing import Settings, parse_resolutions

    check_outputs(files=[p for p in (json_path, plot_path) if p],
                  inputs=[*models, *([budget_path] if budget_path else [])])
    settings = Settings(warmup=warmup, iters=iters, duration=duration)
    source = click.get_current_context().get_parameter_source("resolutions")
    if rig_path is not None and source is click.core.ParameterSource.DEFAULT:
        from lutfuse_deploy.rig.file import load_rig

        resolutions = "{}x{}".format(*load_rig(rig_path).vi_size)
    sizes = parse_resolutions(resolutions)
    pairs = pair_models(list(models), split_backends(backends))
    budgets = load_budgets(budget_path) if budget_path else None  # fail on a bad file before timing
    upstream = upstream or upstream_dir is not None
    if upstream and device != "cpu":
        raise ConfigError(f"--upstream runs the upstream code on the CPU only, not on --device {device}")
    if upstream_dir is not None:
        from lutfuse_deploy.runtime.upstream import upstream_problem

        problem = upstream_problem(upstream_dir)
        if problem:  # a folder named by hand must hold it; only the default location may be absent
            raise ConfigError(f"--upstream-dir {upstream_dir}: {problem}")
    if reference is not None and reference not in {b for _, b in pairs} | ({"upstream"} if upstream else set()):
        raise ConfigError(f"--reference {reference}: not among the profiled backends")
    if plot_path and importlib.util.find_spec("matplotlib") is None:
        raise MissingDependency("matplotlib", "plot")

    with report.RoundProgress(Console(stderr=True)) as on_round:
        progress = on_round.message
        run = run_profile(
            pairs,
            sizes,
            settings,
            device=device,
            threads=threads,
            data_dir=data_dir,
            video=video,
            ir16=ir16,
            budgets=budgets,
            progress=progress,
            on_round=on_round,
            precision=precision,
            quiet_only=quiet_only,
            memory_check=not no_memory_check,
            rig=rig_path,
            upstream=upstream,
            upstream_dir=upstream_dir,
        )
    for note in run.notes:
        progress(note)
    ref = report.choose_reference(run.results, reference)
    console = Console()
    if not console.is_terminal:  # notes and lines, unwrapped in logs; tables at their own width
        console = Console(width=190)
    print_table(report.results_table(run.results, ref), console)
    for note in report.table_notes(run.results):
        console.print(note, markup=False)
    used = run.threads_note or run.threads or "backend default"
    console.print(f"inputs: {run.inputs}; threads: {used}; device: {device}")
    if json_path:
        doc = report.profile_document(
            run.results, run.environment, settings, inputs=run.inputs, reference=ref,
            checks=run.checks, budget_file=budget_path,
            run={"pairs": [{"model": m, "backend": b} for m, b in pairs], "device": device,
                 "threads": run.threads, "threads_auto": run.threads_note, "precision": precision,
                 "quiet_only": quiet_only, "resolutions": [str(r) for r in sizes], "rig": rig_path,
                 "upstream": {"asked": upstream, "skipped": run.upstream_skipped} if upstream else None},
        )  # fmt: skip
        report.write_json(json_path, doc)
        console.print(f"wrote {json_path}")
    if plot_path:
        report.write_plot(plot_path, run.results)
        console.print(f"wrote {plot_path}")
    if run.checks is not None:
        print_table(report.checks_table(run.checks), console)
        bad = [c for c in run.checks if c.failed]
        if bad:
            raise BudgetExceeded(f"{len(bad)} of {len(run.checks)} budget checks failed ({budget_path})")
        skipped = len(run.checks) - sum(c.held for c in run.checks)
        held = f"{len(run.checks) - skipped} measured" if skipped else f"{len(run.checks)}"
        also = f", {skipped} skipped (reason in their note)" if skipped else ""
        console.print(f"all {held} budget checks held{also} ({budget_path})")
