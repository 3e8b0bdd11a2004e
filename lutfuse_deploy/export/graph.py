"""Export-ready PyTorch modules: the same mathematics as ``models/``, in float32 ops that export well.

One graph serves ONNX Runtime, OpenVINO and TensorRT: float32 only, native ``Conv``, and the
InstanceNorm written as centred two-level reductions. The official LUT-Fuse context network is
ill-conditioned (its convolutions cancel terms up to 260x larger than their result; one InstanceNorm
channel on TNO 04 has mean 523 and std 6.8), so any two float32 programs differ by ~1e-4 on such
inputs and PyTorch's own float32 output is up to 1.7e-4 from the same maths in float64. The graph is
therefore judged against float64 truth (``export.parity``), not against PyTorch's float32 roundings.
ONNX Runtime's fused ``InstanceNormalization`` accumulates naively (5e-3 off on TNO 04), hence the
explicit reductions. The lookup goes through ``lowering.make_lookup`` (GridSample atlas or Gather).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lutfuse_deploy.errors import ExportError
from lutfuse_deploy.export.lowering import RigWarp, make_lookup
from lutfuse_deploy.models.lut import (
    CB,
    CHROMA_TO_RGB,
    CR,
    LUMA,
    MINMAX_EPS,
    SOBEL_X,
    SOBEL_Y,
    ContextNet,
    LutFuse,
)


class _SumSquares(torch.autograd.Function):
    """Sum of squares along one axis as one ``ReduceSumSquare`` (torch would write Mul + ReduceSum: a
    full-size temporary; ONNX Runtime's ReduceL2 is slower)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dim: int) -> torch.Tensor:
        return (x * x).sum(dim=dim, keepdim=True)

    @staticmethod
    def symbolic(g: Any, x: Any, dim: int) -> Any:  # TorchScript exporter hook: g is its GraphContext
        if g.opset >= 18:  # reduction axes became an input in opset 18
            axes = g.op("Constant", value_t=torch.tensor([dim], dtype=torch.int64))
            return g.op("ReduceSumSquare", x, axes, keepdims_i=1)
        return g.op("ReduceSumSquare", x, axes_i=[dim], keepdims_i=1)


def mean_hw(x: torch.Tensor) -> torch.Tensor:
    """Mean over H and W as two reductions (rows, then columns): float32 error ~(H + W) eps, not H*W eps."""
    return x.mean(dim=3, keepdim=True).mean(dim=2, keepdim=True)


class RobustInstanceNorm(nn.Module):
    """``nn.InstanceNorm2d(affine=True)`` as centred two-pass reductions (same result, exact maths)."""

    def __init__(self, norm: nn.InstanceNorm2d) -> None:
        super().__init__()
        if norm.weight is None or norm.bias is None:
            raise ExportError("the context network's InstanceNorm must be affine")
        weight, bias = norm.weight.detach().clone(), norm.bias.detach().clone()
        self.eps = float(norm.eps)
        self.weight = nn.Parameter(weight.view(1, -1, 1, 1), requires_grad=False)
        self.bias = nn.Parameter(bias.view(1, -1, 1, 1), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x - mean_hw(x)
        m2 = mean_hw(d)  # the rounding error of the first mean, folded into the affine below
        var = _SumSquares.apply(d, 3).mean(dim=2, keepdim=True) / d.shape[3] - m2 * m2
        scale = self.weight / torch.sqrt(var + self.eps)
        return d * scale + (self.bias - m2 * scale)


def _blocks(seq: nn.Sequential) -> list[tuple[nn.Conv2d, float, nn.InstanceNorm2d]]:
    """(conv, leaky slope, norm) triples of a Conv -> LeakyReLU -> InstanceNorm sequence."""
    layers = list(seq)
    out = []
    for i in range(0, len(layers), 3):
        conv, act, norm = layers[i:i + 3]
        if not (isinstance(conv, nn.Conv2d) and isinstance(act, nn.LeakyReLU) and isinstance(norm, nn.InstanceNorm2d)):
            raise ExportError("unexpected context network layout (expected Conv -> LeakyReLU -> InstanceNorm)")
        out.append((conv, float(act.negative_slope), norm))
    return out


class SingleOutputConv3x3(nn.Module):
    """A 3x3, zero-padded Conv with one output channel, as a 1x1 Conv to its nine tap maps and two
    one-hot shift-sums (a grouped 3x1 Conv, then a 1x3 Conv): the same sum in another order.

    ONNX Runtime runs a 3x3 Conv as im2col + GEMM, which for one output channel writes 9 x C values
    per pixel to produce one; this form writes 9 + 3 + 3. On the official context network's head
    (16 -> 1 at 640x480, ONNX Runtime profile, 2 threads) it measured 3.8 ms against 8.4 ms.
    """

    taps: torch.Tensor
    down: torch.Tensor
    across: torch.Tensor

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if conv.out_channels != 1 or conv.kernel_size != (3, 3) or conv.padding != (1, 1) or conv.stride != (1, 1) \
                or conv.groups != 1 or conv.bias is None:
            raise ExportError("unexpected context network head (expected a biased 3x3 Conv to one channel)")
        w = conv.weight.detach()[0]  # C x 3 x 3
        # tap map 3*kx + ky holds sum_c w[c, ky, kx] * x_c; the shift-sums move it by (ky - 1, kx - 1)
        self.register_buffer("taps", torch.stack([w[:, ky, kx] for kx in range(3) for ky in range(3)])[:, :, None, None])
        down = torch.zeros(3, 3, 3, 1)
        across = torch.zeros(1, 3, 1, 3)
        for k in range(3):
            down[:, k, k, 0] = 1.0
            across[0, k, 0, k] = 1.0
        self.register_buffer("down", down)
        self.register_buffer("across", across)
        self.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        columns = F.conv2d(F.conv2d(x, self.taps), self.down, padding=(1, 0), groups=3)
        return F.conv2d(columns, self.across, self.bias, padding=(0, 1))


class ContextGraph(nn.Module):
    """``ContextNet`` in float32 Conv ops with robust InstanceNorm."""

    def __init__(self, net: ContextNet) -> None:
        super().__init__()
        blocks = _blocks(net.input_layer) + _blocks(net.mid_layer)
        self.convs = nn.ModuleList([b[0] for b in blocks])
        self.slopes = [b[1] for b in blocks]
        self.norms = nn.ModuleList([RobustInstanceNorm(b[2]) for b in blocks])
        head = net.output_layer[-1]
        if not isinstance(head, nn.Conv2d):
            raise ExportError("unexpected context network head (expected a Conv2d)")
        self.head = SingleOutputConv3x3(head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        first = x
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            h = norm(F.leaky_relu(conv(h), self.slopes[i]))
            if i == 0:
                first = h
        return torch.sigmoid(self.head(h + first))


# fused RGB = fused Y + (visible RGB - visible Y): the Cb/Cr terms of ``models.lut.ycbcr_to_rgb``
COLOUR = tuple(tuple(a * cr + b * cb for cr, cb in zip(CR, CB)) for a, b in CHROMA_TO_RGB)


def visible_terms_weights(coord_scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weights of the three Convs that give everything the visible image (0..255) contributes:
    (1, 3, 1, 1) its Y coordinate, (3, 3, 1, 1) the three colour offsets, and (2, 1, 3, 3) the Sobel
    pair, taken of the Y coordinate.

    Each is linear in RGB, so small convolutions replace ~25 elementwise ops (each a full pass over
    the image in ONNX Runtime). They are separate Convs, not one 6-channel Conv: 1x1 Convs are plain
    matrix products in ONNX Runtime (no im2col), only the 1-channel Sobel needs a 3x3 window, and no
    Split has to copy the channels apart. Sobel of the Y coordinate is ``coord_scale`` x Sobel of Y,
    zero padding included (zero RGB has zero Y), and the min-max normalisation cancels the factor.
    """
    luma = torch.tensor(LUMA, dtype=torch.float64) / 255.0
    y = (luma * coord_scale).view(1, 3, 1, 1)
    colour = (torch.tensor(COLOUR, dtype=torch.float64) / 255.0).view(3, 3, 1, 1)
    sobel = torch.tensor([SOBEL_X, SOBEL_Y], dtype=torch.float64).view(2, 1, 3, 3)
    return y.float(), colour.float(), sobel.float()


class LutFuseGraph(nn.Module):
    """The whole LUT-Fuse pipeline: IR + visible RGB (0..255) -> fused RGB on [0, 1], unclamped.

    Every coordinate is clamped to [0, n - 1] once: for the official ``[0, n - 1 + 0.999999]`` clamp
    the value is the same (above n - 1 both corners are node n - 1), and the lookup needs no clamp
    of its own.
    """

    luma: torch.Tensor
    colour: torch.Tensor
    sobel: torch.Tensor

    def __init__(self, model: LutFuse, lowering: str) -> None:
        super().__init__()
        self.config = model.config
        self.lookup = make_lookup(model.lut.detach(), lowering)
        luma, colour, sobel = visible_terms_weights(self.config.coord_scale)
        self.register_buffer("luma", luma)
        self.register_buffer("colour", colour)
        self.register_buffer("sobel", sobel)
        self.top = float(self.config.nodes - 1)
        scale = float(self.config.context_scale)
        self.pool = 1
        if scale < 1.0:
            k = round(1.0 / scale)
            if abs(k * scale - 1.0) > 1e-9:
                raise ExportError(f"context_scale {scale} cannot be exported: it must be 1/k for an integer k")
            self.pool = k  # area downscaling by 1/k == k x k average pooling when k divides H and W
        self.context = ContextGraph(model.context)

    def context_map(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        if self.pool == 1:
            return self.context(torch.cat([vi, ir], dim=1))
        # pooled before they are joined: the same values, without a full-size 4-channel copy
        small = self.context(torch.cat([F.avg_pool2d(vi, self.pool), F.avg_pool2d(ir, self.pool)], dim=1))
        return F.interpolate(small, size=ir.shape[2:], mode="bilinear", align_corners=False)

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        scale = self.config.coord_scale
        y = F.conv2d(vi, self.luma)
        colour = F.conv2d(vi, self.colour)
        mag = torch.sqrt(_SumSquares.apply(F.conv2d(y, self.sobel, padding=1), 1))  # coord_scale x |Sobel Y|
        lo = torch.amin(mag, dim=(2, 3), keepdim=True)
        span = (torch.amax(mag, dim=(2, 3), keepdim=True) - lo + MINMAX_EPS * scale) / scale
        parts = [y, (mag - lo) / span, self.context_map(ir, vi) * scale, ir * (scale / 255.0)]
        coords = [torch.clamp(p, 0.0, self.top) for p in parts]
        return self.lookup(coords) + colour


class Uint8Io(nn.Module):
    """uint8 in, uint8 out: the [0, 1] scale times 255, rounded half to even, clamped (``to_uint8``)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        out = self.inner(ir.to(torch.float32), vi.to(torch.float32))
        return torch.clamp(torch.round(out * 255.0), 0.0, 255.0).to(torch.uint8)


def size_multiple(model: nn.Module) -> int:
    """H and W must be multiples of this for the graph to equal the model (1 = any size)."""
    kind = getattr(model, "kind", "")
    if kind == "mmdrfuse-teacher":
        return 2
    if isinstance(model, LutFuse) and model.config.context_scale < 1.0:
        return round(1.0 / model.config.context_scale)
    return 1


def graph_module(model: nn.Module, lowering: str, io: str, rig: Any = None) -> nn.Module:
    """The module to trace: LUT-Fuse rebuilt for export, MMDRFuse as is, behind the rig's warp when
    there is one, wrapped for uint8 io."""
    inner: nn.Module = LutFuseGraph(model, lowering) if isinstance(model, LutFuse) else model
    if rig is not None:
        inner = RigGraph(inner, rig)
    inner = inner.eval()
    for p in inner.parameters():
        p.requires_grad_(False)
    return Uint8Io(inner).eval() if io == "uint8" else inner


class RigGraph(nn.Module):
    """Raw frames of a two-camera rig in, fused frame in the visible camera's geometry out: the IR is
    warped (``lowering.RigWarp``), the visible frame cropped to the rig's output box, then ``inner``
    fuses them. The same module is the PyTorch path of ``fuse --rig`` and what ``export --rig`` traces."""

    def __init__(self, inner: nn.Module, rig: Any) -> None:
        super().__init__()
        self.inner = inner
        self.box = rig.output_box()
        self.vi_size = tuple(rig.vi_size)
        self.warp = RigWarp(rig.inverse.tolist(), tuple(rig.ir_size), self.box)

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        x0, y0, w, h = self.box
        if (x0, y0, w, h) != (0, 0, *self.vi_size):
            vi = vi[:, :, y0:y0 + h, x0:x0 + w]
        return self.inner(self.warp(ir), vi)
