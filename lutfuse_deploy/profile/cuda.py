"""CUDA lanes: CUDA-event timing, device-resident and CUDA-graph hooks, GPU peak memory.

A runner opts in with optional members (duck-typed; the Runner ABC does not require them):

* ``device``: ``"cuda"`` / ``"cuda:0"`` / a ``torch.device``; anything starting with ``cuda``
  turns these lanes on.
* ``cuda_stream``: the ``torch.cuda.Stream`` the runner enqueues on (wrap a foreign stream with
  ``torch.cuda.ExternalStream(ptr)``); absent or None means ``torch.cuda.current_stream()``.
* ``device_callable(ir, vi) -> Callable[[], object] | None``: copy the NumPy inputs to device
  buffers once and return a zero-argument function that runs the model from those buffers into a
  device output, enqueued on ``cuda_stream`` and *not* synchronised (lane ``device``: no copies).
* ``cuda_graph_callable(ir, vi) -> Callable[[], object] | None``: warm up, capture a CUDA graph on
  static buffers filled from ``ir``/``vi``, and return its replay (lane ``cuda-graph``). Return None
  where capture is impossible (dynamic shapes, unsupported ops); the lane is then simply absent.

The profiler times these lanes with CUDA events recorded on ``cuda_stream`` and synchronises after
each iteration, so a sample is one frame's latency, not pipelined throughput. GPU memory is the
torch caching allocator's peak (``torch.cuda.max_memory_allocated``) over the timed chunks, so
memory that ONNX Runtime or TensorRT allocate outside torch is not counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lutfuse_deploy.errors import InputError
from lutfuse_deploy.profile.lanes import Lane, runner_device
from lutfuse_deploy.runtime.base import Runner


def require_cuda() -> None:
    """Fail clearly (never fall back to CPU) when CUDA was asked for and is not there."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a core dependency
        raise InputError("--device cuda needs torch with CUDA support") from exc
    if not torch.cuda.is_available():
        raise InputError("--device cuda: torch.cuda.is_available() is False on this machine")


class CudaEventTimer:
    """Time a call by CUDA events on ``stream``; synchronises on the end event before returning."""

    def __init__(self, stream: Any) -> None:
        import torch

        self.stream = stream
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def __call__(self, fn: Callable[[], object]) -> float:
        self.start.record(self.stream)
        fn()
        self.end.record(self.stream)
        self.end.synchronize()
        return float(self.start.elapsed_time(self.end))


def _track_memory(lane: Lane, device: Any) -> None:
    """Reset the allocator peak before each timed chunk and keep the largest peak seen."""
    import torch

    def before() -> None:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)

    def after(ln: Lane) -> None:
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        ln.gpu_peak_mb = max(ln.gpu_peak_mb or 0.0, peak)

    lane.before_chunk, lane.after_chunk = before, after


def cuda_lanes(key: int, runner: Runner, ir: np.ndarray, vi: np.ndarray, e2e: Lane) -> list[Lane]:
    """The extra lanes a CUDA runner offers at this input size; also tracks memory on ``e2e``."""
    import torch

    device = torch.device(runner_device(runner))
    stream = getattr(runner, "cuda_stream", None) or torch.cuda.current_stream(device)
    _track_memory(e2e, device)
    lanes: list[Lane] = []
    for mode, hook in (("device", "device_callable"), ("cuda-graph", "cuda_graph_callable")):
        make = getattr(runner, hook, None)
        if not callable(make):
            continue
        fn = make(ir, vi)
        if fn is None:
            continue
        lane = Lane(key, runner, mode, fn, CudaEventTimer(stream))
        _track_memory(lane, device)
        lanes.append(lane)
    return lanes
