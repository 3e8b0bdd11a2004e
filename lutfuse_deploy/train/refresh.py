"""MMDRFuse's dynamic refresh: per-patch history banks of the student's best past outputs.

For every patch of the fixed pool the bank keeps two past outputs: the one with the best SSIM to
the sources (higher is better) and the one with the best GMSD (lower is better), with their
scores. When the current output is worse than the stored one, a memory term pulls it back
(weighted by the gap); when it is better, it replaces the stored one.

Bounded memory: the official code keeps float64 arrays in RAM (2 GB for its patch set). Here the
banks are ``.npy`` memmaps in the run folder, uint8 (or float16) in canonical (unflipped)
orientation: 2 x patches x crop² bytes for uint8 (2048 patches of 128² = 64 MiB), paged in by the
OS as patches are visited; they survive a kill, so ``--resume`` continues with them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lutfuse_deploy.io.files import open_npy_memmaps
from lutfuse_deploy.train.losses import gmsd, sobel_magnitude, ssim

BANKS = ("ssim", "gmsd")


def _orient(x: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Apply (or undo: flips are involutions) each sample's vertical/horizontal flip."""
    rows = []
    for img, (fv, fh) in zip(x, flips.tolist()):
        dims = [d for d, f in ((-2, fv), (-1, fh)) if f]
        rows.append(torch.flip(img, dims) if dims else img)
    return torch.stack(rows)


class RefreshBank:
    def __init__(self, folder: Path, patches: int, crop: int, dtype: str, create: bool) -> None:
        self.folder = Path(folder)
        self.dtype = np.uint8 if dtype == "uint8" else np.float16
        self.scale = 255.0 if self.dtype == np.uint8 else 1.0
        shapes: dict[str, tuple[tuple[int, ...], Any]] = {
            f"{b}_bank": ((patches, crop, crop), self.dtype) for b in BANKS
        }
        shapes["scores"] = ((patches, 2), np.float32)  # best SSIM sum, best GMSD sum
        shapes["seen"] = ((patches,), np.uint8)
        self.arrays: dict[str, np.memmap] = open_npy_memmaps(self.folder, shapes, create, "refresh bank")

    @staticmethod
    def nbytes(patches: int, crop: int, dtype: str) -> int:
        return len(BANKS) * patches * crop * crop * (1 if dtype == "uint8" else 2) + patches * 9

    def _read(self, bank: str, idx: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        data = np.asarray(self.arrays[f"{bank}_bank"][idx], dtype=np.float32) / self.scale
        return torch.from_numpy(data).to(like.device)[:, None]

    def _write(self, bank: str, idx: np.ndarray, images: torch.Tensor) -> None:
        x = images[:, 0].detach().clamp(0.0, 1.0).cpu().numpy() * self.scale
        self.arrays[f"{bank}_bank"][idx] = np.rint(x) if self.dtype == np.uint8 else x

    def loss(
        self, out: torch.Tensor, patch: torch.Tensor, flips: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor
    ) -> torch.Tensor:
        """The memory term for this batch; updates the banks where the current output is better."""
        idx = patch.cpu().numpy()
        if len(np.unique(idx)) != len(idx):  # a pool smaller than a batch repeats patches
            _, first = np.unique(idx, return_index=True)
            keep = torch.zeros(len(idx), dtype=torch.bool)
            keep[torch.from_numpy(first)] = True
        else:
            keep = torch.ones(len(idx), dtype=torch.bool)
        with torch.no_grad():
            s_cur = (ssim(out, ir, per_image=True) + ssim(out, vi, per_image=True)).float().cpu()
            g_cur = (gmsd(out, ir) + gmsd(out, vi)).float().cpu()
        scores = torch.from_numpy(np.asarray(self.arrays["scores"][idx], dtype=np.float32))
        seen = torch.from_numpy(np.asarray(self.arrays["seen"][idx]) > 0)
        canon = _orient(out.detach(), flips)
        total = out.new_zeros(())
        for b, cur, better, gap in (
            ("ssim", s_cur, s_cur > scores[:, 0], scores[:, 0] - s_cur),
            ("gmsd", g_cur, g_cur < scores[:, 1], g_cur - scores[:, 1]),
        ):
            update = (~seen | better) & keep
            pull = seen & ~better & (gap > 0)
            if pull.any():
                hist = _orient(self._read(b, idx, out), flips)
                sel = pull.to(out.device)
                if b == "ssim":
                    per = (out - hist).abs().flatten(1).mean(1)
                else:
                    per = (
                        F.l1_loss(sobel_magnitude(out), sobel_magnitude(hist), reduction="none")
                        .flatten(1)
                        .mean(1)
                    )
                total = total + (per * gap.to(out.device) * sel).sum() / len(idx)
            if update.any():
                rows = idx[update.numpy()]
                self._write(b, rows, canon[update.to(out.device)])
                col = 0 if b == "ssim" else 1
                sc = np.asarray(self.arrays["scores"][rows])
                sc[:, col] = cur[update].numpy()
                self.arrays["scores"][rows] = sc
        self.arrays["seen"][idx] = 1
        return total

    def flush(self) -> None:
        for arr in self.arrays.values():
            arr.flush()
