"""Run a project checkpoint with PyTorch eager: the parity-checked reference path."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lutfuse_deploy.errors import InputError
from lutfuse_deploy.runtime.base import Runner


class TorchRunner(Runner):
    backend = "torch"

    def __init__(self, model: str | Path, device: str = "cpu", threads: int | None = None, io: str = "float",
                 rig: str | Path | None = None) -> None:
        super().__init__()
        import torch

        from lutfuse_deploy.io.checkpoints import load_model

        if io not in ("float", "uint8"):
            raise InputError(f"io must be float or uint8, got {io!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise InputError("--device cuda asked for, but torch sees no CUDA GPU")
        self.path = Path(model)
        self.device = torch.device(device)
        self.threads = threads
        self.io = io
        self.model, self.metadata = load_model(model)
        self.kind = self.metadata["kind"]
        if rig is not None:  # raw frames in: the IR warped by the same module export --rig traces
            from lutfuse_deploy.export.graph import RigGraph
            from lutfuse_deploy.rig.file import load_rig

            self.rig = load_rig(rig)
            self.model = RigGraph(self.model, self.rig).eval()
        self.model.to(self.device)

    def activate_impl(self) -> None:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)

    def infer_impl(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        import torch

        h, w = vi.shape[2:] if self.rig is None else self.rig.out_size[::-1]
        if self.kind == "mmdrfuse-teacher" and (h % 2 or w % 2):
            raise InputError(f"mmdrfuse-teacher needs even height and width, got {w}x{h}")
        with torch.inference_mode():
            t_ir = torch.from_numpy(np.ascontiguousarray(ir)).to(self.device, torch.float32)
            t_vi = torch.from_numpy(np.ascontiguousarray(vi)).to(self.device, torch.float32)
            out = self.model(t_ir, t_vi)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            result = out.cpu().numpy()
            return to_uint8(result) if self.io == "uint8" else result


def to_uint8(fused: np.ndarray) -> np.ndarray:
    """The uint8 io convention of every backend: the [0, 1] scale clamped, times 255, rounded."""
    return np.clip(np.rint(fused * 255.0), 0, 255).astype(np.uint8)
