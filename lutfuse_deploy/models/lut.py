"""LUT-Fuse: a learnable 4-D look-up table indexed by (visible Y, Sobel gradient, context, IR).

Reads top to bottom: context network, look-up coordinates, quadrilinear lookup, the model, the
mapping of the official release's keys. Semantics follow docs/semantics.md §2 exactly, so an
imported official checkpoint reproduces the official outputs to 1e-4.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

# ITU-R BT.601 luma and the YCbCr <-> RGB constants of the official release (docs/semantics.md §2).
LUMA = (0.299, 0.587, 0.114)
SOBEL_X = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))
SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))
MINMAX_EPS = 1e-8
# Cb and Cr of the official release as weights of (R, G, B) on [0, 1], offsets 0.5 left out
CB = (-0.168736, -0.331264, 0.5)
CR = (0.5, -0.418688, -0.081312)
# fused RGB = fused Y + (weights of Cr, Cb) . (Cr, Cb) per output channel
CHROMA_TO_RGB = ((1.402, 0.0), (-0.714136, -0.344136), (0.0, 1.772))


@dataclass(frozen=True)
class LutFuseConfig:
    """Table lattice and context-network shape.

    ``nodes=16`` is the official layout (node i at intensity 16·i, the top cell flat); ``nodes=17``
    covers the full 0..255 range (node i at 255·i/16). ``context_scale < 1`` runs the context
    network on a downscaled pair and upsamples its map: the fast variant (design trade-off in
    docs/performance.md).
    """

    nodes: int = 16
    cse_width: int = 16
    cse_depth: int = 3
    context_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.nodes not in (16, 17):
            raise ValueError(f"nodes must be 16 (official) or 17 (full range), got {self.nodes}")
        if self.cse_width < 1 or self.cse_depth < 0:
            raise ValueError("cse_width must be >= 1 and cse_depth >= 0")
        if not 0.0 < self.context_scale <= 1.0:
            raise ValueError(f"context_scale must be in (0, 1], got {self.context_scale}")

    @property
    def coord_scale(self) -> float:
        """Multiplier from the [0, 1] scale to table coordinates (node spacing)."""
        return 255.0 / 16.0 if self.nodes == 16 else float(self.nodes - 1)

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _conv_block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2), nn.InstanceNorm2d(cout, affine=True)]


class ContextNet(nn.Module):
    """The "CSE" context network: 4 channels (RGB + IR on 0..255, not normalised) -> sigmoid map.

    Layer indices match the official state_dict (``input_layer.0``, ``mid_layer.{0,2,3,5,...}``,
    ``output_layer.1``) so official weights load strictly without renaming.
    """

    def __init__(self, width: int = 16, depth: int = 3) -> None:
        super().__init__()
        self.input_layer = nn.Sequential(*_conv_block(4, width))
        mid: list[nn.Module] = []
        for _ in range(depth):
            mid += _conv_block(width, width)
        self.mid_layer = nn.Sequential(*mid)
        self.output_layer = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(width, 1, 3, padding=1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden features (``width`` channels), before the dropout and the output conv."""
        x = self.input_layer(x)
        return self.mid_layer(x) + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.output_layer(self.features(x)))


def luminance(vi_rgb01: torch.Tensor) -> torch.Tensor:
    """BT.601 Y of an N x 3 x H x W RGB tensor on [0, 1] -> N x 1 x H x W."""
    r, g, b = vi_rgb01[:, 0:1], vi_rgb01[:, 1:2], vi_rgb01[:, 2:3]
    return LUMA[0] * r + LUMA[1] * g + LUMA[2] * b


def sobel_minmax(y01: torch.Tensor) -> torch.Tensor:
    """Sobel magnitude of Y (zero padding), min-max normalised per image over H x W.

    Two 1-channel convolutions, as the official code has them: one 2-channel convolution sums in
    another order (up to 8e-7 apart on noise).
    """
    kx, ky = (torch.tensor(k, dtype=y01.dtype, device=y01.device)[None, None] for k in (SOBEL_X, SOBEL_Y))
    mag = torch.sqrt(F.conv2d(y01, kx, padding=1) ** 2 + F.conv2d(y01, ky, padding=1) ** 2)
    lo = mag.amin(dim=(2, 3), keepdim=True)
    hi = mag.amax(dim=(2, 3), keepdim=True)
    return (mag - lo) / (hi - lo + MINMAX_EPS)


def ycbcr_to_rgb(y: torch.Tensor, vi_rgb01: torch.Tensor) -> torch.Tensor:
    """Recombine a fused Y with the visible Cb/Cr (full-range BT.601, offsets 0.5).

    Cb and Cr get their 0.5 offset and lose it again, as in the official code: its float32
    roundings, kept so the output matches the official one bit for bit (docs/semantics.md §2).
    """
    r, g, b = vi_rgb01[:, 0:1], vi_rgb01[:, 1:2], vi_rgb01[:, 2:3]
    cb = (0.5 + CB[0] * r + CB[1] * g + CB[2] * b) - 0.5
    cr = (0.5 + CR[0] * r + CR[1] * g + CR[2] * b) - 0.5
    (r_cr, _), (g_cr, g_cb), (_, b_cb) = CHROMA_TO_RGB
    return torch.cat([y + r_cr * cr, y + g_cb * cb + g_cr * cr, y + b_cb * cb], dim=1)


def corner_rows(table: torch.Tensor) -> torch.Tensor:
    """(n^4, 16): row ``flat(y, g, c, ir)`` holds that cell's 16 corner values, ``hi = min(lo + 1, n - 1)``.

    Bit ``a`` of the column picks the upper corner on axis ``a`` (y = bit 0 ... ir = bit 3), so each
    lerp of ``interpolate`` takes the row's two contiguous halves. Plain indexing: differentiable.
    """
    n = table.shape[0]
    idx = torch.arange(n, device=table.device)
    hi = torch.clamp(idx + 1, max=n - 1)
    cols = [table[torch.meshgrid(*[hi if (k >> a) & 1 else idx for a in range(4)], indexing="ij")].reshape(-1)
            for k in range(16)]
    return torch.stack(cols, dim=1)


def interpolate(corners: torch.Tensor, coords: list[torch.Tensor]) -> torch.Tensor:
    """Quadrilinear lookup in ``corner_rows(table)`` at four coordinate maps (each N x 1 x H x W).

    One gather of a cell's 16 corners (one 64-byte row) per pixel, then the nested lerps of the
    official code in its order (IR innermost, then context, gradient, visible Y), each written as
    ``lo * (1 - w) + hi * w`` like it: the same float32 roundings, so the same bits, at a third of
    the time of its 16 four-index gathers (docs/performance.md).
    """
    n = round(corners.shape[0] ** 0.25)
    los, ws = [], []
    for x in coords:
        lo = torch.floor(x.reshape(-1))
        los.append(lo)
        ws.append(x.reshape(-1, 1) - lo[:, None])
    flat = ((los[0] * n + los[1]) * n + los[2]) * n + los[3]  # integers below 2^24: exact in float32
    v = torch.index_select(corners, 0, flat.long())
    half = 16
    for w in reversed(ws):
        half //= 2
        v = v[:, :half] * (1.0 - w) + v[:, half:] * w
    return v.reshape(coords[0].shape)


def quadrilinear(table: torch.Tensor, coords: list[torch.Tensor]) -> torch.Tensor:
    """Interpolate an (n, n, n, n) table at four coordinate maps (each N x 1 x H x W, in [0, n-1]).

    For each axis ``lo = floor(x)``, ``hi = min(lo + 1, n - 1)``, weight ``x - lo``. This is the
    reference the exported lowerings match.
    """
    return interpolate(corner_rows(table), coords)


class LutFuse(nn.Module):
    """IR (N x 1 x H x W) and visible RGB (N x 3 x H x W), both float on 0..255 -> fused RGB on [0, 1].

    The output is unclamped like the official release; clamp only when writing 8-bit images.
    """

    kind = "lutfuse"

    def __init__(self, config: LutFuseConfig | None = None, **overrides: float) -> None:
        super().__init__()
        self.config = config or LutFuseConfig(**overrides)  # type: ignore[arg-type]
        n = self.config.nodes
        self.context = ContextNet(self.config.cse_width, self.config.cse_depth)
        self.lut = nn.Parameter(torch.zeros(n, n, n, n))
        self._corners: tuple[tuple[object, ...], torch.Tensor] | None = None  # see corners()

    def context_map(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        """Sigmoid context on [0, 1], at full resolution (upsampled if computed at a lower one)."""
        return self._at_context_scale(ir, vi, self.context)

    def context_features(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        """The context network's last hidden features at full resolution (what a student can distil)."""
        return self._at_context_scale(ir, vi, self.context.features)

    def _at_context_scale(
        self, ir: torch.Tensor, vi: torch.Tensor, net: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        # NCHW, as the official code runs it: the same convolution kernels, hence the same float32
        # roundings. It must follow the official code op for op: the InstanceNorm of a near-constant
        # channel amplifies any other rounding (a channels-last copy differed on TNO).
        s = self.config.context_scale
        if s >= 1.0:
            return net(torch.cat([vi, ir], dim=1))
        h, w = ir.shape[2:]
        # area pooling works per channel, so pooling before joining gives the same values without a
        # full-size 4-channel copy (1.3 ms at 640x480)
        small = torch.cat([F.interpolate(t, scale_factor=s, mode="area") for t in (vi, ir)], dim=1)
        return F.interpolate(net(small), size=(h, w), mode="bilinear", align_corners=False)

    def coordinates(self, ir: torch.Tensor, vi: torch.Tensor) -> list[torch.Tensor]:
        """The four look-up coordinates [y, g, c, ir] in table units, clamped to the lattice."""
        vi01 = vi / 255.0
        y = luminance(vi01)
        scale = self.config.coord_scale
        top = float(self.config.nodes - 1) + 0.999999  # keep out-of-range float input on the lattice
        # IR as ir * (16/255) / 16 = ir / 16 exactly on the official lattice, as the official code has it
        parts = [y * scale, sobel_minmax(y) * scale, self.context_map(ir, vi) * scale, ir * (scale / 255.0)]
        return [torch.clamp(p, 0.0, top) for p in parts]

    def corners(self) -> torch.Tensor:
        """``corner_rows`` of the table, rebuilt only when the table changed (or gradients flow to it)."""
        if torch.is_grad_enabled() and self.lut.requires_grad:
            return corner_rows(self.lut)
        key = (self.lut._version, self.lut.data_ptr(), self.lut.dtype, self.lut.device)
        if self._corners is None or self._corners[0] != key:
            with torch.inference_mode(False), torch.no_grad():  # a normal tensor, usable outside inference
                self._corners = (key, corner_rows(self.lut).contiguous())
        return self._corners[1]

    def fused_y(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        return interpolate(self.corners(), self.coordinates(ir, vi))

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        return ycbcr_to_rgb(self.fused_y(ir, vi), vi / 255.0)


def lutfuse_from_official(lut: torch.Tensor, context_state: dict[str, torch.Tensor]) -> LutFuse:
    """Build the official LUT-Fuse from its released table (16^4 x 1) and context state_dict."""
    if tuple(lut.shape) not in ((16, 16, 16, 16, 1), (16, 16, 16, 16)):
        raise ValueError(f"official LUT must be 16x16x16x16(x1), got {tuple(lut.shape)}")
    model = LutFuse(LutFuseConfig(nodes=16))
    model.context.load_state_dict(context_state, strict=True)
    with torch.no_grad():
        model.lut.copy_(lut.reshape(16, 16, 16, 16).float())
    return model


def node_values(config: LutFuseConfig) -> torch.Tensor:
    """The [0, 1]-scale value each lattice node stands for (16 nodes: 16·i/255; 17: i/16)."""
    return torch.arange(config.nodes, dtype=torch.float32) / config.coord_scale


def analytic_table(config: LutFuseConfig | None = None) -> torch.Tensor:
    """A table from a simple rule, for use before (or as the start of) distillation.

    ``Y = (1 - g/2)·max(y, ir) + (g/2)·y``: take the brighter of visible and IR (thermal targets
    pop out), but lean towards the visible luminance where its gradient is strong (keep texture).
    The context axis is ignored until training gives it a meaning.
    """
    config = config or LutFuseConfig()
    v = node_values(config)
    y, g, _c, ir = torch.meshgrid(v, v, v, v, indexing="ij")
    g = g.clamp(max=1.0)
    return (1.0 - 0.5 * g) * torch.maximum(y, ir) + 0.5 * g * y


def analytic_lutfuse(config: LutFuseConfig | None = None, seed: int = 0) -> LutFuse:
    """A LUT-Fuse with the analytic table and a seeded context network: needs no external file."""
    torch.manual_seed(seed)
    model = LutFuse(config or LutFuseConfig())
    with torch.no_grad():
        model.lut.copy_(analytic_table(model.config))
    return model.eval()
