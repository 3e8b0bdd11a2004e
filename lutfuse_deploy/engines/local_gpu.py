"""The local GPU and ``--target auto``: which target this machine is.

Kept apart from ``targets`` (pure data) because it asks the machine (nvidia-smi, torch.cuda) and the
installed TensorRT; the dependency runs one way: local_gpu -> targets, tensorrt.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lutfuse_deploy.engines.targets import Target, list_targets, load_target, targets_dir
from lutfuse_deploy.engines.tensorrt import major_of, tensorrt_version
from lutfuse_deploy.errors import EngineError


@dataclass(frozen=True)
class LocalGpu:
    name: str
    compute_capability: str
    source: str  # "nvidia-smi" or "torch"
    model: str = ""  # Jetson device-tree model, where there is one


def _jetson_model() -> str:
    try:
        return Path("/proc/device-tree/model").read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return ""


def _from_nvidia_smi() -> LocalGpu | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        proc = subprocess.run(
            [exe, "--query-gpu=name,compute_cap", "--format=csv,noheader", "-i", "0"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    line = proc.stdout.strip().splitlines()[0] if proc.returncode == 0 and proc.stdout.strip() else ""
    name, _, cc = line.rpartition(",")
    if not re.fullmatch(r"\s*\d+\.\d+\s*", cc):
        return None
    return LocalGpu(name.strip(), cc.strip(), "nvidia-smi", _jetson_model())


def _from_torch() -> LocalGpu | None:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(0)
    return LocalGpu(torch.cuda.get_device_name(0), f"{major}.{minor}", "torch", _jetson_model())


def detect_gpu() -> LocalGpu | None:
    """GPU 0 of this machine via nvidia-smi, else torch.cuda (Jetson has no nvidia-smi); None if none."""
    return _from_nvidia_smi() or _from_torch()


def match_target(gpu: LocalGpu, targets: list[Target], tensorrt_major: int | None = None) -> Target:
    """The one target with the GPU's compute capability, narrowed by name and then by the installed
    TensorRT major where several share it (AGX Orin on JetPack 6 / TensorRT 10 or JetPack 7 / 11)."""
    same_cc = [t for t in targets if t.compute_capability == gpu.compute_capability]
    if not same_cc:
        raise EngineError(
            f"no target has compute capability {gpu.compute_capability} ({gpu.name}): "
            f"add a YAML to {targets_dir()} (see `lutfuse-deploy targets`)"
        )
    if len(same_cc) == 1:
        return same_cc[0]
    label = f"{gpu.name} {gpu.model}".lower()
    named = [t for t in same_cc if any(s.lower() in label for s in t.gpu_names)]
    if len(named) == 1:
        return named[0]
    same_trt = [t for t in (named or same_cc) if t.tensorrt_major == tensorrt_major]
    if len(same_trt) == 1:
        return same_trt[0]
    names = ", ".join(t.name for t in (named or same_cc))
    raise EngineError(
        f"several targets have compute capability {gpu.compute_capability} ({names}) and the GPU "
        f"name {gpu.name!r} does not pick one: pass --target NAME"
    )


def auto_target() -> Target:
    gpu = detect_gpu()
    if gpu is None:
        raise EngineError(
            "--target auto needs a local NVIDIA GPU and found none (no nvidia-smi, torch.cuda unavailable): "
            "name a target instead, e.g. --target orin-nx (list: lutfuse-deploy targets)"
        )
    version = tensorrt_version()
    return match_target(gpu, list_targets(), major_of(version) if version else None)


def resolve_target(name: str) -> Target:
    """``--target`` as given: ``auto`` (this machine's GPU), a target name, or a target YAML."""
    return auto_target() if name == "auto" else load_target(name)
