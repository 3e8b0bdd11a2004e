"""Atomic writes and hashes: an interrupted or failed write never leaves a partial output file."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary keeps the final suffix so libraries that dispatch on it (PIL, onnx) still work.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json_object(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON file that must hold an object (sidecars, manifests); one clear error otherwise."""
    from lutfuse_deploy.errors import InputError

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable sidecar JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: sidecar JSON must be an object")
    return data


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def open_npy_memmaps(
    folder: str | os.PathLike[str], shapes: dict[str, tuple[tuple[int, ...], Any]], create: bool, what: str
) -> dict[str, Any]:
    """``NAME.npy`` memmaps in ``folder``: made fresh (``create``) or reopened for ``--resume``.

    Reopening checks every file's shape and dtype, so a run resumed with another recipe fails with
    a one-line error naming the file instead of training on mismatched state.
    """
    from numpy.lib.format import open_memmap

    from lutfuse_deploy.errors import ConfigError

    folder = Path(folder)
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {}
    for name, (shape, dtype) in shapes.items():
        path = folder / f"{name}.npy"
        if create:
            arrays[name] = open_memmap(path, mode="w+", dtype=dtype, shape=shape)
            continue
        if not path.is_file():
            raise ConfigError(f"--resume: {what} {path} is missing")
        arr = open_memmap(path, mode="r+")
        if arr.shape != shape or arr.dtype != dtype:
            raise ConfigError(f"--resume: {what} {path} has shape {arr.shape}, expected {shape}")
        arrays[name] = arr
    return arrays
