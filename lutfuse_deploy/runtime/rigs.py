"""A rig given beside a graph or engine: the artifact must already carry it (the warp is inside)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lutfuse_deploy.errors import InputError
from lutfuse_deploy.runtime.base import Runner


def check_runner_rig(runner: Runner, rig_path: str | Path) -> None:
    """Refuse ``--rig`` for an artifact without a rig or with another one: warping outside a graph
    would give frames the graph was not verified on."""
    from lutfuse_deploy.rig.file import load_rig

    rig = load_rig(rig_path)
    if runner.rig is None:
        raise InputError(f"--rig: {runner.backend} runs the graph as exported and this one has no rig; "
                         f"export it with `lutfuse-deploy export --rig {rig_path}` (or use --backend torch)")
    same = (tuple(runner.rig.ir_size) == tuple(rig.ir_size) and tuple(runner.rig.vi_size) == tuple(rig.vi_size)
            and runner.rig.output == rig.output and np.allclose(runner.rig.homography, rig.homography, rtol=1e-9))
    if not same:
        raise InputError(f"--rig {rig_path} is not the rig the graph was exported with; drop --rig (the graph "
                         "carries its own) or re-export it with this rig")
