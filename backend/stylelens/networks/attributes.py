"""The attribute network: a small CNN that reads every SynthFaces label off a face image.

It labels generated faces for InterFaceGAN directions, measures edits, and its penultimate
features define the Fréchet Attribute Distance (FAD, ``stylelens.evaluation.fad``): FID's
construction (Heusel et al. 2017) with this network in place of Inception.

Outputs are raw: continuous attributes regress their value rescaled to [0, 1] over the
attribute's documented range; each categorical attribute has one logit per class.
``decode`` turns raw outputs into labels in natural units.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from stylelens.labels import ATTRIBUTES, Attribute


@dataclass(frozen=True)
class AttributeNetConfig:
    """Architecture: input resolution and the width of each stride-2 stage."""

    resolution: int = 128
    widths: tuple[int, ...] = (24, 32, 64, 128, 256)
    feature_dim: int = 256
    attributes: tuple[str, ...] = field(default_factory=lambda: tuple(a.name for a in ATTRIBUTES))

    def __post_init__(self) -> None:
        if self.resolution % (2 ** len(self.widths)):
            raise ValueError(
                f"resolution {self.resolution} must be divisible by 2**{len(self.widths)}"
            )
        unknown = set(self.attributes) - {a.name for a in ATTRIBUTES}
        if unknown:
            raise ValueError(f"unknown attributes {sorted(unknown)}")

    @property
    def specs(self) -> list[Attribute]:
        by_name = {a.name: a for a in ATTRIBUTES}
        return [by_name[n] for n in self.attributes]

    @property
    def output_dim(self) -> int:
        return sum(len(a.classes) if a.kind == "categorical" else 1 for a in self.specs)


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    """Stride-2 conv then a 3x3 conv, each with batch norm and ReLU: halves the resolution."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class AttributeNet(nn.Module):
    """``features(img) -> [N, feature_dim]``; ``forward(img) -> raw outputs [N, output_dim]``.

    Images are float [N, 3, H, W] in [-1, 1] (the generator's range) at any square size; they
    are area-resized to ``config.resolution``.
    """

    def __init__(self, config: AttributeNetConfig) -> None:
        super().__init__()
        self.config = config
        widths = (3, *config.widths)
        self.stages = nn.Sequential(*[_stage(a, b) for a, b in itertools.pairwise(widths)])
        self.fc = nn.Linear(config.widths[-1], config.feature_dim)
        self.head = nn.Linear(config.feature_dim, config.output_dim)

    def features(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 4 or img.shape[1] != 3 or img.shape[2] != img.shape[3]:
            raise ValueError(f"expected square RGB images [N, 3, H, W], got {list(img.shape)}")
        r = self.config.resolution
        if img.shape[2] != r:
            img = F.interpolate(img, size=(r, r), mode="area" if img.shape[2] > r else "bilinear")
        x = self.stages(img).mean(dim=(2, 3))  # [N, C]
        return F.relu(self.fc(x))  # [N, feature_dim]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(img))

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw outputs -> labels [N, len(attributes)] in natural units (class index for
        categoricals), the same layout as ``labels_vector``."""
        cols, i = [], 0
        for a in self.config.specs:
            if a.kind == "categorical":
                k = len(a.classes)
                cols.append(raw[:, i : i + k].argmax(dim=1).to(raw.dtype))
                i += k
            else:
                cols.append(a.low + raw[:, i].clamp(0, 1) * (a.high - a.low))
                i += 1
        return torch.stack(cols, dim=1)


def attribute_loss(
    raw: torch.Tensor, labels: torch.Tensor, specs: list[Attribute]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean of per-attribute losses: MSE of the [0, 1]-rescaled value for continuous
    attributes, cross-entropy for categorical ones. ``labels`` as from ``labels_vector``."""
    terms: dict[str, torch.Tensor] = {}
    i = 0
    for j, a in enumerate(specs):
        if a.kind == "categorical":
            k = len(a.classes)
            terms[a.name] = F.cross_entropy(raw[:, i : i + k], labels[:, j].long())
            i += k
        else:
            target = (labels[:, j] - a.low) / (a.high - a.low)
            terms[a.name] = F.mse_loss(raw[:, i], target) * 10.0  # ~ CE scale at chance
            i += 1
    return torch.stack(list(terms.values())).mean(), terms
