"""Optional VGG-19 perceptual term, from a weights file the user gives (nothing is downloaded).

The layer list is VGG-19's ``features`` (configuration "E"), written out here because torchvision
is not a dependency; the file may be torchvision's ``vgg19`` state_dict (``features.N.*`` keys, as
.pth or .safetensors). Classifier weights in the file are ignored.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lutfuse_deploy.errors import ConfigError

_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
# Cut points into ``features`` (after relu1_2, relu2_2, relu3_4, relu4_4, relu5_4), as MMDRFuse uses.
CUTS = (4, 9, 18, 27, 36)
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def vgg19_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for v in _CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=False)]
            cin = int(v)
    return nn.Sequential(*layers)


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(f"loss.vgg_weights: {path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load and safetensors raise many unrelated types
        raise ConfigError(
            f"loss.vgg_weights: {path}: cannot read ({str(exc).splitlines()[0][:160]})"
        ) from None
    if not isinstance(state, dict):
        raise ConfigError(f"loss.vgg_weights: {path}: expected a state_dict")
    return {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}


class Perceptual(nn.Module):
    """Mean over five depths of MSE(features(F), max(features(ir), features(vi)))."""

    mean: torch.Tensor
    std: torch.Tensor
    features: nn.Sequential

    def __init__(self, weights: str | Path, depths: tuple[int, ...] = CUTS) -> None:
        super().__init__()
        features = nn.Sequential(*list(vgg19_features())[: max(depths)])
        state = _read_state(Path(weights))
        wanted = set(features.state_dict())
        try:  # only the layers up to the deepest tap are needed; the file may hold the whole network
            features.load_state_dict({k: v for k, v in state.items() if k in wanted}, strict=True)
        except RuntimeError as exc:
            msg = str(exc).splitlines()[0][:160]
            raise ConfigError(f"loss.vgg_weights: not VGG-19 features ({msg})") from None
        features.eval().requires_grad_(False)
        self.features = features
        self.depths = depths
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1))

    def _taps(self, gray01: torch.Tensor) -> list[torch.Tensor]:
        x = (gray01.expand(-1, 3, -1, -1) - self.mean) / self.std
        taps = []
        for i, layer in enumerate(list(self.features), start=1):
            x = layer(x)
            if i in self.depths:
                taps.append(x)
        return taps

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            targets = [torch.maximum(a, b) for a, b in zip(self._taps(ir), self._taps(vi))]
        losses = [F.mse_loss(f, t) for f, t in zip(self._taps(fused), targets)]
        return torch.stack(losses).mean()
