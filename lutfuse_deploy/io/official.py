"""Convert the papers' released files into the project's checkpoint format.

Official weights load strictly (module names match), so a conversion is: read, validate, build the
model, record provenance (source repo, commit, sha256 of each input file), save.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lutfuse_deploy.errors import CheckpointError
from lutfuse_deploy.io.checkpoints import SUFFIX, save_checkpoint
from lutfuse_deploy.io.files import check_outputs, sha256_file

LUTFUSE_SOURCE = "github.com/zyb5/LUT-Fuse (ICCV 2025), MIT licence"
MMDRFUSE_SOURCE = "github.com/yanglinDeng/MMDRFuse (ACM MM 2024)"


def _holds(path: Path) -> str:
    """What a file holds, from its first bytes, so swapped arguments are named as such."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy array"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (a PyTorch .pth/.model checkpoint or a .npz)"
    if head[:1] == b"\x80":
        return "a Python pickle (an older PyTorch checkpoint)"
    return "neither a .npy array nor a PyTorch checkpoint"


def _torch_state(path: Path, option: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if _holds(path) == "a NumPy .npy array":
        raise CheckpointError(f"{path}: holds a NumPy .npy array, but {option} takes a PyTorch checkpoint "
                              "(swapped arguments?)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a PyTorch state_dict ({str(exc).splitlines()[0][:160]})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state_dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: not an official {what} ({str(exc).splitlines()[0][:200]})") from None


def _output_paths(out: Path, names: list[str]) -> list[Path]:
    """``OUT.safetensors`` is a file (extra models get ``.NAME`` inserted); anything else a folder."""
    if out.suffix == SUFFIX:
        return [out] + [out.with_name(f"{out.stem}.{n}{SUFFIX}") for n in names[1:]]
    return [out / f"{n}{SUFFIX}" for n in names]


def import_lutfuse(lut_path: str | Path, context_path: str | Path, out: str | Path) -> list[Path]:
    from lutfuse_deploy.models.lut import lutfuse_from_official

    lut_path, context_path = Path(lut_path), Path(context_path)
    if not lut_path.is_file():
        raise CheckpointError(f"{lut_path}: no such file")
    holds = _holds(lut_path)
    if holds != "a NumPy .npy array":
        raise CheckpointError(f"{lut_path}: holds {holds}, but --lut takes the .npy table (swapped arguments?)")
    try:
        lut = np.load(lut_path, allow_pickle=False)
    except Exception as exc:
        raise CheckpointError(f"{lut_path}: not a .npy array ({str(exc).splitlines()[0][:160]})") from None
    if lut.shape not in ((16, 16, 16, 16, 1), (16, 16, 16, 16)) or not np.issubdtype(lut.dtype, np.floating):
        raise CheckpointError(f"{lut_path}: expected a float 16x16x16x16x1 table, got {lut.dtype} {lut.shape}")
    if not np.isfinite(lut).all():
        raise CheckpointError(f"{lut_path}: table holds NaN or infinite values")
    (path,) = _output_paths(Path(out), ["lutfuse"])
    check_outputs(files=[path], inputs=[lut_path, context_path])
    state = _torch_state(context_path, "--context")
    try:
        model = lutfuse_from_official(torch.from_numpy(lut.astype(np.float32)), state)
    except RuntimeError as exc:
        raise CheckpointError(f"{context_path}: not the official context network ({str(exc).splitlines()[0][:200]})") from None
    prov = _provenance(LUTFUSE_SOURCE, {"lut": lut_path, "context": context_path})
    return [save_checkpoint(model, path, provenance=prov)]


def import_mmdrfuse(student: str | Path, teacher: str | Path | None, out: str | Path) -> list[Path]:
    from lutfuse_deploy.models import MMDRStudent, MMDRTeacher

    jobs: list[tuple[str, Path, torch.nn.Module]] = [("mmdrfuse-student", Path(student), MMDRStudent())]
    if teacher is not None:
        jobs.append(("mmdrfuse-teacher", Path(teacher), MMDRTeacher()))
    paths = _output_paths(Path(out), [kind for kind, _, _ in jobs])
    check_outputs(files=paths, inputs=[path for _, path, _ in jobs])
    for (kind, path, model), option in zip(jobs, ("--student", "--teacher")):
        _load_strict(model, _torch_state(path, option), path, kind)
    return [
        save_checkpoint(model, dest, provenance=_provenance(MMDRFUSE_SOURCE, {kind: path}))
        for (kind, path, model), dest in zip(jobs, paths)
    ]


def _provenance(source: str, files: dict[str, Path]) -> dict[str, Any]:
    return {
        "source": source,
        "imported_from": {k: {"file": p.name, "sha256": sha256_file(p)} for k, p in files.items()},
    }
