"""Loss terms for unsupervised fusion, distillation and table regularisation.

All images are N x 1 x H x W on the [0, 1] scale. Which metric each term moves: the intensity term
(towards max(ir, vi)) keeps thermal targets and bright content (SD, MI, EN); the gradient term
(towards the stronger source gradient) carries texture from both sources (SF, AG, Qabf); SSIM with
both sources keeps structure (SSIM, VIF). SSIM is pytorch-msssim's (Gaussian 11x11, σ 1.5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lutfuse_deploy.models.lut import SOBEL_X, SOBEL_Y


def sobel(x: torch.Tensor) -> torch.Tensor:
    """(gx, gy) with the Sobel kernels of docs/semantics.md §2 (replicate padding: no false edge at the border)."""
    k = torch.tensor([SOBEL_X, SOBEL_Y], dtype=x.dtype, device=x.device).unsqueeze(1)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k)


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    g = sobel(x)
    return torch.sqrt(g[:, 0:1] ** 2 + g[:, 1:2] ** 2 + 1e-12)


def ssim(x: torch.Tensor, y: torch.Tensor, per_image: bool = False) -> torch.Tensor:
    from pytorch_msssim import ssim as _ssim

    return _ssim(x, y, data_range=1.0, size_average=not per_image)


def intensity_loss(fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(fused, torch.maximum(ir, vi))


def gradient_loss(
    fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor, gain: float = 1.0, signed: bool = True
) -> torch.Tensor:
    """L1 towards the stronger source gradient (times ``gain``).

    ``signed`` (default) matches the gradient *vector* of whichever source is stronger at each
    pixel. Matching only magnitudes lets a small network invert the weaker source (dark becomes
    bright keeps |∇| but ruins SSIM, SCD and CC): we measured exactly that on the 113-parameter student.
    """
    g_ir, g_vi = sobel(ir), sobel(vi)
    m_ir = g_ir.pow(2).sum(1, keepdim=True)
    m_vi = g_vi.pow(2).sum(1, keepdim=True)
    if signed:
        target = gain * torch.where(m_ir > m_vi, g_ir, g_vi)
        return F.l1_loss(sobel(fused), target)
    target = gain * torch.sqrt(torch.maximum(m_ir, m_vi) + 1e-12)
    return F.l1_loss(sobel_magnitude(fused), target)


def ssim_loss(fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
    return 1.0 - 0.5 * (ssim(fused, ir) + ssim(fused, vi))


def fusion_terms(
    fused: torch.Tensor,
    ir: torch.Tensor,
    vi: torch.Tensor,
    weights: dict[str, float],
    perceptual: torch.nn.Module | None = None,
) -> dict[str, torch.Tensor]:
    """The weighted unsupervised fusion terms whose weight is non-zero (names as in the recipe)."""
    terms: dict[str, torch.Tensor] = {}
    if weights.get("intensity", 0.0):
        terms["intensity"] = weights["intensity"] * intensity_loss(fused, ir, vi)
    if weights.get("gradient", 0.0):
        terms["gradient"] = weights["gradient"] * gradient_loss(
            fused,
            ir,
            vi,
            weights.get("gradient_gain", 1.0),
            signed=bool(weights.get("gradient_signed", True)),
        )
    if weights.get("ssim", 0.0):
        terms["ssim"] = weights["ssim"] * ssim_loss(fused, ir, vi)
    if weights.get("perceptual", 0.0) and perceptual is not None:
        terms["perceptual"] = weights["perceptual"] * perceptual(fused, ir, vi)
    return terms


# --------------------------------------------------------------------------- distillation


def attention_map(x: torch.Tensor) -> torch.Tensor:
    """MMDRFuse's digestible form: channels summed, then L2-normalised per image (N x H·W)."""
    return F.normalize(x.sum(dim=1).flatten(1), p=2, dim=1, eps=1e-12)


def digestible_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Squared distance between attention maps, summed over pixels, averaged over the batch.

    Summing channels lets a 4-channel student match any teacher width, and normalising drops the
    absolute scale, so the student copies *where* the teacher responds, not how strongly.
    """
    return ((attention_map(student) - attention_map(teacher)) ** 2).sum(dim=1).mean()


# --------------------------------------------------------------------------- look-up table


def table_tv(table: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring nodes along each of the four axes."""
    return torch.stack([(torch.diff(table, dim=d) ** 2).mean() for d in range(table.dim())]).sum()


def table_ir_curvature(table: torch.Tensor) -> torch.Tensor:
    """Mean squared second difference along the IR axis (axis 3): zero for a table linear in IR.

    A table that bends sharply between neighbouring IR nodes turns small IR fluctuations (sensor
    noise, banding) into large output swings; a straight line in IR keeps the gain the same everywhere.
    """
    return (torch.diff(table, n=2, dim=3) ** 2).mean()


def flat_detail_loss(fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor, edge: float) -> torch.Tensor:
    """L1 between the fused and the visible Sobel gradients where both sources are flat.

    Pixels whose visible and IR Sobel magnitudes are both below ``edge`` (on the [0, 1] scale) hold
    no detail, only sensor noise, so the fused image should be as flat as the visible there. The
    gradient term asks for the stronger source's gradient, which in a flat sky is the IR camera's
    noise: this term pulls back exactly there. Real IR edges are above ``edge`` and untouched.
    """
    g_vi = sobel(vi)
    flat = (g_vi.pow(2).sum(1, keepdim=True) < edge**2) & (sobel(ir).pow(2).sum(1, keepdim=True) < edge**2)
    mask = flat.to(fused.dtype)
    diff = (sobel(fused) - g_vi).abs().sum(1, keepdim=True)
    return (mask * diff).sum() / mask.sum().clamp(min=1.0)


def table_monotonic(table: torch.Tensor, axes: tuple[int, ...] = (0, 3)) -> torch.Tensor:
    """Penalty for the fused value decreasing when the visible Y (axis 0) or the IR (axis 3) grows."""
    return torch.stack([F.relu(-torch.diff(table, dim=d)).pow(2).mean() for d in axes]).sum()


# --------------------------------------------------------------------------- dynamic refresh scores


def gmsd(x: torch.Tensor, ref: torch.Tensor, c: float = 170.0) -> torch.Tensor:
    """Gradient-magnitude similarity deviation per image (lower is better), on the 0..255 scale.

    Hand-written (15 lines; the library that has it, piq, is not a dependency): 2x2 mean,
    ↓2, Prewitt magnitude, GMS map, its standard deviation — the form MMDRFuse's refresh uses.
    """
    x, ref = x * 255.0, ref * 255.0
    avg = torch.full((1, 1, 2, 2), 0.25, dtype=x.dtype, device=x.device)
    hx = torch.tensor([[1.0, 0.0, -1.0]] * 3, dtype=x.dtype, device=x.device).div(3.0)[None, None]
    hy = hx.transpose(2, 3)

    def mag2(img: torch.Tensor) -> torch.Tensor:
        d = F.conv2d(img, avg)[:, :, ::2, ::2]
        return F.conv2d(d, hx) ** 2 + F.conv2d(d, hy) ** 2

    m1, m2 = mag2(x), mag2(ref)
    gms = (2.0 * torch.sqrt(m1 * m2 + 1e-12) + c) / (m1 + m2 + c)
    return gms.flatten(1).std(dim=1)
