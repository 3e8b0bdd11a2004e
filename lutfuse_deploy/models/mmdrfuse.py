"""MMDRFuse: the 113-parameter student and its 556,489-parameter dense teacher (docs/semantics.md §3).

Both take IR and visible *gray* (N x 1 x H x W, float on 0..255; the visible gray is PIL's ITU-R
601-2 luma rounded to uint8, done by the image loader) and return the raw tanh output. Module
names match the official state_dicts (``conv1.1.*`` ...) so official weights load strictly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv(cin: int, cout: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3, stride=stride)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class MMDRStudent(nn.Module):
    """concat(ir, vi) -> pad, conv 2->4, ReLU -> pad, conv 4->1, tanh. 113 parameters."""

    kind = "mmdrfuse-student"

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _conv(2, 4)
        self.conv2 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(4, 1, 3), nn.Tanh())

    def forward_with_features(self, ir: torch.Tensor, vi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(output, 4-channel feature) — the feature is what digestible distillation matches."""
        feat = self.conv1(torch.cat([ir, vi], dim=1) / 255.0)
        return self.conv2(feat), feat

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        return self.forward_with_features(ir, vi)[0]


class MMDRTeacher(nn.Module):
    """Dense encoder-decoder with one stride-2 level and a bicubic x2 upsample: needs even H and W."""

    kind = "mmdrfuse-teacher"

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _conv(2, 32)
        self.conv2 = _conv(32, 32)
        self.conv3 = _conv(64, 64, stride=2)
        self.conv4 = _conv(64, 64)
        self.conv5 = _conv(128, 64)
        self.conv6 = _conv(192, 64)
        self.conv66 = _conv(64, 64)
        self.conv55 = _conv(128, 64)
        self.conv44 = _conv(128, 64)
        self.conv33 = _conv(128, 64)
        self.conv22 = _conv(96, 32)
        self.conv11 = _conv(64, 4)
        self.conv00 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(4, 1, 3), nn.Tanh())

    def forward_with_features(self, ir: torch.Tensor, vi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(output, 4-channel ReLU feature of conv11) — the feature the student distils from."""
        g1 = self.conv1(torch.cat([ir, vi], dim=1) / 255.0)
        g2 = self.conv2(g1)
        g3 = self.conv3(torch.cat([g1, g2], 1))
        g4 = self.conv4(g3)
        g5 = self.conv5(torch.cat([g3, g4], 1))
        g6 = self.conv6(torch.cat([g3, g4, g5], 1))
        d = self.conv66(g6)
        d = self.conv55(torch.cat([g5, d], 1))
        d = self.conv44(torch.cat([g4, d], 1))
        d = self.conv33(torch.cat([g3, d], 1))
        d = F.interpolate(d, scale_factor=2.0, mode="bicubic", align_corners=False)
        d = self.conv22(torch.cat([g2, d], 1))
        feat = self.conv11(torch.cat([g1, d], 1))
        return self.conv00(feat), feat

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        return self.forward_with_features(ir, vi)[0]
