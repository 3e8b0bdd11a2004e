"""Validation during training: fuse a few held-out pairs and score them with the project's metrics.

Outputs go through the same 8-bit mapping as ``lutfuse-deploy fuse`` (``fuse.convert.to_8bit``) and the
same gray conversion as ``evaluate`` (PIL luma), so a validation score means what the report means.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from lutfuse_deploy.metrics.fusion import to_gray
from lutfuse_deploy.train.data import pair_set

ValPair = tuple[str, np.ndarray, np.ndarray]


@torch.no_grad()
def fused_output(
    model: nn.Module, ir: np.ndarray, rgb: np.ndarray, device: torch.device | str = "cpu"
) -> np.ndarray:
    """One uint8 pair (IR H x W, visible H x W x 3) -> the model's raw float output (C x H x W).

    LUT-Fuse takes the RGB visible, MMDRFuse its PIL-luma gray, as ``fuse`` feeds them.
    """
    # np.array(..., float32) copies: decoded images can be read-only, which torch.from_numpy warns about
    t_ir = torch.from_numpy(np.array(ir, dtype=np.float32)).to(device)[None, None]
    if str(model.kind) == "lutfuse":
        t_vi = torch.from_numpy(np.array(rgb, dtype=np.float32)).to(device).permute(2, 0, 1)[None]
    else:
        t_vi = torch.from_numpy(to_gray(rgb)).to(device, torch.float32)[None, None]
    return model(t_ir, t_vi)[0].float().cpu().numpy()


def fused_gray(
    model: nn.Module,
    ir: np.ndarray,
    rgb: np.ndarray,
    tanh_map: str = "minmax",
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """One uint8 pair -> the fused image as ``fuse`` writes it, as uint8 gray H x W."""
    from lutfuse_deploy.fuse.convert import to_8bit

    img = to_8bit(fused_output(model, ir, rgb, device), str(model.kind), tanh_map)
    return to_gray(img) if img.ndim == 3 else img


def validate(
    model: nn.Module,
    pairs: list[ValPair],
    weights: dict[str, float],
    tanh_map: str = "minmax",
    device: torch.device | str = "cpu",
) -> tuple[dict[str, float], float]:
    """Mean metrics over ``pairs`` and the recipe's score ``sum(weight * metric)`` (nan -> -inf).

    Pairs named ``<set>/<file>`` (held-out training pairs) are averaged per set first, then over the
    sets, so a set with larger or more images does not outweigh the others.
    """
    from lutfuse_deploy.metrics.fusion import METRIC_NAMES, compute_all

    groups: dict[str, list[dict[str, float]]] = {}
    for name, ir, rgb in pairs:
        row = compute_all(ir, to_gray(rgb), fused_gray(model, ir, rgb, tanh_map, device))
        groups.setdefault(pair_set(name), []).append(row)
    per_set = [{m: float(np.nanmean([r[m] for r in rows])) for m in METRIC_NAMES} for rows in groups.values()]
    means = {m: float(np.nanmean([g[m] for g in per_set])) for m in METRIC_NAMES}
    score = float(sum(w * means[m] for m, w in weights.items()))
    return means, score if math.isfinite(score) else -math.inf
