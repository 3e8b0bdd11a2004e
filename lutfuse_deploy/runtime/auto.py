"""``--backend auto``: the exported default graph in ONNX Runtime, exported on first use and cached.

PyTorch eager is the parity reference, not the fast path: the default export runs in ONNX Runtime at
about twice its speed on a CPU (docs/performance.md). So a checkpoint given to ``fuse`` is exported
once with the default options (``export.onnx.torch_to_onnx``, which verifies the graph against
float64 truth under ``export.parity.PARITY_RULE`` and writes nothing when it fails) into the user's
cache folder, under a key made of the checkpoint's sha256, the export options and this package's
version; later runs load the cached graph. The cache folder is ``$XDG_CACHE_HOME/lutfuse-deploy``,
else ``~/.cache/lutfuse-deploy``; deleting it only costs one export.

PyTorch runs instead only where ONNX Runtime cannot: the ``onnx`` extra is not installed, or
``--device cuda`` was asked for (the CPU graph is what is cached). Each case is said in one line.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from lutfuse_deploy.errors import InputError, OutputError
from lutfuse_deploy.runtime.base import Runner

#: the modules the export and its parity check need (the ``onnx`` extra)
ONNX_EXTRA = ("onnxruntime", "onnx", "onnxslim", "polygraphy")

Say = Callable[[str], None]


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/lutfuse-deploy``, else ``~/.cache/lutfuse-deploy``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path("~") / ".cache")
    return Path(base).expanduser() / "lutfuse-deploy"


def export_options() -> dict[str, object]:
    """The default export, as ``lutfuse-deploy export --model M -o M.onnx`` makes it."""
    from lutfuse_deploy.export.lowering import DEFAULT_LOWERING
    from lutfuse_deploy.export.onnx import DEFAULT_OPSET

    return {"opset": DEFAULT_OPSET, "lowering": DEFAULT_LOWERING, "io": "float", "dynamic": True, "simplify": True}


def cache_key(checkpoint: Path, options: dict[str, object]) -> str:
    """Checkpoint sha256 + export options + package version, hashed to a file name."""
    from lutfuse_deploy import __version__
    from lutfuse_deploy.io.files import sha256_file

    doc = {"checkpoint_sha256": sha256_file(checkpoint), "export": options, "lutfuse_deploy": __version__}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


def missing_onnx_module() -> str | None:
    """The first module of the ``onnx`` extra that is not installed, or None."""
    return next((m for m in ONNX_EXTRA if importlib.util.find_spec(m) is None), None)


def rig_options(rig: str | Path | None) -> dict[str, object]:
    """What a rig adds to the export options (and so to the cache key): its content, not its path."""
    if rig is None:
        return {}
    from lutfuse_deploy.rig.file import load_rig

    data = load_rig(rig).to_dict()
    data.pop("made", None)  # how the rig was made does not change the graph
    return {"dynamic": False, "rig": data}


def cached_graph(checkpoint: str | Path, say: Say, threads: int = 2,
                 rig: str | Path | None = None) -> tuple[Path, bool]:
    """The verified default graph of ``checkpoint`` in the cache (behind ``rig``'s warp when given),
    exported first when it is not there.

    When the cache folder cannot be written the graph is exported to a temporary folder for this
    run only (said in one line; the flag is True): the caller removes it once loaded.
    """
    from lutfuse_deploy.export.onnx import torch_to_onnx
    from lutfuse_deploy.io.checkpoints import resolve_checkpoint

    source = resolve_checkpoint(checkpoint)
    options = {**export_options(), **rig_options(rig)}
    path = cache_root() / "onnx" / f"{cache_key(source, options)}.onnx"
    export = {k: v for k, v in options.items() if k != "rig"}
    if rig is not None:
        export["rig"] = rig
    if path.is_file() and path.with_suffix(".json").is_file():
        return path, False
    say(f"auto: exporting {source.name} to ONNX once (verified against float64 truth), cached in {path.parent}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return torch_to_onnx(source, path, threads=threads, **export), False  # type: ignore[arg-type]
    except (OSError, OutputError) as exc:
        say(f"auto: cannot write the cache ({exc}); exporting for this run only")
    tmp = Path(tempfile.mkdtemp(prefix="lutfuse-auto-"))
    try:
        return torch_to_onnx(source, tmp / "graph.onnx", threads=threads, **export), True  # type: ignore[arg-type]
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def auto_runner(model: str | Path, device: str = "cpu", threads: int | None = None,
                say: Say = lambda _: None, warn: Say = lambda _: None, rig: str | Path | None = None) -> Runner:
    """The runner ``--backend auto`` picks for ``model``; ``say`` gets progress, ``warn`` a fallback.
    With ``rig`` a checkpoint's cached graph is its rig graph (a graph given as such must carry it)."""
    from lutfuse_deploy.runtime import SUFFIX_BACKENDS, create_runner

    suffix_backend = SUFFIX_BACKENDS.get(Path(model).suffix.lower())  # .onnx and engines need no export
    if suffix_backend:
        return create_runner(model, suffix_backend, threads=threads)
    if not Path(model).exists():
        raise InputError(f"--model {model}: no such file or folder")
    if device != "cpu":
        warn(f"auto: --device {device} runs PyTorch (the cached ONNX graph is for the CPU)")
        return create_runner(model, "torch", threads=threads, device=device, rig=rig)
    missing = missing_onnx_module()
    if missing:
        warn(f"auto: {missing} is not installed, so PyTorch runs instead of ONNX Runtime "
             "(pip install 'lutfuse-deploy[onnx]' for the faster path)")
        return create_runner(model, "torch", threads=threads, rig=rig)
    graph, temporary = cached_graph(model, say, rig=rig)
    try:
        return create_runner(graph, "onnxruntime", threads=threads)
    except InputError:  # a damaged cache entry: export it again, once
        if temporary:
            raise
        for stale in (graph, graph.with_suffix(".json")):
            stale.unlink(missing_ok=True)
        graph, temporary = cached_graph(model, say, rig=rig)
        return create_runner(graph, "onnxruntime", threads=threads)
    finally:
        if temporary:  # the session has read the graph and its sidecar
            shutil.rmtree(graph.parent, ignore_errors=True)
