"""Atomic writes and hashes: an interrupted or failed write never leaves a partial output file."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def os_reason(exc: OSError) -> str:
    """The OS's words for an error ("No space left on device"), without Python's decorations."""
    return exc.strerror or str(exc) or type(exc).__name__


def disk_full(exc: BaseException) -> bool:
    """ENOSPC, also when a library (safetensors, torch.save) re-raised it as its own error type."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    text = str(exc)
    return "No space left on device" in text or "os error 28" in text


def _blocking_file(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` when it is a file (so nothing can be created below it)."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def ensure_dir(path: str | os.PathLike[str]) -> Path:
    """Create an output folder (and its parents); one ``OutputError`` naming it otherwise."""
    from lutfuse_deploy.errors import OutputError

    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: exists and is not a folder (cannot write outputs into it)")
    blocker = _blocking_file(folder)
    if blocker is not None:
        raise OutputError(f"{folder}: cannot create the folder, {blocker} is a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the folder ({os_reason(exc)})") from None
    return folder


def check_outputs(
    files: Iterable[str | os.PathLike[str]] = (),
    folders: Iterable[str | os.PathLike[str]] = (),
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> None:
    """Refuse before any work: an output that is an input, or one that cannot be written.

    An output is the same as an input when both exist and are one file or folder through any path,
    symlink or hard link (``os.path.samefile``). Folders that do not exist yet are checked for a
    file in the way and for write permission where they would be created.
    """
    from lutfuse_deploy.errors import OutputError

    ins = [Path(p) for p in inputs if Path(p).exists()]
    for out, is_dir in [(Path(d), True) for d in folders] + [(Path(f), False) for f in files]:
        if out.exists():
            for inp in ins:
                if os.path.samefile(out, inp):
                    raise OutputError(f"output {out} is the input {inp}: refusing to write over an input")
            if is_dir and not out.is_dir():
                raise OutputError(f"{out}: exists and is not a folder (cannot write outputs into it)")
            if not is_dir and out.is_dir():
                raise OutputError(f"{out}: is a folder, expected an output file name")
        blocker = _blocking_file(out)
        if blocker is not None:
            raise OutputError(f"{out}: cannot be written, {blocker} is a file, not a folder")
        home = next((p for p in ([out] if is_dir else []) + list(out.parents) if p.exists()), None)
        if home is not None and not os.access(home, os.W_OK | os.X_OK):
            raise OutputError(f"{out}: cannot be written, no write permission in {home}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary keeps the final suffix so libraries that dispatch on it (PIL, onnx) still work.
    An OS error (no permission, disk full, a folder in the way) becomes one ``OutputError`` naming
    ``path``, not the temporary, and nothing is left behind.
    """
    from lutfuse_deploy.errors import OutputError

    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{target}: is a folder, expected an output file name")
    ensure_dir(target.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write ({os_reason(exc)})") from None
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp_path
        # After the block: some writers (safetensors) recreate the file with mode 0600.
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
        os.replace(tmp_path, target)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write ({os_reason(exc)})") from None
    except Exception as exc:
        if disk_full(exc):  # safetensors and torch.save wrap ENOSPC in their own error types
            raise OutputError(f"{target}: cannot write (No space left on device)") from None
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """A temporary folder beside ``final`` that replaces it whole, in one rename, only if the block
    succeeds (an older ``final`` is moved aside first and removed after)."""
    import shutil

    from lutfuse_deploy.errors import OutputError

    if final.exists() and not final.is_dir():
        raise OutputError(f"{final}: exists and is not a folder (cannot write outputs into it)")
    ensure_dir(final.parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    except OSError as exc:
        raise OutputError(f"{final}: cannot write ({os_reason(exc)})") from None
    try:
        yield tmp
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except OutputError as exc:  # written inside the staging folder: name the folder the user asked for
        raise OutputError(str(exc).replace(str(tmp), str(final))) from None
    except OSError as exc:
        where = str(exc.filename2 or exc.filename or final).replace(str(tmp), str(final))
        raise OutputError(f"{where}: cannot write ({os_reason(exc)})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


def read_yaml(path: str | os.PathLike[str], error: type[Exception], what: str) -> Any:
    """A YAML file's content; one ``error`` naming the file (missing, unreadable, or the line where the
    YAML breaks) otherwise. ``what`` names the file for people ("recipe", "rig file")."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{p}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = os_reason(exc) if isinstance(exc, OSError) else str(exc)
        raise error(f"{p}: cannot read the {what} ({reason})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise error(f"{p}: not valid YAML{at}") from None


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
