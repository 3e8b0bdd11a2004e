"""Every example in every command's ``--help`` runs as written.

The examples run in order (the group's typical flow first, then each command's), in one folder laid
out like a checkout beside ``../shared`` (as for the docs' commands: synthetic MSRS-size pairs, the
official checkpoints), so a help text cannot show a command that fails. An example is skipped only
for a reason printed with the test: it needs a GPU, a device over ssh, or trains for hours.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from conftest import REF
from test_docs_commands import _small_data, skip_reason

from lutfuse_deploy.cli import cli
from lutfuse_deploy.paths import REPO_ROOT


def help_examples(group: click.Group = cli, path: str = "lutfuse-deploy") -> list[tuple[str, str]]:
    """(command path, example) for every ``lutfuse-deploy ...`` line of every help text, continuation
    lines (a trailing backslash) joined, the group's first."""
    out = []
    for text in (group.help or "", group.epilog or ""):
        lines = iter(text.splitlines())
        for line in lines:
            line = line.strip()
            if not line.startswith("lutfuse-deploy "):
                continue
            while line.endswith("\\"):
                line = line[:-1].rstrip() + " " + next(lines).strip()
            out.append((path, line))
    if isinstance(group, click.Group):
        for name, cmd in sorted(group.commands.items()):
            out += help_examples(cmd, f"{path} {name}")  # type: ignore[arg-type]
    return out


def example_skip_reason(example: str) -> str | None:
    if "--target auto" in example:
        return "--target auto needs a local NVIDIA GPU"
    if "--remote" in example:
        return "needs a device reachable over ssh"
    if example.startswith("lutfuse-deploy check-int8") and "--int8" not in example:
        return "checks the engine build.sh built: needs the device's GPU and TensorRT"
    if "--pick" in example:
        return "interactive: serves the picker page until a person presses Save (test_rig_picker_browser clicks it)"
    return skip_reason(example)


def test_examples_are_found() -> None:
    found = help_examples()
    commands = {path for path, _ in found}
    assert {"lutfuse-deploy", "lutfuse-deploy profile", "lutfuse-deploy export", "lutfuse-deploy compare"} <= commands
    assert all(not ex.endswith("\\") and "  \\" not in ex for _, ex in found)
    assert re.search(r"--resolutions 640x480$", dict(found)["lutfuse-deploy"])  # continuation joined


def _calibration_pairs(data: Path) -> None:
    """Small synthetic images where calibration/msrs.txt lists its pairs (``--calib msrs`` resizes them)."""
    from conftest import synthetic_pair
    from PIL import Image

    text = (REPO_ROOT / "calibration" / "msrs.txt").read_text(encoding="utf-8")
    lines = [ln.split("#", 1)[0].split() for ln in text.splitlines()]
    for i, (ir, vi) in enumerate(parts for parts in lines if parts):
        for name, image in zip((ir, vi), synthetic_pair(h=48, w=64, seed=100 + i)):
            (data / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(data / name)


@pytest.mark.skipif(not (REF / "lutfuse_official").is_dir(), reason=f"official checkpoints not found at {REF}")
def test_every_help_example_runs_as_written(tmp_path: Path) -> None:
    _small_data(tmp_path / "shared")
    _calibration_pairs(tmp_path / "shared" / "data")
    (tmp_path / "shared" / "reference").symlink_to(REF)
    work = tmp_path / "work"
    work.mkdir()
    for name in ("recipes", "calibration", "lutfuse_deploy"):
        (work / name).symlink_to(REPO_ROOT / name)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "LUTFUSE_DATA": str(tmp_path / "shared" / "data"), "LUTFUSE_REFERENCE": str(REF)}
    skipped, ran = [], set()
    for where, example in help_examples():
        reason = example_skip_reason(example)
        if reason:
            skipped.append(f"{where}: {example[:60]}...: {reason}")
            continue
        if example in ran:  # the same line in two help texts (an export before its use) runs once
            continue
        ran.add(example)
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", example], cwd=work, env=env, capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, f"{where} --help example failed:\n{example}\n--- stderr ---\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr, f"{where}:\n{proc.stderr[-3000:]}"
    print("skipped examples:\n  " + "\n  ".join(skipped))
    assert len(ran) > len(skipped)
