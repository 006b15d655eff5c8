"""pSp and e4e: an IR-SE50 backbone, a three-level feature pyramid and one head per w.

pixel2style2pixel (Richardson et al. 2021, "Encoding in Style") maps each of the ``num_ws``
latents from one level of a feature pyramid built on an IR-SE50 face-recognition backbone
(ArcFace's ResNet-50 variant with squeeze-and-excitation units): the first 3 ws (coarse) from
the deepest features (R/16), ws 3..6 (middle) from R/8, the rest (fine) from R/4.
encoder4editing (Tov et al. 2021, "Designing an Encoder for StyleGAN Image Manipulation")
keeps the same network but reads it as one w plus offsets: ``ws[i] = w0 + delta_i`` with
``w0`` the first head's output and ``delta_0 = 0`` (eq. 4 of the e4e paper), which keeps the
result near W, where edits behave.

Both add the generator's average latent (pSp's ``start_from_latent_avg``), stored here as the
``latent_avg`` buffer ``[num_ws, w_dim]``, so ``forward`` returns absolute ws. Parameter names
are those of the official checkpoints' ``encoder.*`` entries, so converting one is a copy
(:mod:`stylelens.checkpoints.encoder_pt`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stylelens.networks import ops
from stylelens.networks.layers import FullyConnectedLayer

IR_SE50_UNITS = (3, 4, 14, 3)  # units per stage of the 50-layer IR-SE backbone
IR_SE50_CHANNELS = (64, 128, 256, 512)  # output channels per stage
SE_REDUCTION = 16  # squeeze-and-excitation bottleneck ratio
COARSE_END, MIDDLE_END = 3, 7  # ws [0, 3) from R/16 features, [3, 7) from R/8, the rest R/4


class SEModule(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): per-channel gates from global average pooling."""

    def __init__(self, channels: int, reduction: int = SE_REDUCTION) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, C, H, W] -> same
        gate = self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class IRSEUnit(nn.Module):
    """ArcFace's "improved residual" unit with SE: BN-conv-PReLU-conv(stride)-BN-SE + shortcut.

    The shortcut is a 1x1 strided conv + BN when the width changes, else plain subsampling
    (a 1x1 max pool, as in the original, which keeps every ``stride``-th pixel).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.shortcut_layer: nn.Module
        if in_channels == out_channels:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False),
            nn.PReLU(out_channels),
            nn.Conv2d(out_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            SEModule(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, Cin, H, W] -> [N, Cout, H/s, W/s]
        return self.res_layer(x) + self.shortcut_layer(x)


class GradualStyleBlock(nn.Module):
    """One w from a feature map: log2(size) stride-2 3x3 convs down to 1x1, then a linear."""

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(int(math.log2(size))):
            layers += [nn.Conv2d(channels, channels, 3, 2, 1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = FullyConnectedLayer(channels, channels)  # pSp's EqualLinear, lr_mul 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, C, size, size] -> [N, C]
        return self.linear(self.convs(x).flatten(1))


def _upsample_add(top: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """FPN merge (Lin et al. 2017), bilinear with aligned corners as in pSp."""
    size = lateral.shape[-2:]
    return F.interpolate(top, size=size, mode="bilinear", align_corners=True) + lateral


class _PyramidEncoder(nn.Module):
    """The network pSp and e4e share; subclasses say how the heads' outputs become ws."""

    latent_avg: torch.Tensor

    def __init__(
        self,
        *,
        num_ws: int,
        w_dim: int = 512,
        input_resolution: int = 256,  # pixels; the official encoders take 256 x 256
        stage_units: Sequence[int] = IR_SE50_UNITS,
        stage_channels: Sequence[int] = IR_SE50_CHANNELS,
    ) -> None:
        super().__init__()
        units, channels = tuple(stage_units), tuple(stage_channels)
        if len(units) != 4 or len(channels) != 4 or min(units) < 1:
            raise ValueError(f"need 4 stages of >= 1 unit, got {units} units, {channels} channels")
        if channels[-1] != w_dim:
            raise ValueError(f"the last stage's width ({channels[-1]}) must equal w_dim={w_dim}")
        if min(channels) < SE_REDUCTION:
            raise ValueError(f"stage widths must be at least {SE_REDUCTION}, got {channels}")
        if input_resolution < 32 or input_resolution & (input_resolution - 1):
            raise ValueError(f"input_resolution must be a power of two >= 32: {input_resolution}")
        if num_ws < 1:
            raise ValueError(f"num_ws must be positive, got {num_ws}")
        self.num_ws, self.w_dim, self.input_resolution = num_ws, w_dim, input_resolution

        self.input_layer = nn.Sequential(
            nn.Conv2d(3, channels[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.PReLU(channels[0]),
        )
        body: list[nn.Module] = []
        in_ch = channels[0]
        for n, out_ch in zip(units, channels, strict=True):
            body += [IRSEUnit(in_ch, out_ch, 2)] + [
                IRSEUnit(out_ch, out_ch, 1) for _ in range(n - 1)
            ]
            in_ch = out_ch
        self.body = nn.Sequential(*body)
        ends = [sum(units[: k + 1]) - 1 for k in range(4)]
        self._taps = (ends[1], ends[2], ends[3])  # unit outputs at R/4, R/8, R/16

        sizes = [input_resolution // 16] * COARSE_END + [input_resolution // 8] * (
            MIDDLE_END - COARSE_END
        )
        sizes += [input_resolution // 4] * max(0, num_ws - MIDDLE_END)
        self.styles = nn.ModuleList(GradualStyleBlock(w_dim, s) for s in sizes[:num_ws])
        self.latlayer1 = nn.Conv2d(channels[2], w_dim, 1)  # R/8 features -> pyramid width
        self.latlayer2 = nn.Conv2d(channels[1], w_dim, 1)  # R/4 features -> pyramid width
        self.register_buffer("latent_avg", torch.zeros(num_ws, w_dim))

    def pyramid(self, img: torch.Tensor) -> list[torch.Tensor]:
        """The feature map each head reads, one per w, from ``img`` ``[N, 3, R, R]``."""
        r = self.input_resolution
        ops.assert_shape(img, [None, 3, r, r], "img")
        x = self.input_layer(img.to(self.latent_avg.dtype))
        taps = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self._taps:
                taps.append(x)
        c1, c2, c3 = taps  # [N, C2, R/4, R/4], [N, C3, R/8, R/8], [N, w_dim, R/16, R/16]
        features = [c3] * min(self.num_ws, COARSE_END)
        if self.num_ws > COARSE_END:
            p2 = _upsample_add(c3, self.latlayer1(c2))  # [N, w_dim, R/8, R/8]
            features += [p2] * (min(self.num_ws, MIDDLE_END) - COARSE_END)
            if self.num_ws > MIDDLE_END:
                p1 = _upsample_add(p2, self.latlayer2(c1))  # [N, w_dim, R/4, R/4]
                features += [p1] * (self.num_ws - MIDDLE_END)
        return features

    def head_outputs(self, img: torch.Tensor) -> torch.Tensor:
        """Each head on its level of the pyramid: ``[N, num_ws, w_dim]``, before latent_avg."""
        features = self.pyramid(img)
        return torch.stack([head(f) for head, f in zip(self.styles, features, strict=True)], 1)


class PSPEncoder(_PyramidEncoder):
    """pSp's GradualStyleEncoder: ``ws[i] = head_i(features) + latent_avg[i]``."""

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """``img`` ``[N, 3, R, R]`` in [-1, 1] -> absolute ``ws`` ``[N, num_ws, w_dim]``."""
        return self.head_outputs(img) + self.latent_avg


class E4EEncoder(_PyramidEncoder):
    """e4e's Encoder4Editing: ``ws[i] = w0 + delta_i + latent_avg[i]``, ``delta_0 = 0``."""

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """``img`` ``[N, 3, R, R]`` in [-1, 1] -> absolute ``ws`` ``[N, num_ws, w_dim]``."""
        out = self.head_outputs(img)  # out[:, 0] = w0, out[:, i > 0] = delta_i
        w0 = out[:, :1]
        deltas = torch.cat([torch.zeros_like(w0), out[:, 1:]], dim=1)
        return w0 + deltas + self.latent_avg
