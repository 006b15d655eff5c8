"""StyleGAN2 generator (config E/F, skip architecture) in pure PyTorch.

Karras et al., "Analyzing and Improving the Image Quality of StyleGAN", CVPR 2020. Parameter and
buffer names match NVIDIA's stylegan2-ada-pytorch state dicts (``mapping.fc0.weight``,
``synthesis.b64.conv0.affine.bias``, ...) except the fixed [1, 3, 3, 1] ``resample_filter``
buffers, which are rebuilt here and not stored.

Layout: mapping -> synthesis layers -> blocks -> synthesis network -> generator. The synthesis
network can run block by block and stop at any resolution (``iter_blocks``, ``run_until``); the
preview heads and the progressive inversion tap it there.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
from torch import nn

from stylelens.networks import ops
from stylelens.networks.layers import FullyConnectedLayer

NoiseMode = Literal["const", "random", "none"]
NOISE_MODES: tuple[str, ...] = ("const", "random", "none")


def channel_schedule(resolution: int, *, channel_base: int, channel_max: int) -> dict[int, int]:
    """Feature maps per resolution, NVIDIA's rule: min(channel_base // res, channel_max)."""
    log2 = int(math.log2(resolution))
    return {2**i: min(channel_base // 2**i, channel_max) for i in range(2, log2 + 1)}


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a StyleGAN2 generator; stored in a model's ``card.json``."""

    z_dim: int = 512  # Input latent (Z) dimensionality.
    w_dim: int = 512  # Intermediate latent (W) dimensionality.
    img_resolution: int = 1024  # Output resolution: 4 * 2^k, at most 1024.
    img_channels: int = 3  # Output colour channels.
    mapping_layers: int = 8  # Depth of the mapping network.
    mapping_lr_multiplier: float = 0.01  # Equalised-lr multiplier of the mapping layers.
    channel_base: int = 32768  # Feature maps at resolution R: min(channel_base // R, channel_max).
    channel_max: int = 512
    conv_clamp: float | None = None  # Activation clamp (256 for nets trained with the ADA code).

    def __post_init__(self) -> None:
        r = self.img_resolution
        if r < 4 or r > 1024 or r & (r - 1):
            raise ValueError(f"img_resolution must be a power of two in [4, 1024], got {r}")
        for name in ("z_dim", "w_dim", "img_channels", "mapping_layers", "channel_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if min(self.channels.values()) < 1:
            raise ValueError(
                f"channel_base={self.channel_base} leaves no channels at {r}x{r}; raise it"
            )

    @property
    def channels(self) -> dict[int, int]:
        return channel_schedule(
            self.img_resolution, channel_base=self.channel_base, channel_max=self.channel_max
        )

    @property
    def block_resolutions(self) -> list[int]:
        return list(self.channels)

    @property
    def num_ws(self) -> int:
        # b4 has one conv, every other block two; the last toRGB takes one more w.
        return 2 * len(self.block_resolutions)


# ----------------------------------------------------------------------------
# Mapping network


class MappingNetwork(nn.Module):
    """z [N, z_dim] -> ws [N, num_ws, w_dim], with truncation toward ``w_avg``."""

    w_avg: torch.Tensor

    def __init__(
        self, *, z_dim: int, w_dim: int, num_ws: int, num_layers: int, lr_multiplier: float
    ) -> None:
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        features = [z_dim] + [w_dim] * num_layers
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation="lrelu", lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros(w_dim))  # centre of truncation

    def forward(
        self,
        z: torch.Tensor,
        *,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> torch.Tensor:
        """Map z to ws. ``truncation_cutoff`` limits truncation to the first ws (None: all)."""
        ops.assert_shape(z, [None, self.z_dim], "z")
        x = z.float()
        x = x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()  # normalise 2nd moment
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)  # [N, num_ws, w_dim]
        return truncate(ws, self.w_avg, truncation_psi, truncation_cutoff)


def truncate(
    ws: torch.Tensor, w_avg: torch.Tensor, psi: float, cutoff: int | None = None
) -> torch.Tensor:
    """w_avg + psi * (w - w_avg) on the first ``cutoff`` ws (all if None). Returns a new tensor."""
    if psi == 1:
        return ws
    cutoff = ws.shape[1] if cutoff is None else cutoff
    out = ws.clone()
    out[:, :cutoff] = w_avg.to(ws.dtype).lerp(ws[:, :cutoff], psi)
    return out


# ----------------------------------------------------------------------------
# Synthesis layers


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally upsampling 2x) + noise + bias + lrelu."""

    noise_const: torch.Tensor
    resample_filter: torch.Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        w_dim: int,
        resolution: int,  # Output resolution.
        up: int = 1,  # 2: upsample before the convolution.
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.resolution, self.up, self.conv_clamp = resolution, up, conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.register_buffer("resample_filter", ops.setup_filter(), persistent=False)

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        *,
        noise_mode: NoiseMode = "const",
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """x [N, I, R/up, R/up], w [N, w_dim] -> [N, O, R, R].

        ``noise`` ([N or 1, 1, R, R]) overrides ``noise_mode``; it is scaled by
        ``noise_strength`` like the built-in noise.
        """
        styles = self.affine(w)  # [N, I]
        if noise is None and noise_mode == "random":
            shape = (x.shape[0], 1, self.resolution, self.resolution)
            noise = torch.randn(shape, device=x.device, generator=generator)
        elif noise is None and noise_mode == "const":
            noise = self.noise_const
        if noise is not None:
            noise = noise * self.noise_strength
        x = ops.modulated_conv2d(
            x, self.weight, styles, up=self.up, resample_filter=self.resample_filter, noise=noise
        )
        return ops.bias_act(x, self.bias, act="lrelu", clamp=self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to image space, without demodulation."""

    def __init__(
        self, in_channels: int, out_channels: int, *, w_dim: int, conv_clamp: float | None = None
    ) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = ops.modulated_conv2d(x, self.weight, styles, demodulate=False)
        return ops.bias_act(x, self.bias, clamp=self.conv_clamp)


class BlockOutput(NamedTuple):
    """What one synthesis block hands to the next."""

    resolution: int
    x: torch.Tensor  # [N, C, R, R] features
    img: torch.Tensor  # [N, img_channels, R, R] running skip image (float32)


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: (const | up-conv), conv, toRGB added to the skip."""

    resample_filter: torch.Tensor

    def __init__(
        self,
        in_channels: int,  # 0 for the first (4x4) block, which starts from a learned constant.
        out_channels: int,
        *,
        w_dim: int,
        resolution: int,
        img_channels: int,
        conv_clamp: float | None,
    ) -> None:
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                w_dim=w_dim,
                resolution=resolution,
                up=2,
                conv_clamp=conv_clamp,
            )
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp
        )
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1
        self.register_buffer("resample_filter", ops.setup_filter(), persistent=False)

    def layer_names(self) -> list[str]:
        return ["conv1"] if self.in_channels == 0 else ["conv0", "conv1"]

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,  # [N, num_conv + num_torgb, w_dim]
        *,
        noise_mode: NoiseMode = "const",
        noise: Mapping[str, torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        noise = noise or {}
        kw: dict[str, Any] = {"noise_mode": noise_mode, "generator": generator}
        if self.in_channels == 0:
            x = self.const.to(ws.dtype).unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
            x = self.conv1(x, ws[:, 0], noise=noise.get("conv1"), **kw)
        else:
            assert x is not None
            x = self.conv0(x, ws[:, 0], noise=noise.get("conv0"), **kw)
            x = self.conv1(x, ws[:, 1], noise=noise.get("conv1"), **kw)
        y = self.torgb(x, ws[:, self.num_conv]).float()
        img = y if img is None else ops.upsample2d(img, self.resample_filter) + y
        return x, img


# ----------------------------------------------------------------------------
# Synthesis network and generator


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R], roughly in [-1, 1]."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.w_dim, self.img_resolution = config.w_dim, config.img_resolution
        self.img_channels, self.num_ws = config.img_channels, config.num_ws
        self.block_resolutions = config.block_resolutions
        channels = config.channels
        for res in self.block_resolutions:
            block = SynthesisBlock(
                channels[res // 2] if res > 4 else 0,
                channels[res],
                w_dim=config.w_dim,
                resolution=res,
                img_channels=config.img_channels,
                conv_clamp=config.conv_clamp,
            )
            setattr(self, f"b{res}", block)

    def blocks(self) -> Iterator[SynthesisBlock]:
        for res in self.block_resolutions:
            yield getattr(self, f"b{res}")

    def noise_layers(self) -> dict[str, SynthesisLayer]:
        """Every noise-taking layer by name (``"b8.conv0"``), in synthesis order."""
        return {
            f"b{b.resolution}.{name}": getattr(b, name)
            for b in self.blocks()
            for name in b.layer_names()
        }

    def random_noise(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-layer noise maps for ``n`` images, drawn in synthesis order: passed as ``noise``
        they give the image ``noise_mode="random"`` gives with the same ``generator`` state,
        with no random draw inside the network (so ``torch.compile`` sees one graph)."""
        return {
            name: torch.randn(
                (n, 1, layer.resolution, layer.resolution), device=device, generator=generator
            )
            for name, layer in self.noise_layers().items()
        }

    def iter_blocks(
        self,
        ws: torch.Tensor,
        *,
        noise_mode: NoiseMode = "const",
        noise: Mapping[str, torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
        until: int | None = None,
        start: BlockOutput | None = None,
    ) -> Iterator[BlockOutput]:
        """Run the blocks in order, yielding each block's features and skip image.

        Args:
            ws: [N, num_ws, w_dim] latents (W+; repeat one w for W).
            noise_mode: "const" (stored maps), "random" or "none".
            noise: optional per-layer noise maps keyed like ``noise_layers()``; they replace
                the ``noise_mode`` noise for those layers.
            until: last resolution to run (None: the full resolution).
            start: a block's output to continue from (features and skip image, e.g. several
                latents' outputs composed, as mGANprior does); the blocks up to its
                resolution are skipped and their ws ignored.
        """
        ops.assert_shape(ws, [None, self.num_ws, self.w_dim], "ws")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if until is not None and until not in self.block_resolutions:
            raise ValueError(
                f"until={until} is not one of the resolutions {self.block_resolutions}"
            )
        if start is not None and start.resolution not in self.block_resolutions:
            raise ValueError(
                f"start at {start.resolution} is not one of the resolutions "
                f"{self.block_resolutions}"
            )
        noise = noise or {}
        x, img = (start.x, start.img) if start is not None else (None, None)
        w_idx = 0
        for block in self.blocks():
            # A block's toRGB shares its w with the next block's first conv.
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            if start is not None and block.resolution <= start.resolution:
                continue
            prefix = f"b{block.resolution}."
            block_noise = {k[len(prefix) :]: v for k, v in noise.items() if k.startswith(prefix)}
            x, img = block(
                x, img, block_ws, noise_mode=noise_mode, noise=block_noise, generator=generator
            )
            yield BlockOutput(block.resolution, x, img)
            if block.resolution == until:
                return

    def run_until(self, ws: torch.Tensor, resolution: int, **kwargs: Any) -> BlockOutput:
        """Run only the blocks up to ``resolution``; returns that block's output."""
        return deque(self.iter_blocks(ws, until=resolution, **kwargs), maxlen=1)[0]

    def forward(self, ws: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Full-resolution image [N, img_channels, R, R]; keyword arguments as ``iter_blocks``."""
        return self.run_until(ws, self.img_resolution, **kwargs).img


class Generator(nn.Module):
    """Mapping + synthesis. ``G(z)`` is ``G.synthesis(G.mapping(z))``."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.z_dim, self.w_dim = config.z_dim, config.w_dim
        self.num_ws, self.img_resolution = config.num_ws, config.img_resolution
        self.synthesis = SynthesisNetwork(config)
        self.mapping = MappingNetwork(
            z_dim=config.z_dim,
            w_dim=config.w_dim,
            num_ws=config.num_ws,
            num_layers=config.mapping_layers,
            lr_multiplier=config.mapping_lr_multiplier,
        )

    def forward(
        self,
        z: torch.Tensor,
        *,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: NoiseMode = "const",
    ) -> torch.Tensor:
        ws = self.mapping(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)
