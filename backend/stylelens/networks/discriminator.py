"""StyleGAN2 discriminator, resnet architecture with minibatch standard deviation.

Karras et al., CVPR 2020 (config E/F). Names match NVIDIA's stylegan2-ada-pytorch state dicts
(``b256.fromrgb.weight``, ``b64.skip.weight``, ``b4.fc.bias``, ...) minus the fixed
``resample_filter`` buffers. Besides its logit, the network exposes its block features
(``features``) for discriminator-feature perceptual losses.

With ``c_dim`` > 0 it is a projection discriminator (Miyato & Koyama, ICLR 2018): the logit
gains the inner product of the epilogue's last features with a linear embedding of a condition
vector (for SynthFaces, the face's drawing parameters), so D can punish an image that does not
match its condition. The embedding starts at zero: a conditional D made from an unconditional
one computes the same logits until training moves it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from stylelens.networks import ops
from stylelens.networks.layers import Conv2dLayer, FullyConnectedLayer
from stylelens.networks.stylegan2 import channel_schedule


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Architecture of a StyleGAN2 resnet discriminator; stored in ``card.json``."""

    img_resolution: int = 1024  # Input resolution: 4 * 2^k, 8 to 1024.
    img_channels: int = 3
    channel_base: int = 32768  # Feature maps at resolution R: min(channel_base // R, channel_max).
    channel_max: int = 512
    conv_clamp: float | None = None
    mbstd_group_size: int = 4  # Samples per minibatch-stddev group (None-like 0: whole batch).
    mbstd_num_channels: int = 1  # Feature channels the stddev statistic is split into.
    c_dim: int = 0  # Condition vector size of a projection discriminator; 0: unconditional.

    def __post_init__(self) -> None:
        if self.c_dim < 0:
            raise ValueError(f"c_dim must be >= 0, got {self.c_dim}")
        r = self.img_resolution
        if r < 8 or r > 1024 or r & (r - 1):
            raise ValueError(f"img_resolution must be a power of two in [8, 1024], got {r}")

    @property
    def channels(self) -> dict[int, int]:
        return channel_schedule(
            self.img_resolution, channel_base=self.channel_base, channel_max=self.channel_max
        )

    @property
    def block_resolutions(self) -> list[int]:
        return sorted((r for r in self.channels if r > 4), reverse=True)


class DiscriminatorBlock(nn.Module):
    """(fromRGB at the first block) -> conv -> down-conv, plus a 1x1 down-skip, averaged."""

    def __init__(
        self,
        in_channels: int,  # 0 for the first block, which reads the image.
        tmp_channels: int,
        out_channels: int,
        *,
        img_channels: int,
        conv_clamp: float | None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(
                img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp
            )
        self.conv0 = Conv2dLayer(
            tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp
        )
        self.conv1 = Conv2dLayer(
            tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp
        )
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 0:
            x = self.fromrgb(img)
        assert x is not None
        # Residual branches are scaled by sqrt(1/2) so their sum keeps unit variance.
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv0(x)
        x = self.conv1(x, gain=math.sqrt(0.5))
        return y + x


def minibatch_stddev(x: torch.Tensor, group_size: int, num_channels: int) -> torch.Tensor:
    """Append the per-group standard deviation of the features as extra channels.

    x [N, C, H, W] -> [N, C + num_channels, H, W]. N must be divisible by the group size.
    """
    n, c, h, w = x.shape
    g = min(group_size, n) if group_size > 0 else n
    if n % g:
        raise ValueError(f"batch size {n} is not divisible by the mbstd group size {g}")
    f = num_channels
    y = x.reshape(g, -1, f, c // f, h, w)  # [G, n, F, c, H, W]
    y = (y - y.mean(dim=0)).square().mean(dim=0)  # variance over each group
    y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # [n, F]
    y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)  # [N, F, H, W]
    return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: minibatch stddev -> conv -> fc -> logit."""

    def __init__(self, in_channels: int, *, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.mbstd_group_size = config.mbstd_group_size
        self.mbstd_num_channels = config.mbstd_num_channels
        self.conv = Conv2dLayer(
            in_channels + config.mbstd_num_channels,
            in_channels,
            3,
            activation="lrelu",
            conv_clamp=config.conv_clamp,
        )
        self.fc = FullyConnectedLayer(in_channels * 16, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:  # [N, C, 4, 4] -> [N, C]
        """The last hidden layer, before the logit (what a projection discriminator projects)."""
        if self.mbstd_num_channels > 0:
            x = minibatch_stddev(x, self.mbstd_group_size, self.mbstd_num_channels)
        x = self.conv(x)
        return self.fc(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, C, 4, 4] -> [N, 1]
        return self.out(self.features(x))


class Discriminator(nn.Module):
    """img [N, img_channels, R, R] in [-1, 1] (and, with ``c_dim``, a condition [N, c_dim])
    -> realness logit [N, 1]."""

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        self.img_resolution = config.img_resolution
        self.block_resolutions = config.block_resolutions
        channels = config.channels
        for res in self.block_resolutions:
            block = DiscriminatorBlock(
                channels[res] if res < config.img_resolution else 0,
                channels[res],
                channels[res // 2],
                img_channels=config.img_channels,
                conv_clamp=config.conv_clamp,
            )
            setattr(self, f"b{res}", block)
        self.b4 = DiscriminatorEpilogue(channels[4], config=config)
        if config.c_dim:
            # logit += <embed(c), h> / sqrt(C), h the epilogue's last features [N, C]
            self.embed = FullyConnectedLayer(config.c_dim, channels[4])
            nn.init.zeros_(self.embed.weight)

    def features(self, img: torch.Tensor) -> dict[int, torch.Tensor]:
        """Output of every block, keyed by the block's input resolution (R -> [N, C, R/2, R/2])."""
        ops.assert_shape(img, [None, self.config.img_channels, self.img_resolution, None], "img")
        feats: dict[int, torch.Tensor] = {}
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img)
            feats[res] = x
        return feats

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        c_dim = self.config.c_dim
        if (c is None) != (c_dim == 0):
            want = f"a condition [N, {c_dim}]" if c_dim else "no condition"
            raise ValueError(f"this discriminator takes {want}")
        h = self.b4.features(self.features(img)[4 * 2])
        logit = self.b4.out(h)
        if c is None:
            return logit
        ops.assert_shape(c, [img.shape[0], c_dim], "condition")
        projection = (self.embed(c.to(h.dtype)) * h).sum(dim=1, keepdim=True)
        return logit + projection / math.sqrt(h.shape[1])
