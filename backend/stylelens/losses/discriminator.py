"""Discriminator-feature distance: compare two images in the model's own D feature space.

An LPIPS-like distance with uniform weights: each D block's features are unit-normalised
over channels, squared differences summed over channels, averaged over positions and blocks.
Needs no extra download for models that ship ``discriminator.safetensors``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stylelens.networks.discriminator import Discriminator


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)


class DiscriminatorFeatureDistance(nn.Module):
    """Distance [N] between images in [-1, 1]; images of another size are resized to D's."""

    name = "d-features"

    def __init__(self, D: Discriminator) -> None:
        super().__init__()
        self.D = D.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        res = self.D.img_resolution
        if x.shape[-1] != res:
            x = F.interpolate(x.float(), size=(res, res), mode="bilinear", align_corners=False)
        if y.shape[-1] != res:
            y = F.interpolate(y.float(), size=(res, res), mode="bilinear", align_corners=False)
        fx, fy = self.D.features(x.float()), self.D.features(y.float())
        dists = [(_unit(fx[r]) - _unit(fy[r])).square().sum(1).mean(dim=(1, 2)) for r in fx]
        return torch.stack(dists, dim=1).mean(dim=1)
