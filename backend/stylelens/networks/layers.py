"""Equalised-learning-rate layers shared by the generator and the discriminator.

Weights are stored at N(0, 1) scale and multiplied by He's constant at run time ("equalized
learning rate", Karras et al. 2018), exactly as NVIDIA stores them, so converted checkpoints are
copies, not rescalings.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from stylelens.networks import ops


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalised learning rate: y = act(x @ (g * W)^T + lr_mul * b)."""

    def __init__(
        self,
        in_features: int,  # Number of input features.
        out_features: int,  # Number of output features.
        *,
        activation: str = "linear",  # "linear" or "lrelu".
        lr_multiplier: float = 1.0,  # Learning-rate multiplier (0.01 in the mapping network).
        bias_init: float = 0.0,  # Initial bias (1 for style affines: start as identity).
    ) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init) / lr_multiplier))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, in] -> [N, out]
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) * self.bias_gain
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return ops.bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        out_f, in_f = self.weight.shape
        return f"in={in_f}, out={out_f}, activation={self.activation}"


class Conv2dLayer(nn.Module):
    """Convolution with equalised learning rate and optional 2x FIR downsampling (used by D)."""

    resample_filter: torch.Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        bias: bool = True,  # Learned per-channel bias.
        activation: str = "linear",  # "linear" or "lrelu".
        down: int = 1,  # 1 or 2.
        conv_clamp: float | None = None,  # Clamp activations to +-this (None: no clamp).
    ) -> None:
        super().__init__()
        self.activation = activation
        self.down = down
        self.conv_clamp = conv_clamp
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = ops.LRELU_GAIN if activation == "lrelu" else 1.0
        self.register_buffer("resample_filter", ops.setup_filter(), persistent=False)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight * self.weight_gain
        if self.down == 2:
            x = ops.conv2d_down2(x, w, self.resample_filter)
        else:
            x = torch.nn.functional.conv2d(x, w.to(x.dtype), padding=w.shape[-1] // 2)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(
            x, self.bias, act=self.activation, gain=self.act_gain * gain, clamp=clamp
        )
