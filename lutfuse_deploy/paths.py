"""Where shared data lives: one setting (env LUTFUSE_DATA), never copied into the project."""

from __future__ import annotations

import os
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
