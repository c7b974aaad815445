"""VGG in plain torch (no torchvision) with torchvision's module layout, and a safe loader for its weights.

``features`` is the conv stack (conv 3×3 + ReLU per width, ``"M"`` = 2×2 max-pool), followed by a 7×7
adaptive average pool and ``classifier`` = fc6, ReLU, dropout, fc7, ReLU, dropout: the fc7 features VSE++
uses. torchvision's last layer (``classifier.6``, the 1000-way ImageNet fc8) is not part of the model;
:func:`load_torchvision_vgg` drops it from a torchvision state dict and requires every other key to match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

__all__ = ["FC8_KEYS", "VggFeatures", "load_torchvision_vgg", "read_state_dict"]

FC8_KEYS = ("classifier.6.weight", "classifier.6.bias")
"""torchvision's ImageNet classifier layer, which VSE++ removes (it keeps fc7)."""


class VggFeatures(nn.Module):
    """VGG image tower: (B, 3, S, S) -> fc7 features (B, ``fc_size``), keys as in torchvision's ``vgg19``."""

    def __init__(self, layers: Sequence[int | str], fc_size: int = 4096, dropout: float = 0.5) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        channels = 3
        for item in layers:
            if item == "M":
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                modules += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = int(item)
        self.features = nn.Sequential(*modules)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, fc_size),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(fc_size, fc_size),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
        )
        self.output_size = fc_size

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(pixel_values))
        return self.classifier(torch.flatten(x, 1))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a torch file (``torch.load(weights_only=True)``: no pickle)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no VGG weights file at {file}; pass a .safetensors or .pth state dict file")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file  # lazy: only for safetensors files

        return load_file(str(file))
    state = torch.load(str(file), map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{file} holds a {type(state).__name__}, not a state dict of tensors")
    return dict(state)


def load_torchvision_vgg(module: VggFeatures, state_dict: Mapping[str, torch.Tensor] | str | Path) -> None:
    """Load a torchvision-layout VGG state dict (or a file of one) into ``module``; fc8 is dropped.

    Every other key must match exactly (names and shapes): a missing or unexpected key raises
    ``ValueError`` naming the keys, so a VGG16 file or a different layout is never half-loaded.
    """
    state = read_state_dict(state_dict) if isinstance(state_dict, (str, Path)) else dict(state_dict)
    state = {k: v for k, v in state.items() if k not in FC8_KEYS}
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"not a torchvision VGG state dict of this layout: missing keys {missing[:6]}, unexpected keys "
            f"{unexpected[:6]}; check vgg_layers (VGG19 has 16 convs) against the file"
        )
    wrong = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if wrong:
        k = wrong[0]
        raise ValueError(
            f"VGG weight {k} has shape {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the model "
            "(check vgg_layers and vgg_fc_size)"
        )
    module.load_state_dict(state, strict=True)
