"""Differentiable augmentation of the images D sees, for training on little data.

DiffAugment (Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training",
NeurIPS 2020): the same random transforms are applied to real *and* generated images right
before the discriminator, and every transform is differentiable, so G is trained through them
and D cannot overfit a few hundred images. The transforms and their ranges are DiffAugment's
(translation up to 1/8 of the image with zero padding, a cutout square of half the image side,
brightness, saturation and contrast), plus a horizontal flip and a Gaussian blur.

They are organised in "one-of" groups as in the webtoon fine-tuning recipe (seed 002:
Cutout / brightness / flip / blur in one-of groups): for every image and every group, with
probability ``p`` one transform of the group, chosen uniformly, is applied. All randomness comes
from an explicit CPU ``torch.Generator`` and the same number of draws is made on every call, so a
resumed run sees exactly the augmentations an uninterrupted one would.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stylelens.networks import ops

TRANSFORMS = ("flip", "translation", "cutout", "brightness", "saturation", "contrast", "blur")
DEFAULT_GROUPS: tuple[tuple[str, ...], ...] = (
    ("flip", "translation"),  # geometry
    ("brightness", "saturation", "contrast"),  # colour
    ("cutout", "blur"),  # occlusion and softness
)


@dataclass(frozen=True)
class AugmentConfig:
    """Which transforms, in which one-of groups, how often and how strong."""

    p: float = 0.5  # Per image and group: probability that one of the group's transforms runs.
    groups: tuple[tuple[str, ...], ...] = DEFAULT_GROUPS
    translation: float = 0.125  # Largest shift, as a fraction of the image side (DiffAugment).
    cutout: float = 0.5  # Side of the zeroed square, as a fraction of the image side.
    blur_sigma: float = 1.0  # Largest Gaussian sigma, in pixels of the training resolution.

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1:
            raise ValueError(f"augment p must be in [0, 1], got {self.p}")
        if not self.groups or any(not g for g in self.groups):
            raise ValueError("augment groups must be non-empty lists of transforms")
        unknown = sorted({t for g in self.groups for t in g} - set(TRANSFORMS))
        if unknown:
            raise ValueError(f"unknown augmentations {unknown}; choose from {list(TRANSFORMS)}")
        if not 0 <= self.translation < 0.5 or not 0 < self.cutout <= 1 or self.blur_sigma < 0:
            raise ValueError(
                "augment strengths out of range: translation in [0, 0.5), cutout in (0, 1], "
                "blur_sigma >= 0"
            )


def augment(
    images: torch.Tensor, config: AugmentConfig, *, generator: torch.Generator
) -> torch.Tensor:
    """Augment a batch the way D should see it; differentiable w.r.t. ``images``.

    Args:
        images: [N, C, H, W] in [-1, 1] (any float dtype, any device).
        config: transforms, groups and strengths.
        generator: a CPU generator; it advances by the same amount on every call.

    Returns:
        A new [N, C, H, W] tensor; images no transform picked are passed through unchanged.
    """
    ops.assert_shape(images, [None, None, None, None], "images")
    n, _, h, w = images.shape
    x = images
    for group in config.groups:
        applied = torch.rand(n, generator=generator) < config.p  # [N]
        choice = torch.randint(len(group), (n,), generator=generator)  # [N]
        for idx, name in enumerate(group):
            params = _draw(name, n, h, w, config, generator)
            mask = applied & (choice == idx)
            if mask.any():
                y = _TRANSFORM_FNS[name](x, params.to(x.device), config).to(x.dtype)
                x = torch.where(mask.to(x.device).reshape(n, 1, 1, 1), y, x)
    return x


def _draw(
    name: str, n: int, h: int, w: int, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """Per-image parameters of one transform, always drawn (fixed consumption of randomness)."""
    if name == "translation":  # integer shifts (dy, dx) in [-s, s], DiffAugment's rounding
        sy, sx = int(h * config.translation + 0.5), int(w * config.translation + 0.5)
        u = torch.rand(n, 2, generator=generator)
        return torch.stack(
            [(u[:, 0] * (2 * sy + 1)).floor() - sy, (u[:, 1] * (2 * sx + 1)).floor() - sx], 1
        )
    if name == "cutout":  # centre (cy, cx) of the square, anywhere in the image
        u = torch.rand(n, 2, generator=generator)
        return torch.stack([(u[:, 0] * h).floor(), (u[:, 1] * w).floor()], 1)
    return torch.rand(n, generator=generator)  # one uniform per image (unused by flip)


def _flip(x: torch.Tensor, params: torch.Tensor, config: AugmentConfig) -> torch.Tensor:
    return x.flip(3)


def _translation(x: torch.Tensor, params: torch.Tensor, config: AugmentConfig) -> torch.Tensor:
    """Shift by whole pixels, filling with zeros (mid-grey): two gathers on a padded copy."""
    n, c, h, w = x.shape
    py, px = int(h * config.translation + 0.5), int(w * config.translation + 0.5)
    shift = params.long()
    padded = F.pad(x, [px, px, py, py])  # [N, C, H + 2py, W + 2px]
    rows = torch.arange(h, device=x.device) + py - shift[:, :1]  # [N, H]
    cols = torch.arange(w, device=x.device) + px - shift[:, 1:]  # [N, W]
    out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, padded.shape[3]))
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def _cutout(x: torch.Tensor, params: torch.Tensor, config: AugmentConfig) -> torch.Tensor:
    h, w = x.shape[2:]
    sh, sw = int(h * config.cutout + 0.5), int(w * config.cutout + 0.5)
    top = params[:, 0:1].long() - sh // 2  # [N, 1]
    left = params[:, 1:2].long() - sw // 2
    ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    inside_y = (ys >= top) & (ys < top + sh)  # [N, H]
    inside_x = (xs >= left) & (xs < left + sw)  # [N, W]
    keep = ~(inside_y[:, :, None] & inside_x[:, None, :])  # [N, H, W]
    return x * keep[:, None].to(x.dtype)


def _brightness(x: torch.Tensor, params: torch.Tensor, config: AugmentConfig) -> torch.Tensor:
    return x + (params - 0.5).to(x.dtype).reshape(-1, 1, 1, 1)  # DiffAugment: +U(-0.5, 0.5)


def _saturation(x: torch.Tensor, params: torch.Tensor, config: AugmentConfig) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)  # per-pixel grey
    return (x - mean) * (2 * params).to(x.dtype).reshape(-1, 1, 1, 1) + mean  # x U(0, 2)


def _contrast(x: torch.Tensor, params: torch.Tensor, config: AugmentConfig) -> torch.Tensor:
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (params + 0.5).to(x.dtype).reshape(-1, 1, 1, 1) + mean  # x U(0.5, 1.5)


def _blur(x: torch.Tensor, params: torch.Tensor, config: AugmentConfig) -> torch.Tensor:
    """Separable Gaussian blur with a per-image sigma in [0, blur_sigma] (edges replicated)."""
    n, c, h, w = x.shape
    radius = max(1, math.ceil(2 * config.blur_sigma))
    sigma = (params * config.blur_sigma).clamp(min=1e-3).reshape(n, 1)  # [N, 1]
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    k = torch.exp(-0.5 * (taps / sigma) ** 2)
    k = (k / k.sum(dim=1, keepdim=True)).to(x.dtype)  # [N, 2r + 1]
    k = k.repeat_interleave(c, dim=0)  # one filter per (image, channel)
    y = F.pad(x.reshape(1, n * c, h, w), [radius] * 4, mode="replicate")
    y = F.conv2d(y, k[:, None, None, :], groups=n * c)  # horizontal
    y = F.conv2d(y, k[:, None, :, None], groups=n * c)  # vertical
    return y.reshape(n, c, h, w)


_TRANSFORM_FNS: dict[str, Callable[[torch.Tensor, torch.Tensor, AugmentConfig], torch.Tensor]] = {
    "flip": _flip,
    "translation": _translation,
    "cutout": _cutout,
    "brightness": _brightness,
    "saturation": _saturation,
    "contrast": _contrast,
    "blur": _blur,
}
