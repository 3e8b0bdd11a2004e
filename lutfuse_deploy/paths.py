"""Where shared data lives: one setting (env LUTFUSE_DATA), never copied into the project."""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """The ``shared/data`` folder: ``$LUTFUSE_DATA`` or ``../shared/data`` beside the checkout."""
    env = os.environ.get("LUTFUSE_DATA")
    if env:
        return Path(env).expanduser().resolve()
    for base in (REPO_ROOT, Path.cwd()):
        cand = (base / ".." / "shared" / "data").resolve()
        if cand.is_dir():
            return cand
    return (Path.cwd() / ".." / "shared" / "data").resolve()


def reference_root() -> Path:
    """The official checkpoints and outputs: ``$LUTFUSE_REFERENCE`` or ``<data>/../reference``."""
    env = os.environ.get("LUTFUSE_REFERENCE")
    if env:
        return Path(env).expanduser().resolve()
    return (data_root().parent / "reference").resolve()


def pretrained_dir() -> Path:
    return Path(__file__).resolve().parent / "pretrained"


def portable(obj: object) -> object:
    """``obj`` (JSON-like) with this machine's data, reference and working folders written as
    ``$LUTFUSE_DATA``, ``$LUTFUSE_REFERENCE`` and ``.``: checkpoints travel, their provenance
    must not carry the build machine's layout."""
    if isinstance(obj, dict):
        return {k: portable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable(v) for v in obj]
    if not isinstance(obj, str) or os.sep not in obj:
        return obj
    for root, name in ((data_root(), "$LUTFUSE_DATA"), (reference_root(), "$LUTFUSE_REFERENCE"), (Path.cwd(), ".")):
        if root != Path(root.anchor):  # never rewrite every "/" when run from the file system root
            obj = re.sub(re.escape(str(root)) + r"(?=\W|$)", name, obj)
    return obj
