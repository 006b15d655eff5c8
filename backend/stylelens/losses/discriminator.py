"""Discriminator-feature distance: compare two images in the model's own D feature space.

An LPIPS-like distance with uniform weights: each D block's features are unit-normalised
over channels, squared differences summed over channels, averaged over positions and blocks.
Needs no extra download for models that ship ``discriminator.safetensors``.
"""

from __future__ import annotations

import weakref

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
        # Features of the last constant ``y`` (an inversion's target is the same every step).
        self._cached: tuple[weakref.ref[torch.Tensor], int, dict[int, torch.Tensor]] | None = None

    def _features(self, img: torch.Tensor) -> dict[int, torch.Tensor]:
        res = self.D.img_resolution
        if img.shape[-1] != res:
            img = F.interpolate(img.float(), size=(res, res), mode="bilinear", align_corners=False)
        return self.D.features(img.float())

    def _target_features(self, y: torch.Tensor) -> dict[int, torch.Tensor]:
        if y.requires_grad:
            return self._features(y)
        cached = self._cached
        if cached is None or cached[0]() is not y or cached[1] != y._version:
            with torch.no_grad():
                cached = self._cached = (weakref.ref(y), y._version, self._features(y))
        return cached[2]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx, fy = self._features(x), self._target_features(y)
        dists = [(_unit(fx[r]) - _unit(fy[r])).square().sum(1).mean(dim=(1, 2)) for r in fx]
        return torch.stack(dists, dim=1).mean(dim=1)
