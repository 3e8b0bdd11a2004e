"""The 4-D LUT lookup lowered to ops that TensorRT and ONNX Runtime both run (docs/semantics.md §4).

This is the only module that knows the atlas layout, its padding to 2^k, the GridSample mode
strings and the opsets (16-19) whose spelling TensorRT's parser reads. Both lowerings reproduce
``models.lut.quadrilinear`` (``lo = floor(x)``, ``hi = min(lo + 1, n - 1)``, weight ``x - lo``) on
coordinates clamped to [0, n - 1] by the caller.

GridSample atlas (``--lowering gridsample``), for an ``n``-node table with axes ``[y, g, c, ir]``::

    atlas[y * n + g, c * n + ir] = table[y, g, c, ir]      (= table.reshape(n*n, n*n))

so tile ``(y_i, c_k)`` sits at rows ``y_i*n ...`` and columns ``c_k*n ...``; inside a tile the row is
``g`` and the column is ``ir``. The atlas has four channels, one per corner of the two *outer* axes
(y, c): channel ``2*dy + dc`` holds the table shifted by ``(dy, dc)`` cells, the shift clamped at the
last node (``hi = min(lo + 1, n - 1)``). One rank-4 bilinear ``GridSample(align_corners=0,
padding_mode=zeros)`` at the ``(y_lo, c_lo)`` tile therefore reads all four corners at once and
interpolates the two *inner* axes (g, ir); two exact lerps whose weights are ``x - floor(x)`` finish
y and c. One 4-channel call instead of four 1-channel ones: ONNX Runtime's CPU GridSample
parallelises over batch x channels only, and TensorRT fuses either into one layer. The context axis c
is the steepest of the official table (99th-percentile step 5.3 per cell against < 1.2 for the
others), so it is kept out of GridSample, whose weights come from a float32 position in a 256-wide
atlas (~2^-17 texel resolution); ``ir = IR/16`` is a multiple of 1/16 and stays exact there.
In-tile coordinates are clamped to ``n - 1``, so bilinear never bleeds into the next tile (exact: the
upper corner is clamped to ``n - 1`` anyway). The atlas is padded to a power of two ``2^k`` (256 for
16 nodes, 512 for 17, replicating the last row and column) and sampled with ``align_corners=0``, so
the grid is ``(2p + 1) / 2^k - 1``: every scale is a power of two and positions survive the round
trip through [-1, 1] with only the sums rounding. ``padding_mode=zeros`` with ``align_corners=0`` is
ONNX Runtime's fast GridSample path (1.45-1.65x faster than ``border``/``align_corners=1`` with 4
channels at 640x480, ``tools/gridsample_paths.py``); nothing is read outside the atlas with a non-zero weight, so the padding mode
does not change the result.

Gather (``--lowering gather``): an ``(n^4, 16)`` table holding each cell's 16 corners (upper corners
clamped), one int32 ``Gather`` per pixel and the 16 quadrilinear weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lutfuse_deploy.errors import ExportError

LOWERINGS = ("gridsample", "gather")
DEFAULT_LOWERING = "gridsample"
# GridSample exists from opset 16. Opset 20 renamed its modes (bilinear -> linear, bicubic -> cubic)
# and added rank 5; TensorRT's parser reads only the 16-19 spellings and silently samples nearest for
# the new ones, and its GridSample layer is rank-4 only.
GRIDSAMPLE_MIN_OPSET = 16
GRIDSAMPLE_TENSORRT_OPSETS = range(16, 20)
GRIDSAMPLE_TENSORRT_MODES = ("bilinear", "nearest", "bicubic")
GRIDSAMPLE_RANK = 4
GRIDSAMPLE_MODE = "bilinear"  # what the lowering emits (the opset 16-19 name)
GRIDSAMPLE_PADDING = "zeros"  # with align_corners=0: ONNX Runtime's fast path; never read with weight > 0


def gridsample_opset_problem(opset: int) -> str | None:
    """Why a GridSample graph at ``opset`` is not TensorRT-safe, or None when it is."""
    if opset < GRIDSAMPLE_MIN_OPSET:
        return f"GridSample needs opset >= {GRIDSAMPLE_MIN_OPSET}, got {opset}"
    if opset not in GRIDSAMPLE_TENSORRT_OPSETS:
        return (f"opset {opset} renamed GridSample's modes; TensorRT's ONNX parser only reads the opset "
                f"{GRIDSAMPLE_TENSORRT_OPSETS.start}-{GRIDSAMPLE_TENSORRT_OPSETS.stop - 1} spelling and falls "
                "back to nearest sampling")
    return None


def atlas_side(nodes: int) -> int:
    """Smallest power of two ``2^k`` holding ``nodes^2`` texels: align_corners=0 then scales by ``2^k``."""
    return 1 << (nodes * nodes - 1).bit_length()


def build_atlas(table: torch.Tensor) -> torch.Tensor:
    """The (1, 4, S, S) corner atlas of an (n, n, n, n) table, edge-replicated up to S = atlas_side(n).

    Channel ``2*dy + dc`` is the table at ``(min(y + dy, n - 1), g, min(c + dc, n - 1), ir)``.
    """
    n = table.shape[0]
    t = table.detach().float()
    hi = torch.clamp(torch.arange(n) + 1, max=n - 1)
    channels = []
    for dy in (0, 1):
        for dc in (0, 1):
            shifted = t[hi] if dy else t
            shifted = shifted[:, :, hi] if dc else shifted
            channels.append(shifted.reshape(n * n, n * n))
    pad = atlas_side(n) - n * n
    return F.pad(torch.stack(channels)[None], (0, pad, 0, pad), mode="replicate")


def corner_table(table: torch.Tensor) -> torch.Tensor:
    """(n^4, 16): row ``flat(y, g, c, ir)`` holds the 16 corners; corner bits (dy, dg, dc, dir), dy high."""
    n = table.shape[0]
    idx = torch.arange(n)
    hi = torch.clamp(idx + 1, max=n - 1)
    cols = []
    for corner in range(16):
        sel = [hi if (corner >> (3 - axis)) & 1 else idx for axis in range(4)]
        cols.append(table.detach().float()[torch.meshgrid(*sel, indexing="ij")].reshape(-1))
    return torch.stack(cols, dim=1).contiguous()


def _split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, weight) of a coordinate; the upper corner ``min(lo + 1, n - 1)`` is in the tables."""
    lo = torch.floor(x)
    return lo, x - lo


class GridSampleLookup(nn.Module):
    """One rank-4 bilinear GridSample over the 4-channel corner atlas, then two exact lerps."""

    atlas: torch.Tensor

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.nodes = int(table.shape[0])
        self.register_buffer("atlas", build_atlas(table))
        self.norm = float(atlas_side(self.nodes) // 2)  # grid units per texel: a power of two

    def forward(self, coords: list[torch.Tensor]) -> torch.Tensor:
        """``coords`` = [y, g, c, ir], each N x 1 x H x W and already clamped to [0, n - 1]."""
        y, g, c, ir = coords
        (y_lo, wy), (c_lo, wc) = _split(y), _split(c)
        # x = (2p + 1)/2^k - 1 with p = tile*n + in_tile: n/h, 1/h and 1/2h are powers of two (h = 2^(k-1)),
        # so only the sums round
        step, unit = float(self.nodes) / self.norm, 1.0 / self.norm
        offset = 0.5 * unit - 1.0
        grid = torch.cat([c_lo * step + (ir * unit + offset), y_lo * step + (g * unit + offset)], dim=1)
        atlas = self.atlas.expand(y.shape[0], -1, -1, -1)  # GridSample pairs image n with grid n
        v = F.grid_sample(atlas, grid.permute(0, 2, 3, 1), mode=GRIDSAMPLE_MODE, padding_mode=GRIDSAMPLE_PADDING,
                          align_corners=False)
        v_ll, v_lh, v_hl, v_hh = torch.split(v, 1, dim=1)
        v_l = v_ll + wc * (v_lh - v_ll)
        return v_l + wy * (v_hl + wc * (v_hh - v_hl) - v_l)


class GatherLookup(nn.Module):
    """One int32 Gather of a cell's 16 corners (one contiguous 64-byte row) per pixel, then the
    16 quadrilinear weights. After the gather the corner axis is moved first (16 x pixels), so the
    weight arithmetic runs over long contiguous rows: ONNX Runtime broadcasts over a trailing axis of
    2 an order of magnitude slower, and gathering along the long axis of a (16, n^4) table is slower.
    """

    corners: torch.Tensor

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.nodes = int(table.shape[0])
        self.register_buffer("corners", corner_table(table))

    def forward(self, coords: list[torch.Tensor]) -> torch.Tensor:
        """``coords`` = [y, g, c, ir], each N x 1 x H x W and already clamped to [0, n - 1]."""
        n = float(self.nodes)
        flat_coords = [x.reshape(1, -1) for x in coords]  # 1 x P, P = N*H*W
        (ly, wy), (lg, wg), (lc, wc), (li, wi) = [_split(x) for x in flat_coords]
        flat = ((ly * n + lg) * n + lc) * n + li  # integers < 2^24: exact in float32
        values = torch.index_select(self.corners, 0, flat.to(torch.int32)[0]).t()  # 16 x P
        w = [torch.cat([1.0 - a, a], dim=0) for a in (wy, wg, wc, wi)]  # each 2 x P
        weights = (w[0].reshape(2, 1, 1, 1, -1) * w[1].reshape(1, 2, 1, 1, -1)
                   * w[2].reshape(1, 1, 2, 1, -1) * w[3].reshape(1, 1, 1, 2, -1))
        out = (values * weights.reshape(16, -1)).sum(dim=0)
        return out.reshape(coords[0].shape)


def make_lookup(table: torch.Tensor, lowering: str) -> nn.Module:
    """The lookup module for ``lowering`` over an (n, n, n, n) table."""
    if table.dim() != 4 or len(set(table.shape)) != 1:
        raise ExportError(f"the LUT must be n x n x n x n, got {tuple(table.shape)}")
    if lowering == "gridsample":
        return GridSampleLookup(table)
    if lowering == "gather":
        return GatherLookup(table)
    raise ExportError(f"unknown lowering {lowering!r}: choose one of {', '.join(LOWERINGS)}")


class RigWarp(nn.Module):
    """The thermal frame warped into the visible camera's geometry: one bilinear GridSample whose grid
    is the rig's inverse homography applied to every output pixel (TensorRT-legal: rank 4, opset 16-19
    spelling, ``align_corners=0``).

    With ``align_corners=0`` GridSample's -1 and +1 are the outer *edges* of the IR frame, so an IR
    pixel-centre coordinate ``s`` (OpenCV's convention, first centre at 0) is ``(2s + 1) / W - 1``.
    That affine step is folded into the homography's rows: ``g = (a . (u, v, 1)) / (d . (u, v, 1))``,
    with the ``u`` and ``v`` terms kept as one row and one column constant, so the graph spends three
    broadcast Adds and two Divs per pixel. ``padding_mode=zeros``: outside the IR frame the IR reads as
    0 (docs/rigs.md, "Where the thermal camera does not see").

    The constants are kept in float64 and made in the input's dtype at run time, so the float64 truth
    of the same maths (``export.parity``) is exact and the float32 graph rounds them once.
    """

    def __init__(self, inverse: "list[list[float]]", ir_size: tuple[int, int], out_box: tuple[int, int, int, int]):
        super().__init__()
        import numpy as np

        g = np.asarray(inverse, dtype=np.float64)
        (w_ir, h_ir), (x0, y0, w, h) = ir_size, out_box
        rows = np.stack([(2 * g[0] + (1 - w_ir) * g[2]) / w_ir, (2 * g[1] + (1 - h_ir) * g[2]) / h_ir, g[2]])
        u = np.arange(x0, x0 + w, dtype=np.float64)
        v = np.arange(y0, y0 + h, dtype=np.float64)
        # row constants (1, 1, 1, w) hold the u and constant terms, column constants (1, 1, h, 1) the v term
        self._across = [(r[0] * u + r[2]).reshape(1, 1, 1, w) for r in rows]
        self._down = [(r[1] * v).reshape(1, 1, h, 1) for r in rows]

    def forward(self, ir: torch.Tensor) -> torch.Tensor:
        x, y, d = (torch.as_tensor(a, dtype=ir.dtype, device=ir.device) + torch.as_tensor(b, dtype=ir.dtype,
                                                                                           device=ir.device)
                   for a, b in zip(self._across, self._down))
        grid = torch.cat([(x / d).unsqueeze(-1), (y / d).unsqueeze(-1)], dim=-1)[:, 0]  # 1 x h x w x 2
        grid = grid.expand(ir.shape[0], -1, -1, -1)
        return F.grid_sample(ir, grid, mode=GRIDSAMPLE_MODE, padding_mode=GRIDSAMPLE_PADDING, align_corners=False)
