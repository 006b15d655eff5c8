"""A light encoder of our own: a small residual CNN with a feature pyramid, fast on a CPU.

The layout follows pSp (Richardson et al. 2021, "Encoding in Style"): a backbone gives features
at three scales, a top-down pyramid merges them, and the coarse ws (the first ``coarse_ws``,
pose and face shape) are read from the deepest features, the middle ones from the next scale
up and the fine ones (colour, texture) from the shallowest. The output follows e4e (Tov et al.
2021, "Designing an Encoder for StyleGAN Image Manipulation"): one base latent ``w`` (``w`` in
e4e eq. 3) and per-layer offsets ``delta_i`` (``delta_0 = 0``), all relative to the
generator's ``w_avg``::

    ws[:, i] = w_avg + w + delta_i

The last linear layers start at zero, so an untrained encoder returns ``w_avg`` on every
layer. :meth:`LightEncoder.predict` returns ``w`` and the deltas separately for e4e's delta
regulariser and progressive unlocking (:mod:`stylelens.training.encoder`); ``forward`` adds
them up. Unlike pSp's one map2style head per layer, each group shares one head (a few
stride-2 convolutions and a global average) and a linear layer gives the group's layers:
that keeps a pass at 128 px in tens of milliseconds on two CPU cores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stylelens.networks.ops import assert_shape


def _norm(channels: int) -> nn.GroupNorm:
    # GroupNorm, not BatchNorm: the same function in training and serving, any batch size.
    return nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a skip; ``stride=2`` halves the resolution."""

    def __init__(self, cin: int, cout: int, *, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = _norm(cout)
        self.skip = (
            nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.norm1(self.conv1(x)), 0.2)
        y = self.norm2(self.conv2(y))
        return F.leaky_relu(y + self.skip(x), 0.2)


class StyleHead(nn.Module):
    """Features [N, C, H, W] -> ``count`` latents [N, count, w_dim] (pSp's map2style, shared
    by a group): stride-2 convolutions down to 4x4, a global average, one linear layer."""

    def __init__(self, channels: int, resolution: int, count: int, w_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        while resolution > 4:
            layers += [nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            resolution //= 2
        self.convs = nn.Sequential(*layers)
        self.count, self.w_dim = count, w_dim
        self.linear = nn.Linear(channels, count * w_dim)
        nn.init.zeros_(self.linear.weight)  # an untrained encoder returns w_avg
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.convs(x).mean(dim=(2, 3))  # [N, C]
        return self.linear(v).view(-1, self.count, self.w_dim)


class LightEncoder(nn.Module):
    """Aligned face [N, 3, R, R] in [-1, 1] -> absolute ws [N, num_ws, w_dim].

    Args:
        num_ws: latents of the generator (14 for 256 px).
        w_dim: their width.
        input_resolution: ``R``, a power of two >= 32 (callers resize; 128 for a 256 px model).
        channels: backbone widths of the four stages (resolutions R/2, R/4, R/8, R/16).
        pyramid_channels: width of the feature pyramid and of the style heads.
        coarse_ws: how many of the first ws come from the deepest features.
        middle_ws: how many of the next ones come from the middle scale; the rest are fine.
    """

    w_avg: torch.Tensor

    def __init__(
        self,
        num_ws: int,
        w_dim: int,
        input_resolution: int = 128,
        *,
        channels: tuple[int, ...] | list[int] = (32, 64, 128, 256),
        pyramid_channels: int = 128,
        coarse_ws: int = 4,
        middle_ws: int = 4,
    ) -> None:
        super().__init__()
        r = input_resolution
        if r < 32 or r & (r - 1):
            raise ValueError(f"input_resolution {r}: must be a power of two of at least 32")
        if len(channels) != 4:
            raise ValueError(f"channels {channels}: give four stage widths")
        if num_ws < 1 or coarse_ws < 1 or middle_ws < 0:
            raise ValueError("num_ws and coarse_ws must be at least 1, middle_ws at least 0")
        self.num_ws, self.w_dim, self.input_resolution = num_ws, w_dim, r
        c0, c1, c2, c3 = channels
        self.counts = (
            min(coarse_ws, num_ws),
            min(middle_ws, max(0, num_ws - coarse_ws)),
            max(0, num_ws - coarse_ws - middle_ws),
        )
        self.stem = nn.Sequential(
            nn.Conv2d(3, c0, 3, stride=2, padding=1, bias=False), _norm(c0), nn.LeakyReLU(0.2)
        )  # R/2
        self.stage0 = ResBlock(c0, c0)  # R/2
        self.stage1 = ResBlock(c0, c1, stride=2)  # R/4: fine features
        self.stage2 = ResBlock(c1, c2, stride=2)  # R/8: middle
        self.stage3 = ResBlock(c2, c3, stride=2)  # R/16: coarse
        p = pyramid_channels
        self.lat3, self.lat2, self.lat1 = (
            nn.Conv2d(c3, p, 1),
            nn.Conv2d(c2, p, 1),
            nn.Conv2d(c1, p, 1),
        )
        heads = [StyleHead(p, r // 16, self.counts[0], w_dim)]
        heads += [StyleHead(p, r // 8, self.counts[1], w_dim)] if self.counts[1] else []
        heads += [StyleHead(p, r // 4, self.counts[2], w_dim)] if self.counts[2] else []
        self.heads = nn.ModuleList(heads)
        self.register_buffer("w_avg", torch.zeros(w_dim))  # the generator's, set by the trainer

    def predict(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The parts of the latent: base ``w`` [N, w_dim] (relative to ``w_avg``) and the
        per-layer offsets ``deltas`` [N, num_ws, w_dim], whose first row is zero."""
        R = self.input_resolution
        assert_shape(img, [None, 3, R, R], "img")
        f1 = self.stage1(self.stage0(self.stem(img)))  # [N, c1, R/4, R/4]
        f2 = self.stage2(f1)  # [N, c2, R/8, R/8]
        f3 = self.stage3(f2)  # [N, c3, R/16, R/16]
        p3 = self.lat3(f3)
        p2 = self.lat2(f2) + F.interpolate(p3, scale_factor=2.0, mode="nearest")
        p1 = self.lat1(f1) + F.interpolate(p2, scale_factor=2.0, mode="nearest")
        groups = [head(x) for head, x in zip(self.heads, (p3, p2, p1), strict=False)]
        out = torch.cat(groups, dim=1)  # [N, num_ws, w_dim]
        # e4e: layer 0 carries the base w; the other rows are offsets from it.
        w = out[:, 0]
        deltas = torch.cat([torch.zeros_like(out[:, :1]), out[:, 1:]], dim=1)
        return w, deltas

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return compose_ws(self.w_avg, *self.predict(img))  # [N, num_ws, w_dim]


def compose_ws(
    w_avg: torch.Tensor, w: torch.Tensor, deltas: torch.Tensor, active: int | None = None
) -> torch.Tensor:
    """``w_avg + w + delta_i`` [N, num_ws, w_dim], with only the first ``active`` deltas
    (e4e's progressive training; None: all). The encoder's ``forward`` is ``active=None``."""
    if active is not None:
        mask = (torch.arange(deltas.shape[1], device=deltas.device) < active).to(deltas.dtype)
        deltas = deltas * mask.view(1, -1, 1)
    return w_avg + w.unsqueeze(1) + deltas
