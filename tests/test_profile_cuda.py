"""CUDA lanes: the dispatch is tested everywhere with a stand-in; the real hooks need a GPU.

``CudaConvRunner`` below doubles as the reference for runner authors: ``device`` set to a CUDA
device, ``device_callable`` (inputs staged once, no copies in the timed call) and
``cuda_graph_callable`` (capture once, return ``graph.replay``).
"""

from __future__ import annotations

import numpy as np
import pytest
from profile_fakes import FakeClock, FakeRunner

from lutfuse_deploy.errors import InputError
from lutfuse_deploy.profile import cuda, report, timing
from lutfuse_deploy.profile.inputs import InputSource
from lutfuse_deploy.profile.lanes import HostTimer, Lane
from lutfuse_deploy.profile.timing import Resolution, Settings, profile_runners
from lutfuse_deploy.runtime.base import Runner


def test_cuda_runners_get_the_extra_lanes_their_hooks_offer(monkeypatch):
    clock = FakeClock()
    seen: list[tuple[str, tuple[int, ...]]] = []

    def fake_cuda_lanes(key, runner, ir, vi, e2e):
        seen.append((runner.name, ir.shape))
        return [Lane(key, runner, "device", lambda: clock.advance(500_000), HostTimer(clock))]

    monkeypatch.setattr(timing, "cuda_lanes", fake_cuda_lanes)
    gpu = FakeRunner("gpu", costs_ms=(2.0,), clock=clock, device="cuda:0")
    cpu = FakeRunner("cpu", backend="onnxruntime", costs_ms=(4.0,), clock=clock)
    results = profile_runners(
        [gpu, cpu],
        [Resolution(16, 12)],
        Settings(warmup=1, iters=4, duration=None),
        InputSource(),
        clock_ns=clock,
    )
    assert seen == [("gpu", (1, 1, 12, 16))]
    assert [(m.backend, m.mode, m.device) for m in results] == [
        ("torch", "e2e", "cuda:0"),
        ("torch", "device", "cuda:0"),
        ("onnxruntime", "e2e", "cpu"),
    ]
    assert [m.stats.p50_ms for m in results] == pytest.approx([2.0, 0.5, 4.0])
    assert [m.stats.n for m in results] == [4, 4, 4]
    text = report.results_table(results, "torch")
    assert text.row_count == 3


def test_cuda_is_required_not_silently_replaced(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="cuda"):
        cuda.require_cuda()


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


class CudaConvRunner(Runner):
    """A tiny torch model on the GPU implementing both optional profiler hooks."""

    backend = "torch"

    def __init__(self) -> None:
        import torch

        super().__init__()
        self.kind, self.device = "lutfuse", torch.device("cuda")
        self.conv = torch.nn.Conv2d(4, 3, 3, padding=1).to(self.device).eval()

    def _forward(self, ir, vi):
        import torch

        return self.conv(torch.cat([vi, ir], 1) / 255.0)

    def infer_impl(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = self._forward(torch.from_numpy(ir).to(self.device), torch.from_numpy(vi).to(self.device))
            return out.cpu().numpy()

    def device_callable(self, ir, vi):
        import torch

        d_ir, d_vi = torch.from_numpy(ir).to(self.device), torch.from_numpy(vi).to(self.device)

        def run():
            with torch.no_grad():
                return self._forward(d_ir, d_vi)

        return run

    def cuda_graph_callable(self, ir, vi):
        import torch

        s_ir, s_vi = torch.from_numpy(ir).to(self.device), torch.from_numpy(vi).to(self.device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(3):
                self._forward(s_ir, s_vi)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.no_grad():
            self.static_out = self._forward(s_ir, s_vi)
        return graph.replay


@pytest.mark.cuda
@pytest.mark.skipif(not _has_cuda(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_real_cuda_lanes_event_timing_and_memory():
    runner = CudaConvRunner()
    results = profile_runners(
        [runner], [Resolution(64, 48)], Settings(warmup=2, iters=5, duration=None), InputSource()
    )
    assert [m.mode for m in results] == ["e2e", "device", "cuda-graph"]
    for m in results:
        assert m.stats.n == 5 and m.stats.min_ms > 0
        assert m.gpu_peak_mb is not None and m.gpu_peak_mb > 0
