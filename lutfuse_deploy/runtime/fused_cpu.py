"""``--backend numba``: a checkpoint on the CPU with its per-pixel stages fused into single loops.

For live cameras on small CPUs. The exported graph stays the portable default; this runner trades
portability for the ~10 ms a frame that ONNX Runtime spends on elementwise passes (docs/performance.md,
"Live cameras"). LUT-Fuse: the context network runs in PyTorch (convolutions are what it is good at),
everything else (the rig warp, luma, Sobel, coordinates, the 4-D lookup, colour) in the numba loops of
``runtime.cpu_kernels``. The MMDRFuse student (113 parameters) runs entirely in them. The teacher is
refused: it is convolutions only, which ONNX Runtime and PyTorch already run well.

Judged like every backend: against float64 truth by the parity rule (tests/test_fused_cpu.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lutfuse_deploy.errors import InputError
from lutfuse_deploy.runtime.base import Runner

KINDS = ("lutfuse", "mmdrfuse-student")


class FusedCpuRunner(Runner):
    backend = "numba"

    def __init__(self, model: str | Path, threads: int | None = None, io: str = "float",
                 rig: str | Path | None = None, device: str = "cpu") -> None:
        super().__init__()
        import torch

        from lutfuse_deploy.io.checkpoints import load_model
        from lutfuse_deploy.runtime import cpu_kernels  # without numba: one line naming the extra

        if io not in ("float", "uint8"):
            raise InputError(f"io must be float or uint8, got {io!r}")
        if device != "cpu":
            raise InputError(f"--device {device}: the numba backend runs on the CPU only")
        self.kernels: Any = cpu_kernels
        self.path = Path(model)
        self.threads = threads
        self.io = io
        self.model: Any
        self.model, self.metadata = load_model(model)
        self.kind = self.metadata["kind"]
        if self.kind not in KINDS:
            raise InputError(f"{model}: the numba backend runs LUT-Fuse and the MMDRFuse student, not a {self.kind} "
                             "(convolutions only: use --backend onnxruntime or torch)")
        if rig is not None:
            from lutfuse_deploy.rig.file import load_rig

            self.rig = load_rig(rig)
        self.model.eval()
        with torch.no_grad():
            if self.kind == "lutfuse":
                self.corners = self.model.corners().detach().contiguous().numpy()
            else:
                convs = (self.model.conv1[1], self.model.conv2[1])
                self.weights = [a.detach().contiguous().numpy() for c in convs for a in (c.weight, c.bias)]

    def activate_impl(self) -> None:
        import numba
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
            numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]

    def infer_impl(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        ir, vi = self._warped(ir.astype(np.float32, copy=False), vi.astype(np.float32, copy=False))
        if self.kind == "mmdrfuse-student":
            out = np.stack([self.kernels.mmdr_student(a[0], b[0], *self.weights) for a, b in zip(ir, vi)])
        else:
            config = self.model.config
            context = self._context(ir, vi)  # the batch at once, as the PyTorch path computes it
            out = np.stack([self.kernels.lutfuse_lookup(a[0], b, c[0], self.corners, config.nodes, config.coord_scale)
                            for a, b, c in zip(ir, vi, context)])
        if self.io == "uint8":
            from lutfuse_deploy.runtime.torch import to_uint8

            return to_uint8(out)
        return out

    def _warped(self, ir: np.ndarray, vi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw frames (N x 1 x H x W, N x C x H x W) -> the IR in the visible geometry and the visible
        cropped to the rig's output box; unchanged without a rig. Contiguous float32 either way."""
        if self.rig is None:
            return np.ascontiguousarray(ir), np.ascontiguousarray(vi)
        x0, y0, w, h = self.rig.output_box()
        inverse = np.asarray(self.rig.inverse, np.float64)
        warped = np.empty((ir.shape[0], 1, h, w), np.float32)
        for k in range(ir.shape[0]):
            self.kernels.warp_ir(np.ascontiguousarray(ir[k, 0]), inverse, x0, y0, warped[k, 0])
        return warped, np.ascontiguousarray(vi[:, :, y0:y0 + h, x0:x0 + w])

    def _context(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        """Context maps (N x 1 x H x W) by the model's own ``context_map``: the PyTorch path's float32
        roundings (the official context network is ill-conditioned: another batching rounds otherwise)."""
        import torch

        with torch.inference_mode():
            return self.model.context_map(torch.from_numpy(ir), torch.from_numpy(vi)).numpy()
