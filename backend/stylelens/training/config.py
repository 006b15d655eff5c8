"""Hyper-parameters of a training run, their "auto" defaults, and their JSON form.

Defaults follow stylegan2-ada-pytorch's ``--cfg auto`` (Karras et al., NeurIPS 2020,
``train.py``) for one device: batch min(4096 // R, 32), channel_base 16384 below 512 px
(32768 from 512), two mapping layers, lr 0.0025, R1 gamma 0.0002 R^2 / batch, EMA half-life
batch * 10 / 32 kimg with a 0.05 ramp-up, conv_clamp 256. ``None`` fields mean "auto" and are
filled in by ``resolved()`` before a run starts, so ``config.json`` records the values used.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from stylelens.data.synthfaces.latent import PARAM_DIMS
from stylelens.networks.discriminator import DiscriminatorConfig
from stylelens.networks.stylegan2 import GeneratorConfig
from stylelens.training.augment import AugmentConfig
from stylelens.training.loss import r1_gamma_auto

Precision = Literal["auto", "float32", "bfloat16"]
PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16")
MIN_RESOLUTION, MAX_RESOLUTION = 8, 1024
# Fields a resumed run may change: they do not enter the maths (kimg only moves the end).
# channels_last and compile change the rounding only, as a change of device does.
RESUMABLE_FIELDS = frozenset(
    {"kimg", "tick_kimg", "snapshot_kimg", "device", "num_workers", "channels_last", "compile"}
)
# Fields where None means "auto" (elsewhere None means "off": conv_clamp, ema_rampup, augment).
AUTO_FIELDS = ("batch", "channel_base", "mbstd_group_size", "r1_gamma", "ema_kimg", "tick_kimg",
               "num_workers")  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run. ``None`` means "auto" (see module doc)."""

    resolution: int = 256  # Image side in pixels: a power of two in [8, 1024].
    batch: int | None = None  # Images per minibatch; auto min(4096 // resolution, 32).
    kimg: float = 25_000  # Train until this many thousand real images have been shown.
    # Architecture (G and D share the channel schedule, as in NVIDIA's code).
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 2
    mapping_lr_multiplier: float = 0.01
    channel_base: int | None = None  # auto 16384 below 512 px, 32768 from 512 px.
    channel_max: int = 512
    conv_clamp: float | None = 256  # Activation clamp; keeps bfloat16 training in range.
    mbstd_group_size: int | None = None  # auto min(batch, 4).
    # Optimisation (Adam; lr and betas are adjusted for lazy regularisation).
    lr_g: float = 0.0025
    lr_d: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8
    r1_gamma: float | None = None  # auto 0.0002 * resolution^2 / batch; 0 turns R1 off.
    r1_interval: int = 16  # Lazy R1: every this many minibatches.
    pl_weight: float = 2.0  # Path-length regularisation weight; 0 turns it off.
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    pl_interval: int = 4
    style_mixing_prob: float = 0.9
    w_avg_beta: float = 0.995
    ema_kimg: float | None = None  # G_ema half-life in kimg; auto batch * 10 / 32.
    ema_rampup: float | None = 0.05
    augment: AugmentConfig | None = None  # None: D sees the images as they are.
    # Fine-tuning.
    init: str | None = None  # Model directory to start from (G, and D when it has one).
    freeze_d: int = 0  # FreezeD: D blocks kept fixed, counted from the image input.
    freeze_g: tuple[str, ...] = ()  # Generator parts kept fixed: "mapping", "b4", "b8", ...
    # SynthFaces only: weight of the reconstruction loss of G drawing each real face from its
    # parameters as z (stylelens.training.supervise); 0 turns the phase off.
    supervise: float = 0.0
    # The resolution the supervised phase compares at; None: full size plus a quarter of it.
    supervise_res: int | None = None
    # Weight of a full-size comparison inside the eyes, mouth and chin (supervise.detail_mask),
    # added to the supervised phase's loss; 0: none.
    supervise_detail: float = 0.0
    # Learning rate of the mapping network relative to the rest of G, on top of its equalised
    # lr multiplier (0.01): 1 as in NVIDIA's training; more lets a refitted mapping move.
    mapping_lr_factor: float = 1.0
    # SynthFaces only: D also sees each face's parameters (a projection discriminator; reals
    # with their own, fakes with z's first PARAM_DIMS entries), so a face that does not match
    # its parameters (a beard where they say none) is what D can punish. Needs
    # style_mixing_prob 0: a mixed face would have two parameter vectors.
    condition_d: bool = False
    # With condition_d: weight of the matching-aware term (Reed et al., ICML 2016): D also sees
    # each real face with another face's parameters (the batch's, shifted by one) as fake,
    # so it learns from the data what matching parameters look like. 0: none.
    condition_mismatch: float = 0.0
    # Bookkeeping and runtime.
    seed: int = 0
    tick_kimg: float | None = None  # Metrics row and checkpoint every N kimg; None: 1 on a
    # CPU, 10 on CUDA (a checkpoint holds G, D, G_ema and both Adam states: not every second).
    snapshot_kimg: float = 10.0  # Sample grid every this many kimg.
    device: str = "auto"
    precision: Precision = "auto"  # auto: bfloat16 autocast on CUDA, float32 on CPU.
    # G, D and G_ema in the channels-last (NHWC) memory format: the same maths, training steps
    # 1.2x faster on a CPU in bfloat16, 1.6x in float32 (benchmarks/training_options.py).
    channels_last: bool = True
    # torch.compile the synthesis network and D for G main, the supervised phase and D main
    # (R1 and path length differentiate a gradient and stay eager): 1.4x on top of
    # channels-last on a CPU, after 1.5-3 minutes of compiling. A CPU needs a C++ compiler.
    compile: bool = False
    # DataLoader worker processes; the data order does not depend on it. None: 2 on CUDA, 0 on
    # a CPU, where workers would compete with the training threads for the same cores.
    num_workers: int | None = None

    def __post_init__(self) -> None:
        r = self.resolution
        if not MIN_RESOLUTION <= r <= MAX_RESOLUTION or r & (r - 1):
            raise ValueError(
                f"resolution must be a power of two in [{MIN_RESOLUTION}, {MAX_RESOLUTION}], "
                f"got {r}"
            )
        positive = ("z_dim", "w_dim", "mapping_layers", "channel_max", "r1_interval",
                    "pl_interval", "pl_batch_shrink")  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.batch is not None and self.batch < 1:
            raise ValueError(f"batch must be at least 1, got {self.batch}")
        sr = self.supervise_res
        if sr is not None and (sr < 4 or sr > r or sr & (sr - 1)):
            raise ValueError(f"supervise_res must be a power of two in [4, {r}], got {sr}")
        if not (self.mapping_lr_factor > 0 and math.isfinite(self.mapping_lr_factor)):
            raise ValueError(
                f"mapping_lr_factor must be a positive number, got {self.mapping_lr_factor}"
            )
        nonnegative = ("kimg", "lr_g", "lr_d", "pl_weight", "supervise", "supervise_detail",
                       "condition_mismatch")  # fmt: skip
        for name in nonnegative:
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a non-negative number, got {value}")
        if (self.tick_kimg is not None and not self.tick_kimg > 0) or not self.snapshot_kimg > 0:
            raise ValueError("tick_kimg and snapshot_kimg must be positive")
        if not 0 <= self.style_mixing_prob <= 1:
            raise ValueError(f"style_mixing_prob must be in [0, 1], got {self.style_mixing_prob}")
        if self.condition_d and self.style_mixing_prob > 0:
            raise ValueError(
                "condition_d needs style_mixing_prob 0 (--mixing 0): a face mixed from two "
                "latents has no single set of parameters to show D"
            )
        if self.condition_mismatch and not self.condition_d:
            raise ValueError("condition_mismatch needs condition_d (a D that sees parameters)")
        if self.condition_d and self.z_dim < PARAM_DIMS:
            raise ValueError(f"condition_d needs z_dim >= {PARAM_DIMS} (the parameters' size)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        num_d_blocks = int(math.log2(r)) - 2
        if not 0 <= self.freeze_d <= num_d_blocks:
            raise ValueError(
                f"freeze_d={self.freeze_d}: D at {r}px has {num_d_blocks} blocks "
                f"({', '.join(f'b{2**i}' for i in range(int(math.log2(r)), 2, -1))}); "
                f"freeze between 0 and {num_d_blocks}"
            )
        parts = generator_parts(r)
        unknown = [p for p in self.freeze_g if p not in parts]
        if unknown:
            raise ValueError(f"freeze_g: unknown parts {unknown}; choose from {list(parts)}")
        blocks = set(parts) - {"mapping", "synthesis"}
        all_synthesis = "synthesis" in self.freeze_g or blocks <= set(self.freeze_g)
        if "mapping" in self.freeze_g and all_synthesis:
            raise ValueError("freeze_g freezes the whole generator; leave something to train")
        if self.batch is not None and self.mbstd_group_size:
            g = min(self.mbstd_group_size, self.batch)
            if self.batch % g:
                raise ValueError(
                    f"batch {self.batch} is not divisible by the minibatch-stddev group size {g}"
                )

    def resolved(self) -> TrainConfig:
        """A copy with every "auto" (None) field replaced by its value."""
        r = self.resolution
        batch = self.batch or max(1, min(4096 // r, 32))
        return dataclasses.replace(
            self,
            batch=batch,
            channel_base=self.channel_base or (32768 if r >= 512 else 16384),
            mbstd_group_size=self.mbstd_group_size or min(batch, 4),
            r1_gamma=r1_gamma_auto(r, batch) if self.r1_gamma is None else self.r1_gamma,
            ema_kimg=batch * 10 / 32 if self.ema_kimg is None else self.ema_kimg,
        )

    @property
    def generator(self) -> GeneratorConfig:
        """The generator architecture (call on a ``resolved()`` config)."""
        assert self.channel_base is not None, "resolve the config first"
        return GeneratorConfig(
            z_dim=self.z_dim,
            w_dim=self.w_dim,
            img_resolution=self.resolution,
            mapping_layers=self.mapping_layers,
            mapping_lr_multiplier=self.mapping_lr_multiplier,
            channel_base=self.channel_base,
            channel_max=self.channel_max,
            conv_clamp=self.conv_clamp,
        )

    @property
    def discriminator(self) -> DiscriminatorConfig:
        """The discriminator architecture (call on a ``resolved()`` config)."""
        assert self.channel_base is not None and self.mbstd_group_size is not None
        return DiscriminatorConfig(
            img_resolution=self.resolution,
            channel_base=self.channel_base,
            channel_max=self.channel_max,
            conv_clamp=self.conv_clamp,
            mbstd_group_size=self.mbstd_group_size,
            c_dim=PARAM_DIMS if self.condition_d else 0,
        )


def generator_parts(resolution: int) -> tuple[str, ...]:
    """Names ``freeze_g`` accepts: "mapping", "synthesis" (every block) and each block "bR"."""
    blocks = tuple(f"b{2**i}" for i in range(2, int(math.log2(resolution)) + 1))
    return ("mapping", "synthesis", *blocks)


def architecture_of(
    generator: GeneratorConfig, discriminator: DiscriminatorConfig | None
) -> dict[str, Any]:
    """TrainConfig fields that reproduce a model's architecture (for fine-tuning from it)."""
    fields: dict[str, Any] = {
        "resolution": generator.img_resolution,
        "z_dim": generator.z_dim,
        "w_dim": generator.w_dim,
        "mapping_layers": generator.mapping_layers,
        "mapping_lr_multiplier": generator.mapping_lr_multiplier,
        "channel_base": generator.channel_base,
        "channel_max": generator.channel_max,
        "conv_clamp": generator.conv_clamp,
    }
    if discriminator is not None:
        fields["mbstd_group_size"] = discriminator.mbstd_group_size
    return fields


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """JSON-ready dict (tuples become lists)."""
    return dataclasses.asdict(config)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Inverse of ``config_to_dict``. Raises ValueError for unknown fields or bad values."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown training options {unknown}")
    values = dict(data)
    if "betas" in values:
        values["betas"] = tuple(values["betas"])
    if "freeze_g" in values:
        values["freeze_g"] = tuple(values["freeze_g"])
    if values.get("augment") is not None:
        aug = dict(values["augment"])
        if "groups" in aug:
            aug["groups"] = tuple(tuple(g) for g in aug["groups"])
        values["augment"] = AugmentConfig(**aug)
    return TrainConfig(**values)


def config_differences(stored: TrainConfig, requested: TrainConfig) -> list[str]:
    """Fields (other than ``RESUMABLE_FIELDS``) whose values differ, as "name: a -> b"."""
    out = []
    for f in dataclasses.fields(TrainConfig):
        a, b = getattr(stored, f.name), getattr(requested, f.name)
        if f.name not in RESUMABLE_FIELDS and a != b:
            out.append(f"{f.name}: {a!r} -> {b!r}")
    return out
