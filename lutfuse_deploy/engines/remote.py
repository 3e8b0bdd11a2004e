"""``--remote USER@HOST``: copy a bundle to the device, run its build.sh there, fetch the engine (and
its per-layer report) back.

Plain ``ssh``/``scp`` subprocesses (whatever the user's ssh config, keys and agent provide): no
Python SSH library to install or configure. Remote paths are relative to the remote home
(``lutfuse-bundles/<target>/<bundle>``). The fetched engine is checked against the manifest the
device wrote before it lands beside the bundle.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from lutfuse_deploy.engines.manifest import MANIFEST_NAME, check_engine_file, read_manifest
from lutfuse_deploy.errors import EngineError, InputError

REMOTE_ROOT = "lutfuse-bundles"
_REMOTE = re.compile(r"^(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9.-]+$|^(?:[A-Za-z0-9._-]+@)?\[[0-9A-Fa-f:.]+\]$")


def check_remote(remote: str) -> str:
    """``USER@HOST`` or ``HOST`` (or an ssh config alias); never something ssh would read as an option."""
    if not _REMOTE.match(remote) or remote.startswith("-"):
        raise InputError(f"bad --remote {remote!r}: expected USER@HOST or HOST")
    return remote


def _run(cmd: list[str], what: str, capture: bool = False) -> str:
    try:
        proc = subprocess.run(cmd, check=False, text=True, capture_output=capture)
    except FileNotFoundError:
        raise EngineError(f"{cmd[0]} not found: --remote needs OpenSSH's ssh and scp on PATH") from None
    if proc.returncode != 0:
        detail = (proc.stderr or "").strip().splitlines()[-1:] if capture else []
        raise EngineError(f"{what} failed (exit {proc.returncode})" + (f": {detail[0]}" if detail else ""))
    return proc.stdout or ""


def remote_build(folder: Path, remote: str, target: str) -> dict[str, Any]:
    """Copy ``folder`` to ``remote``, build there, fetch engine + manifest; returns the manifest."""
    check_remote(remote)
    parent = f"{REMOTE_ROOT}/{target}"
    rdir = f"{parent}/{folder.name}"
    _run(["ssh", remote, f"mkdir -p {shlex.quote(parent)}"], f"ssh {remote} (mkdir {parent})", capture=True)
    _run(
        ["scp", "-q", "-r", str(folder), f"{remote}:{parent}/"],
        f"copying the bundle to {remote}",
        capture=True,
    )
    _run(["ssh", remote, f"cd {shlex.quote(rdir)} && ./build.sh"], f"build.sh on {remote}")
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=folder) as tmp_name:
        tmp = Path(tmp_name)
        _run(
            ["scp", "-q", f"{remote}:{rdir}/{MANIFEST_NAME}", str(tmp / MANIFEST_NAME)],
            f"fetching the manifest from {remote}",
            capture=True,
        )
        manifest = read_manifest(tmp / MANIFEST_NAME)
        engine = manifest.get("engine_file")
        if manifest.get("status") != "built" or not engine:
            raise EngineError(f"build.sh on {remote} finished but its manifest says no engine was built")
        engine_name = Path(str(engine)).name
        _run(
            ["scp", "-q", f"{remote}:{rdir}/{engine_name}", str(tmp / engine_name)],
            f"fetching {engine_name} from {remote}",
            capture=True,
        )
        check_engine_file(manifest, tmp / engine_name)
        report = manifest.get("layer_report")
        if report:
            report_name = Path(str(report)).name
            _run(
                ["scp", "-q", f"{remote}:{rdir}/{report_name}", str(tmp / report_name)],
                f"fetching {report_name} from {remote}",
                capture=True,
            )
            (tmp / report_name).replace(folder / report_name)
        (tmp / engine_name).replace(folder / engine_name)
        (tmp / MANIFEST_NAME).replace(folder / MANIFEST_NAME)  # last: the manifest vouches for the engine
    return manifest
