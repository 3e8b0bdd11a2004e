"""What a latency number depends on: CPU, threads, GPU and driver, library versions, git commit.

Versions come from package metadata, so recording them never imports torch or onnxruntime.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from lutfuse_deploy import __version__
from lutfuse_deploy.paths import REPO_ROOT

_LIBRARIES = ("torch", "onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt", "numpy", "onnx")
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def cpu_model() -> str:
    """CPU model name. /proc/cpuinfo is read directly: py-cpuinfo is not a dependency and is slow."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: The CPU features that decide which kernels ONNX Runtime, OpenVINO and PyTorch pick.
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_flags() -> list[str]:
    """The ``SIMD_FLAGS`` this CPU reports (read at run time: machines differ between runs)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in SIMD_FLAGS if f in have]
    except OSError:
        pass
    return []


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit(repo: Path = REPO_ROOT) -> dict[str, Any] | None:
    """HEAD of the checkout the package runs from, and whether the tree has local changes."""
    if shutil.which("git") is None or not (repo / ".git").exists():
        return None
    commit = _run(["git", "rev-parse", "HEAD"], cwd=repo)
    if commit is None:
        return None
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo)
    return {"commit": commit, "dirty": bool(status)}


def gpu_info(device: str) -> dict[str, Any] | None:
    """GPU name, capability and driver when CUDA is used (torch is imported only in that case)."""
    if not device.startswith("cuda"):
        return None
    info: dict[str, Any] = {}
    try:
        import torch

        if torch.cuda.is_available():
            dev = torch.device(device)
            props = torch.cuda.get_device_properties(dev)
            info.update(
                name=props.name,
                capability=f"{props.major}.{props.minor}",
                memory_mb=round(props.total_memory / 2**20),
                cuda_runtime=torch.version.cuda,
            )
    except Exception as exc:  # noqa: BLE001 - environment capture must not fail a finished run
        info["error"] = str(exc)
    if shutil.which("nvidia-smi"):
        line = _run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"])
        if line:
            info["driver"] = line.splitlines()[0].split(",")[-1].strip()
    return info


def collect_environment(threads: int | None, device: str) -> dict[str, Any]:
    """One JSON-ready record of the machine and software a profile ran on."""
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = None
    threads_info: dict[str, Any] = {
        "requested": threads,
        "cpu_count": os.cpu_count(),
        "affinity": affinity,
        **{v.lower(): os.environ.get(v) for v in _THREAD_VARS},
    }
    if "torch" in sys.modules:  # report torch's pool only if a runner already loaded it
        threads_info["torch_num_threads"] = sys.modules["torch"].get_num_threads()
    return {
        "lutfuse_deploy": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "threads": threads_info,
        "device": device,
        "gpu": gpu_info(device),
        "libraries": library_versions(),
        "git": git_commit(),
    }
