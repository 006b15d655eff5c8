"""LPIPS with VGG16 features (Zhang et al. 2018), read from plain tensors.

Weights live in ``models/lpips-vgg16/weights.safetensors`` (``stylelens fetch lpips-vgg16``
writes it): torchvision's VGG16 names for the convolutions (``features.0.weight`` ...
``features.28.bias``) and LPIPS's names for its linear heads (``lin0.model.1.weight`` ...
``lin4.model.1.weight``, each [1, C, 1, 1]). Nothing is unpickled and nothing executed.

The same VGG16 also gives the plain feature distance of seed 001 (:class:`VGGFeatureDistance`):
||F(x) - F(y)||^2 summed over the features, with lambda_vgg = 5e-5 in its objective.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from stylelens.errors import CheckpointError

LPIPS_DIR = "lpips-vgg16"
LPIPS_FILE = "weights.safetensors"
# VGG16 "features" layout: conv indices, and the relu outputs LPIPS reads (relu1_2 ... relu5_3).
VGG_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
VGG_POOLS_BEFORE = (5, 10, 17, 24)  # a 2x2 max pool runs before these convs
VGG_TAPS = (2, 7, 14, 21, 28)  # LPIPS taps the relu after these convs
VGG_CHANNELS = {
    0: (3, 64), 2: (64, 64), 5: (64, 128), 7: (128, 128), 10: (128, 256), 12: (256, 256),
    14: (256, 256), 17: (256, 512), 19: (512, 512), 21: (512, 512), 24: (512, 512),
    26: (512, 512), 28: (512, 512),
}  # fmt: skip
# LPIPS's input normalisation (its "ScalingLayer"), for images in [-1, 1].
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
MAX_INPUT = 256  # larger images are area-downsampled to 256 first, as the NVIDIA projector does


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Every tensor the weights file must hold, with its shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    for idx, (cin, cout) in VGG_CHANNELS.items():
        shapes[f"features.{idx}.weight"] = (cout, cin, 3, 3)
        shapes[f"features.{idx}.bias"] = (cout,)
    for k, tap in enumerate(VGG_TAPS):
        shapes[f"lin{k}.model.1.weight"] = (1, VGG_CHANNELS[tap][1], 1, 1)
    return shapes


class VGG16Features(nn.Module):
    """VGG16's convolutional trunk up to relu5_3; returns the five LPIPS taps."""

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.convs = nn.ModuleDict()
        for idx, (cin, cout) in VGG_CHANNELS.items():
            conv = nn.Conv2d(cin, cout, 3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(state[f"features.{idx}.weight"])
                conv.bias.copy_(state[f"features.{idx}.bias"])  # type: ignore[union-attr]
            self.convs[str(idx)] = conv
        shift = torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1)
        scale = torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1)
        self.register_buffer("shift", shift)
        self.register_buffer("scale", scale)
        self.requires_grad_(False)

    def forward(self, img: torch.Tensor) -> list[torch.Tensor]:
        """img [N, 3, H, W] in [-1, 1] -> five feature maps."""
        if img.shape[-1] > MAX_INPUT:
            img = F.adaptive_avg_pool2d(img, MAX_INPUT)
        x = (img.float() - self.shift) / self.scale
        taps = []
        for idx in VGG_CONVS:
            if idx in VGG_POOLS_BEFORE:
                x = F.max_pool2d(x, 2)
            x = F.relu(self.convs[str(idx)](x))
            if idx in VGG_TAPS:
                taps.append(x)
        return taps


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Load and check the LPIPS-VGG16 weights file. Raises CheckpointError."""
    try:
        state = load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(
            f"{path} not found; run `stylelens fetch lpips-vgg16` to get the LPIPS weights"
        ) from None
    except Exception as e:
        raise CheckpointError(f"{path} is not a safetensors file: {e}") from None
    want = expected_shapes()
    problems = [k for k in want if k not in state] + [k for k in state if k not in want]
    problems += [k for k in want.keys() & state.keys() if tuple(state[k].shape) != want[k]]
    if problems:
        raise CheckpointError(f"{path}: not LPIPS-VGG16 weights (bad or missing {problems[:4]})")
    return {k: v.float() for k, v in state.items()}


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)


class LPIPS(nn.Module):
    """Learned perceptual distance, [N]; 0 for identical images."""

    name = "lpips-vgg16"

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.vgg = VGG16Features(state)
        lins = [state[f"lin{k}.model.1.weight"] for k in range(len(VGG_TAPS))]
        self.lins = nn.ParameterList(nn.Parameter(w, requires_grad=False) for w in lins)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx, fy = self.vgg(x), self.vgg(y)
        total = torch.zeros(x.shape[0], device=x.device)
        for a, b, lin in zip(fx, fy, self.lins, strict=True):
            d = (_unit(a) - _unit(b)).square()  # [N, C, H, W]
            total = total + F.conv2d(d, lin).mean(dim=(1, 2, 3))
        return total


class VGGFeatureDistance(nn.Module):
    """Seed 001's ||F(x) - F(y)||^2: squared VGG16 feature differences, summed, [N]."""

    name = "vgg16-features"

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.vgg = VGG16Features(state)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx, fy = self.vgg(x), self.vgg(y)
        return sum(
            ((a - b).square().flatten(1).sum(1) for a, b in zip(fx, fy, strict=True)),
            torch.zeros(x.shape[0], device=x.device),
        )
