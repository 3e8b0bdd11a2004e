"""Export-ready PyTorch modules: the same mathematics as ``models/``, in ops that export well.

The official LUT-Fuse context network is ill-conditioned: its convolutions cancel terms up to 260x
larger than their result, one InstanceNorm channel on TNO 04 has mean 523 and std 6.8, and the table's
context axis is steep. A single float32 rounding done differently anywhere in it moves the fused image
by ~1e-4 on such inputs (measured: PyTorch NCHW vs channels-last 6.5e-4; float64 vs the official
outputs 1.7e-4). So the context network has two exports (``NUMERICS``):

* ``reference`` (default): ONNX Runtime reproduces PyTorch CPU float32, and so the official outputs,
  bit for bit. PyTorch's channels-last convolution (oneDNN) sums each output as one FMA chain in
  (kh, kw, ic) order and adds the bias last; ONNX Runtime's MatMul (MLAS) sums as one FMA chain over K
  in K order, so each convolution becomes an NHWC MatMul over (kh, kw, ic)-ordered patches.
  PyTorch's InstanceNorm takes a float64 mean and variance sum, ``invstd`` in float64, and fused
  multiply-adds for the affine; ``ReferenceInstanceNorm`` writes the same in float64 ops. Every step
  was matched bit for bit against PyTorch on TNO 04 (one mismatched rounding alone costs 1e-4).
  Float64 tensors make this graph ONNX Runtime only.
* ``portable``: float32 only, native ``Conv`` and InstanceNorm as explicit two-level reductions
  (ONNX Runtime's fused ``InstanceNormalization`` accumulates naively and misses the official outputs
  by 5e-3). TensorRT takes it; on ill-conditioned inputs it is up to ~2e-4 from the official outputs.

The lookup goes through ``lowering.make_lookup`` (GridSample atlas or Gather) in both.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from lutfuse_deploy.errors import ExportError
from lutfuse_deploy.export.lowering import make_lookup
from lutfuse_deploy.models.lut import ContextNet, LutFuse, luminance, sobel_minmax, ycbcr_to_rgb

NUMERICS = ("reference", "portable")
DEFAULT_NUMERICS = "reference"
MAX_CHAIN = 256  # MLAS keeps K <= 256 in one FMA chain (measured: 256 bit-exact, 257 not)


class _RowSumSquares(torch.autograd.Function):
    """Sum of squares along W as one ``ReduceSumSquare`` (torch would write Mul + ReduceSum: a
    full-size temporary; ONNX Runtime's ReduceL2 is slower)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return (x * x).sum(dim=3, keepdim=True)

    @staticmethod
    def symbolic(g: Any, x: Any) -> Any:  # TorchScript exporter hook: g is its GraphContext
        if g.opset >= 18:  # reduction axes became an input in opset 18
            axes = g.op("Constant", value_t=torch.tensor([3], dtype=torch.int64))
            return g.op("ReduceSumSquare", x, axes, keepdims_i=1)
        return g.op("ReduceSumSquare", x, axes_i=[3], keepdims_i=1)


def mean_hw(x: torch.Tensor) -> torch.Tensor:
    """Mean over H and W as two reductions (rows, then columns): float32 error ~(H + W) eps, not H*W eps."""
    return x.mean(dim=3, keepdim=True).mean(dim=2, keepdim=True)


def affine_params(norm: nn.InstanceNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Copies of an affine InstanceNorm's (weight, bias); both export forms need them."""
    if norm.weight is None or norm.bias is None:
        raise ExportError("the context network's InstanceNorm must be affine")
    return norm.weight.detach().clone(), norm.bias.detach().clone()


def check_numerics(numerics: str) -> None:
    if numerics not in NUMERICS:
        raise ExportError(f"unknown numerics {numerics!r}: choose one of {', '.join(NUMERICS)}")


class RobustInstanceNorm(nn.Module):
    """``nn.InstanceNorm2d(affine=True)`` as centred two-pass reductions (same result, exact maths)."""

    def __init__(self, norm: nn.InstanceNorm2d) -> None:
        super().__init__()
        weight, bias = affine_params(norm)
        self.eps = float(norm.eps)
        self.weight = nn.Parameter(weight.view(1, -1, 1, 1), requires_grad=False)
        self.bias = nn.Parameter(bias.view(1, -1, 1, 1), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x - mean_hw(x)
        m2 = mean_hw(d)  # the rounding error of the first mean, folded into the affine below
        var = _RowSumSquares.apply(d).mean(dim=2, keepdim=True) / d.shape[3] - m2 * m2
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


class PortableContextGraph(nn.Module):
    """``ContextNet`` in float32 Conv ops with robust InstanceNorm (the ``portable`` numerics)."""

    def __init__(self, net: ContextNet) -> None:
        super().__init__()
        blocks = _blocks(net.input_layer) + _blocks(net.mid_layer)
        self.convs = nn.ModuleList([b[0] for b in blocks])
        self.slopes = [b[1] for b in blocks]
        self.norms = nn.ModuleList([RobustInstanceNorm(b[2]) for b in blocks])
        self.head = net.output_layer[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        first = x
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            h = norm(F.leaky_relu(conv(h), self.slopes[i]))
            if i == 0:
                first = h
        return torch.sigmoid(self.head(h + first))


def patch_index(h: int, w: int) -> torch.Tensor:
    """(H, W, 9) rows of the zero-padded, flattened (H+2)*(W+2) image under each 3x3 window, (kh, kw) order."""
    ki = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    kj = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    rows = torch.arange(h).view(h, 1, 1)
    cols = torch.arange(w).view(1, w, 1)
    return (rows + ki) * (w + 2) + cols + kj


class ChainConv(nn.Module):
    """A 3x3, stride 1, pad 1 convolution on NHWC as one MatMul over (kh, kw, ic)-ordered patches.

    The patches are one Gather from the padded image (cheaper than nine slices and a concat). The order
    and bias-last are what make ONNX Runtime's FMA chain equal oneDNN's (module doc); ONNX Runtime's
    own Conv splits the K = 144 chain of the middle layers and does not.
    """

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if (conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups) != ((3, 3), (1, 1), (1, 1),
                                                                                      (1, 1), 1):
            raise ExportError("reference numerics handle 3x3, stride 1, pad 1 convolutions only: "
                              "use --numerics portable")
        if conv.bias is None:
            raise ExportError("reference numerics need convolutions with a bias: use --numerics portable")
        w = conv.weight.detach()
        cout, cin = int(w.shape[0]), int(w.shape[1])
        if 9 * cin > MAX_CHAIN:
            raise ExportError(f"a convolution with {cin} input channels sums {9 * cin} terms, more than "
                              f"ONNX Runtime keeps in one chain ({MAX_CHAIN}): use --numerics portable")
        self.register_buffer("weight", w.permute(2, 3, 1, 0).reshape(9 * cin, cout).contiguous())
        self.register_buffer("bias", conv.bias.detach().clone())

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        n, h, w, c = x.shape
        flat = F.pad(x, (0, 0, 1, 1, 1, 1)).reshape(n, -1, c)
        patches = torch.index_select(flat, 1, index.reshape(-1)).reshape(n, h, w, 9 * c)
        return torch.matmul(patches, self.weight) + self.bias


class ReferenceInstanceNorm(nn.Module):
    """PyTorch CPU's InstanceNorm arithmetic, step for step (see the module doc).

    mean = float32(sum64(x) / n); var = float32(sum64(d * d)) / n in float32, d = x - mean;
    invstd = float32(1 / sqrt64(var + eps)); alpha = invstd * weight; beta = fma(-mean, alpha, bias);
    out = fma(x, alpha, beta). A float64 product of two float32 values is exact, so float64
    multiply-add-round stands in for a fused multiply-add.
    """

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, norm: nn.InstanceNorm2d) -> None:
        super().__init__()
        weight, bias = affine_params(norm)
        self.eps = float(norm.eps)
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # NHWC
        n, h, w, c = x.shape
        ones = torch.ones(1, 1, h * w, dtype=torch.float64)
        x64 = x.double()
        count = (h * w) * torch.ones((), dtype=torch.float64)
        # Sums over H*W as a float64 MatMul with ones: far faster in ONNX Runtime than a float64
        # ReduceSum over the middle axes of NHWC, and exact enough (float64 for a float32 result).
        mean = (torch.matmul(ones, x64.reshape(n, h * w, c)) / count).float().reshape(n, 1, 1, c)
        d = x - mean
        var_sum = torch.matmul(ones, (d * d).double().reshape(n, h * w, c)).float().reshape(n, 1, 1, c)
        var = var_sum / count.float()
        invstd = (1.0 / torch.sqrt(var.double() + self.eps)).float()
        alpha = (invstd * self.weight).double()
        beta = (self.bias.double() - mean.double() * alpha).float().double()
        return (x64 * alpha + beta).float()


class ReferenceContextGraph(nn.Module):
    """``ContextNet`` with PyTorch CPU's float32 arithmetic (the ``reference`` numerics)."""

    def __init__(self, net: ContextNet) -> None:
        super().__init__()
        blocks = _blocks(net.input_layer) + _blocks(net.mid_layer)
        self.convs = nn.ModuleList([ChainConv(b[0]) for b in blocks])
        self.slopes = [b[1] for b in blocks]
        self.norms = nn.ModuleList([ReferenceInstanceNorm(b[2]) for b in blocks])
        self.head = ChainConv(cast(nn.Conv2d, net.output_layer[-1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = patch_index(x.shape[2], x.shape[3])
        h = x.permute(0, 2, 3, 1)
        first = h
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            h = norm(F.leaky_relu(conv(h, index), self.slopes[i]))
            if i == 0:
                first = h
        return torch.sigmoid(self.head(h + first, index)).permute(0, 3, 1, 2)


def context_graph(net: ContextNet, numerics: str) -> nn.Module:
    check_numerics(numerics)
    return ReferenceContextGraph(net) if numerics == "reference" else PortableContextGraph(net)


class LutFuseGraph(nn.Module):
    """The whole LUT-Fuse pipeline: IR + visible RGB (0..255) -> fused RGB on [0, 1], unclamped."""

    def __init__(self, model: LutFuse, lowering: str, numerics: str = DEFAULT_NUMERICS) -> None:
        super().__init__()
        self.config = model.config
        self.context = context_graph(model.context, numerics)
        self.lookup = make_lookup(model.lut.detach(), lowering)
        scale = float(self.config.context_scale)
        self.pool = 1
        if scale < 1.0:
            k = round(1.0 / scale)
            if abs(k * scale - 1.0) > 1e-9:
                raise ExportError(f"context_scale {scale} cannot be exported: it must be 1/k for an integer k")
            self.pool = k  # area downscaling by 1/k == k x k average pooling when k divides H and W

    def context_map(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        x = torch.cat([vi, ir], dim=1)
        if self.pool == 1:
            return self.context(x)
        small = self.context(F.avg_pool2d(x, self.pool))
        return F.interpolate(small, size=x.shape[2:], mode="bilinear", align_corners=False)

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        vi01 = vi / 255.0
        y = luminance(vi01)
        scale = self.config.coord_scale
        top = float(self.config.nodes - 1) + 0.999999  # as LutFuse.coordinates
        parts = [y, sobel_minmax(y), self.context_map(ir, vi), ir / 255.0]
        coords = [torch.clamp(p * scale, 0.0, top) for p in parts]
        return ycbcr_to_rgb(self.lookup(coords), vi01)


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


def graph_module(model: nn.Module, lowering: str, io: str, numerics: str = DEFAULT_NUMERICS) -> nn.Module:
    """The module to trace: LUT-Fuse rebuilt for export, MMDRFuse as is, wrapped for uint8 io."""
    inner: nn.Module = LutFuseGraph(model, lowering, numerics) if isinstance(model, LutFuse) else model
    inner = inner.eval()
    for p in inner.parameters():
        p.requires_grad_(False)
    return Uint8Io(inner).eval() if io == "uint8" else inner
