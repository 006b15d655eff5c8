"""What an edit really changes, read off by the attribute network.

Scores are on one scale for every attribute: a continuous attribute is its value as a
fraction of its documented range (the network's raw output), a binary one (glasses, beard:
"any" against "none") the network's probability. A direction's quality is the mean change of
every score between original and edited faces.

The attribute network has no label for clothes, so an edit could recolour them unseen; the
mean colour of the image's bottom band (``clothes_colour``), where the shoulders and clothes
are in aligned portraits, is measured alongside the scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from stylelens.directions.core import Direction
from stylelens.directions.edit import apply_directions
from stylelens.networks.attributes import AttributeNet
from stylelens.networks.runtime import autocast
from stylelens.networks.stylegan2 import Generator

IDENTITY_ATTRIBUTES = ("face_width", "skin_tone")  # must not move beyond their label noise
SKIPPED_KINDS = ("hair_style",)  # five-way categorical: no single score
CLOTHES_BAND = 0.15  # bottom share of the image: shoulders and clothes


def score_names(net: AttributeNet) -> list[str]:
    """Continuous attributes, then categoricals whose first class is "none" (binary scores)."""
    specs = net.config.specs
    cont = [a.name for a in specs if a.kind == "continuous"]
    binary = [a.name for a in specs if a.kind == "categorical" and a.classes[0] == "none"]
    return cont + binary


def binary_attributes(net: AttributeNet) -> set[str]:
    return {a.name for a in net.config.specs if a.kind == "categorical"}


def attribute_scores(net: AttributeNet, img: torch.Tensor) -> torch.Tensor:
    """img [N, 3, H, W] in [-1, 1] -> scores [N, len(score_names(net))] (see module doc)."""
    raw = net(img.float())
    cont, binary, i = [], [], 0
    for a in net.config.specs:
        if a.kind == "categorical":
            k = len(a.classes)
            if a.classes[0] == "none":
                binary.append(1 - raw[:, i : i + k].softmax(dim=1)[:, 0])
            i += k
        else:
            cont.append(raw[:, i])
            i += 1
    return torch.stack(cont + binary, dim=1)


def clothes_colour(img: torch.Tensor) -> torch.Tensor:
    """img [N, 3, H, W] in [-1, 1] -> [N, 3] mean RGB in [0, 1] of the bottom ``CLOTHES_BAND``
    of the rows."""
    rows = max(1, round(img.shape[2] * CLOTHES_BAND))
    return (img[:, :, -rows:].float().mean(dim=(2, 3)) + 1) / 2


@torch.no_grad()
def render_measures(
    G: Generator,
    net: AttributeNet,
    ws: torch.Tensor,
    *,
    batch: int = 16,
    precision: str = "bfloat16",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores [N, A], clothes colours [N, 3]) of the faces ws [N, num_ws, w_dim] render to
    (const noise)."""
    device = next(G.parameters()).device
    scores, clothes = [], []
    for start in range(0, len(ws), batch):
        with autocast(device, precision):
            img = G.synthesis(ws[start : start + batch].to(device)).float()
        scores.append(attribute_scores(net, img).cpu())
        clothes.append(clothes_colour(img).cpu())
    return torch.cat(scores), torch.cat(clothes)


def render_scores(
    G: Generator,
    net: AttributeNet,
    ws: torch.Tensor,
    *,
    batch: int = 16,
    precision: str = "bfloat16",
) -> torch.Tensor:
    """Scores [N, A] of the faces ws [N, num_ws, w_dim] render to (const noise)."""
    return render_measures(G, net, ws, batch=batch, precision=precision)[0]


def label_noise(
    net_metrics: dict[str, dict[str, float]], scores: torch.Tensor, names: Sequence[str]
) -> dict[str, float]:
    """Per-face error of each score: sqrt(1 - R^2) * spread for continuous attributes (the
    residual RMS that the held-out R^2 implies), 1 - accuracy for binary ones."""
    out = {}
    for j, name in enumerate(names):
        m = net_metrics.get(name, {})
        if "r2" in m:
            out[name] = math.sqrt(max(0.0, 1 - m["r2"])) * float(scores[:, j].std())
        else:
            out[name] = 1 - m.get("accuracy", 0.0)
    return out


@dataclass(frozen=True)
class EditEffect:
    """Mean score changes of one edit over a set of faces."""

    direction: str
    amount: float  # slider units
    mean: dict[str, float]  # attribute -> mean change (signed)
    target: str | None  # the attribute the direction is meant to change
    clothes: float | None = None  # mean per-face |change| of the clothes' RGB colour

    def own(self) -> float:
        return self.mean[self.target] if self.target else 0.0

    def off_target(self) -> dict[str, float]:
        return {k: v for k, v in self.mean.items() if k != self.target}

    def largest_off(self) -> tuple[str, float]:
        name = max(self.off_target(), key=lambda k: abs(self.mean[k]))
        return name, self.mean[name]

    def selectivity(self) -> float:
        """|own change| / |largest off-target change|."""
        return abs(self.own()) / max(abs(self.largest_off()[1]), 1e-9)

    def strongest(self, k: int = 3) -> list[tuple[str, float]]:
        top = sorted(self.mean.items(), key=lambda kv: -abs(kv[1]))
        return top[:k]


def measure_edit(
    G: Generator,
    net: AttributeNet,
    ws: torch.Tensor,
    base: torch.Tensor,
    direction: Direction,
    amount: float,
    *,
    names: Sequence[str],
    target: str | None = None,
    batch: int = 16,
    precision: str = "bfloat16",
    base_clothes: torch.Tensor | None = None,
) -> EditEffect:
    """Mean score change of ``direction`` at ``amount`` over faces ws with scores ``base``;
    given the faces' clothes colours [N, 3], also the mean size (RGB distance, 0-1 scale) of
    their change."""
    edited = apply_directions(ws, [(direction, amount)])
    scores, clothes = render_measures(G, net, edited, batch=batch, precision=precision)
    delta = (scores - base).mean(dim=0)
    moved = None
    if base_clothes is not None:
        moved = float((clothes - base_clothes).norm(dim=1).mean())
    return EditEffect(
        direction=direction.name,
        amount=amount,
        mean={n: float(delta[j]) for j, n in enumerate(names)},
        target=target,
        clothes=moved,
    )


def describe_effect(effect: EditEffect, k: int = 2, *, floor: float = 0.01) -> str:
    """A short name from the strongest changes, e.g. ``yaw+ (0.21), light- (0.04)``."""
    parts = [
        f"{n}{'+' if v > 0 else '-'} ({abs(v):.2f})"
        for n, v in effect.strongest(k)
        if abs(v) >= floor
    ]
    return ", ".join(parts) or "no measured attribute"
