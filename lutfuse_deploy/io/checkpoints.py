"""One checkpoint format for every model: safetensors weights with JSON metadata in the header.

One self-contained file (no sidecar to lose): the safetensors header's ``__metadata__`` holds
``lutfuse_deploy`` = JSON {format, kind, config, provenance, weights_sha256}. ``load_model`` refuses
a missing, corrupt, wrong-kind or NaN-holding file with one clear line.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lutfuse_deploy import MODEL_KINDS, __version__
from lutfuse_deploy.errors import CheckpointError
from lutfuse_deploy.io.files import atomic_path
from lutfuse_deploy.paths import portable

FORMAT = "lutfuse-deploy/checkpoint-v1"
META_KEY = "lutfuse_deploy"
SUFFIX = ".safetensors"
# When a folder holds several checkpoints, --model FOLDER loads the deployable one first.
FOLDER_PREFERENCE = ("lutfuse", "mmdrfuse-student", "mmdrfuse-teacher")


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """Hash of names, dtypes, shapes and bytes in sorted order: independent of file layout."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save_checkpoint(
    model: nn.Module, path: str | Path, provenance: dict[str, Any] | None = None, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` to ``path`` (atomically); returns the path written."""
    from safetensors.torch import save_file

    from lutfuse_deploy.models import model_config

    kind = getattr(model, "kind", None)
    if kind not in MODEL_KINDS:
        raise CheckpointError(f"cannot save a model of unknown kind {kind!r}")
    state = _state(model)
    meta = {
        "format": FORMAT,
        "kind": kind,
        "config": model_config(model),
        "provenance": portable({"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                                "tool_version": __version__, **(provenance or {})}),
        "weights_sha256": weights_sha256(state),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        **(extra or {}),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={META_KEY: json.dumps(meta)})
    return path


def folder_checkpoints(folder: str | Path) -> list[Path]:
    """The checkpoints in a folder, the deployable one first (``FOLDER_PREFERENCE``); within a kind the
    shortest name first, so a variant (``lutfuse-fast``) comes after the model it varies (``lutfuse``)."""
    p = Path(folder)
    if not p.is_dir():
        raise CheckpointError(f"{p}: checkpoint folder not found")
    cands = sorted(p.glob(f"*{SUFFIX}"))
    if not cands:
        raise CheckpointError(f"{p}: folder holds no {SUFFIX} checkpoint")
    if len(cands) == 1:
        return cands
    kinds = {c: read_metadata(c).get("kind") for c in cands}
    rank = {kind: i for i, kind in enumerate(FOLDER_PREFERENCE)}
    return sorted(cands, key=lambda c: (rank.get(str(kinds[c]), len(rank)), len(c.stem), c.name))


def resolve_checkpoint(path: str | Path) -> Path:
    """A file, or a folder written by ``-o FOLDER`` (the deployable checkpoint in it)."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: checkpoint not found")
    if p.is_file():
        return p
    return folder_checkpoints(p)[0]


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a checkpoint, validated; raises CheckpointError on anything unexpected."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found")
    try:
        with safe_open(str(p), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except Exception as exc:  # safetensors raises its own SafetensorError and OSError variants
        raise CheckpointError(f"{p}: not a lutfuse-deploy checkpoint ({_first_line(exc)})") from None
    if raw is None:
        raise CheckpointError(f"{p}: safetensors file without lutfuse-deploy metadata (not our checkpoint)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise CheckpointError(f"{p}: corrupt checkpoint metadata (invalid JSON)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{p}: unsupported checkpoint format {meta.get('format') if isinstance(meta, dict) else meta!r}")
    if meta.get("kind") not in MODEL_KINDS:
        raise CheckpointError(f"{p}: unknown model kind {meta.get('kind')!r}; known: {', '.join(MODEL_KINDS)}")
    return meta


def load_model(path: str | Path, kind: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint (file or folder) into a fresh model in eval mode.

    ``kind`` (optional) is the kind the caller needs; a different one is refused.
    """
    from safetensors.torch import load_file

    from lutfuse_deploy.models import create_model

    p = resolve_checkpoint(path)
    meta = read_metadata(p)
    if kind is not None and meta["kind"] != kind:
        raise CheckpointError(f"{p}: holds a {meta['kind']} model, expected {kind}")
    try:
        state = load_file(str(p))
    except Exception as exc:
        raise CheckpointError(f"{p}: corrupt weights ({_first_line(exc)})") from None
    for name, t in state.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"{p}: tensor {name!r} holds NaN or infinite values")
    if weights_sha256(state) != meta.get("weights_sha256"):
        raise CheckpointError(f"{p}: weights do not match their recorded sha256 (corrupt or edited file)")
    try:
        model = create_model(meta["kind"], meta.get("config") or {})
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{p}: weights do not fit a {meta['kind']} model ({_first_line(exc)})") from None
    model.eval()
    return model, meta


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
