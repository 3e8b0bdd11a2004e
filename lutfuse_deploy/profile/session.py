"""One profile run: pair models with backends, create the runners, check budgets can be measured,
measure everything interleaved, and evaluate the budgets. The CLI calls ``run_profile`` only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lutfuse_deploy.errors import ConfigError, InputError
from lutfuse_deploy.profile.gate import Budget, Check, evaluate, unplannable
from lutfuse_deploy.profile.lanes import UPSTREAM, upstream_runner
from lutfuse_deploy.profile.timing import Measurement, Resolution, Settings, profile_runners
from lutfuse_deploy.runtime import SUFFIX_BACKENDS


def split_backends(values: Sequence[str]) -> list[str]:
    """Flatten repeated and comma-separated --backend values, validating each name."""
    from lutfuse_deploy.runtime import BACKENDS

    out = [b.strip() for v in values for b in v.split(",") if b.strip()]
    for b in out:
        if b not in BACKENDS:
            raise InputError(f"--backend {b!r}: choose one of {', '.join(BACKENDS)}")
    return out


def backend_for(model: str | Path) -> str:
    return SUFFIX_BACKENDS.get(Path(model).suffix.lower(), "torch")


def pair_models(models: Sequence[str], backends: Sequence[str]) -> list[tuple[str, str]]:
    """(model, backend) pairs. No backends: each model on its suffix's backend; one model: it on
    every backend; one backend: every model on it; as many of each: zipped in order. (Documented for
    users in ``lutfuse-deploy profile --help``.)"""
    if not models:
        raise InputError("give at least one --model")
    if not backends:
        pairs = [(m, backend_for(m)) for m in models]
    elif len(models) == 1:
        pairs = [(models[0], b) for b in backends]
    elif len(backends) == 1:
        pairs = [(m, backends[0]) for m in models]
    elif len(models) == len(backends):
        pairs = list(zip(models, backends, strict=True))
    else:
        raise InputError(
            f"{len(models)} --model and {len(backends)} --backend values: give one model with several "
            "backends, several models with one backend, or as many of each (paired in order)"
        )
    seen: set[tuple[str, str]] = set()
    for m, b in pairs:
        if (m, b) in seen:
            raise InputError(f"{m} on {b} is given twice")
        seen.add((m, b))
    return pairs


def check_rig_resolutions(rig: Any, resolutions: Sequence[Resolution], model: str) -> None:
    """A lane with a rig runs at the rig's visible size only (its IR input is the thermal camera's)."""
    w, h = rig.vi_size
    other = [str(r) for r in resolutions if (r.width, r.height) != (w, h)]
    if other:
        raise InputError(f"{model} carries a rig: it runs at its visible size {w}x{h} only, not "
                         f"{', '.join(other)} (drop --resolutions, or give {w}x{h})")


@dataclass
class ProfileRun:
    results: list[Measurement]
    environment: dict[str, Any]
    inputs: str
    checks: list[Check] | None = None
    pairs: list[tuple[str, str]] = field(default_factory=list)
    threads: int | None = None
    #: how ``threads`` was chosen, when it was chosen for the user (``runtime.cpus.default_threads``)
    threads_note: str | None = None
    #: lines the runners want shown (OpenVINO's precision and its measured error, the upstream lane)
    notes: list[str] = field(default_factory=list)
    #: why the upstream lane asked for did not run (None: it ran, or was not asked for)
    upstream_skipped: str | None = None


def run_profile(
    pairs: Sequence[tuple[str, str]],
    resolutions: Sequence[Resolution],
    settings: Settings,
    *,
    device: str = "cpu",
    threads: int | None = None,
    data_dir: str | Path | None = None,
    video: tuple[str, str] | None = None,
    ir16: str = "refuse",
    budgets: Sequence[Budget] | None = None,
    progress: Callable[[str], None] | None = None,
    on_round: Callable[[Resolution, int, int], None] | None = None,
    precision: str = "fp32",
    quiet_only: bool = False,
    memory_check: bool = True,
    rig: str | Path | None = None,
    upstream: bool = False,
    upstream_dir: str | None = None,
) -> ProfileRun:
    """Create one runner per pair, measure all of them interleaved, evaluate ``budgets`` if given.

    ``threads=None`` on the CPU picks ``runtime.cpus.default_threads`` (recorded in the run);
    ``precision`` applies to OpenVINO runners; ``quiet_only`` keeps each result's quiet rounds only,
    for the report and the budgets alike. ``rig`` puts torch lanes behind the rig's warp; every lane
    that carries a rig (those, and graphs exported with ``--rig``) runs at its rig's sizes only.
    ``upstream`` adds the lane of the upstream LUT-Fuse code
    (``runtime.upstream``, from ``upstream_dir`` or the default reference folder); where it cannot
    run the reason is a note and budgets referring to it are skipped with that reason.
    """
    from lutfuse_deploy import runtime
    from lutfuse_deploy.profile.environment import collect_environment
    from lutfuse_deploy.profile.inputs import InputSource

    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise InputError(f"--device {device!r}: choose cpu or cuda")
    if device.startswith("cuda"):
        from lutfuse_deploy.profile.cuda import require_cuda

        require_cuda()
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")
    if precision != "fp32" and all(b != "openvino" for _, b in pairs):
        raise InputError(f"--precision {precision} is for --backend openvino, which this run does not use")
    for model, _ in pairs:
        if not Path(model).exists():
            raise InputError(f"--model {model}: no such file")
    source = InputSource(data_dir, video=video, ir16=ir16)  # before loading models: bad --data/--video fails fast
    threads_note = None
    if threads is None and device == "cpu":
        from lutfuse_deploy.runtime.cpus import default_threads

        choice = default_threads()
        threads, threads_note = choice.threads, choice.describe()
    notes: list[str] = []
    with contextlib.ExitStack() as stack:
        runners = []
        for model, backend in pairs:
            if progress:
                progress(f"loading {model} on {backend} ({device})")
            options: dict[str, object] = {"threads": threads, "device": device}
            if backend == "openvino":
                options["precision"] = precision
            if backend in ("torch", "numba") and rig is not None:
                options["rig"] = rig
            runner = stack.enter_context(runtime.create_runner(model, backend, **options))
            if runner.rig is not None:
                check_rig_resolutions(runner.rig, resolutions, model)
            if memory_check and resolutions:  # the largest size, before any is timed
                from lutfuse_deploy.runtime.memory import check_memory, memory_device

                big = max(resolutions, key=lambda r: r.width * r.height)
                check_memory(runner.kind, backend, memory_device(backend, device), (big.width, big.height))
            describe = getattr(runner, "describe_precision", None)
            if callable(describe):
                notes.append(describe())
            runners.append(runner)
        artifacts = [str(m) for m, _ in pairs]
        skipped: dict[str, str] = {}
        if upstream:
            lane_runner, note = upstream_runner(upstream_dir, threads, device)
            notes.append(note)
            if lane_runner is None:
                skipped[UPSTREAM] = note
            else:
                runners.append(stack.enter_context(lane_runner))
                artifacts.append(str(getattr(lane_runner, "path", UPSTREAM)))
        if budgets:
            planned = {(r.kind, r.backend, res) for r in runners for res in resolutions}
            gaps = unplannable(budgets, planned, skipped)
            if gaps:
                raise ConfigError(
                    f"{gaps[0]}, which this run does not measure (check --model/--backend/--resolutions)"
                )
        results = profile_runners(
            runners, resolutions, settings, source, artifacts=artifacts, progress=progress,
            on_round=on_round,
        )
        environment = collect_environment(threads, device)
        environment["threads"]["auto"] = threads_note
    if quiet_only:
        results = [m.quiet_view() for m in results]
    checks = evaluate(budgets, results, skipped) if budgets else None
    return ProfileRun(results, environment, source.description, checks, list(pairs), threads, threads_note, notes,
                      skipped.get(UPSTREAM))
