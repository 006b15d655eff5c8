"""Baseline engine: Adam on the latent at full resolution (what we measure ourselves against).

Two presets:
- :meth:`AdamConfig.seed001`: seed 001's objective, W+, Adam lr 0.01, constant;
- :meth:`AdamConfig.projector`: the NVIDIA / rosinality projector schedule: W, lr 0.1 with
  ramp-up over the first 5 % and cosine ramp-down over the last 25 %, Gaussian noise added to
  the latent (0.05 x the spread of W, decaying to zero over the first 75 %), per-layer noise
  maps optimised with their multi-scale autocorrelation penalised (weight 1e5) and
  renormalised after every step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from stylelens.inversion.common import (
    LatentSpace,
    expand,
    full_metrics,
    initial_latent,
    perceptual_weight,
    projector_lr,
    reconstruction_loss,
    w_std,
)
from stylelens.inversion.protocol import InversionResult, StepReport, Timer, check_target
from stylelens.losses.perceptual import PerceptualLoss
from stylelens.networks.stylegan2 import Generator


@dataclass(frozen=True)
class AdamConfig:
    steps: int = 200
    lr: float = 0.01
    space: LatentSpace = "w+"
    perceptual_weight: float | None = None  # None: the backend's default
    mse_weight: float = 1.0
    schedule: str = "constant"  # "constant" or "projector" (ramp up / cosine down)
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    latent_noise: float = 0.0  # initial latent noise, in units of W's spread
    latent_noise_ramp: float = 0.75
    optimize_noise: bool = False
    noise_regularize: float = 1e5
    seed: int = 0

    @classmethod
    def seed001(cls, steps: int = 200) -> AdamConfig:
        return cls(steps=steps)

    @classmethod
    def projector(cls, steps: int = 1000) -> AdamConfig:
        return cls(
            steps=steps,
            lr=0.1,
            space="w",
            schedule="projector",
            latent_noise=0.05,
            optimize_noise=True,
        )

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.schedule not in ("constant", "projector"):
            raise ValueError(f"schedule must be 'constant' or 'projector', got {self.schedule!r}")
        if self.space not in ("w", "w+"):
            raise ValueError(f"space must be 'w' or 'w+', got {self.space!r}")


@dataclass
class AdamState:
    config: AdamConfig
    target: torch.Tensor
    latent: torch.Tensor  # [1, 1 | num_ws, w_dim], requires grad
    noise: dict[str, torch.Tensor]
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    weight: float
    w_std: float
    timer: Timer = field(default_factory=Timer)
    step: int = 0

    @property
    def done(self) -> bool:
        return self.step >= self.config.steps


def noise_regularization(noise: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over layers and scales (down to 8x8) of the squared 1-pixel autocorrelation."""
    reg = torch.zeros([])
    for n in noise.values():
        x = n
        while True:
            reg = reg + (x * x.roll(1, dims=3)).mean().square()
            reg = reg + (x * x.roll(1, dims=2)).mean().square()
            if x.shape[-1] <= 8:
                break
            x = F.avg_pool2d(x, 2)
    return reg


class AdamEngine:
    """Adam on ws through the whole generator; every step costs a full-resolution pass."""

    name = "adam"

    def __init__(self, G: Generator, *, perceptual: PerceptualLoss | None) -> None:
        self.G, self.perceptual = G, perceptual
        self._w_std: float | None = None

    def start(
        self, target: torch.Tensor, config: AdamConfig, init_ws: torch.Tensor | None = None
    ) -> AdamState:
        device = self.G.mapping.w_avg.device
        target = check_target(target, self.G.img_resolution).to(device)
        latent = initial_latent(self.G, init_ws, config.space)
        gen = torch.Generator().manual_seed(config.seed)
        noise: dict[str, torch.Tensor] = {}
        params = [latent]
        if config.optimize_noise:
            for name, layer in self.G.synthesis.noise_layers().items():
                r = layer.resolution
                n = torch.randn(1, 1, r, r, generator=gen).to(device).requires_grad_(True)
                noise[name] = n
                params.append(n)
        if config.latent_noise > 0 and self._w_std is None:
            self._w_std = w_std(self.G)
        return AdamState(
            config=config,
            target=target,
            latent=latent,
            noise=noise,
            optimizer=torch.optim.Adam(params, lr=config.lr, betas=(0.9, 0.999)),
            generator=gen,
            weight=perceptual_weight(self.perceptual, config.perceptual_weight),
            w_std=self._w_std or 0.0,
        )

    def step(self, state: AdamState) -> StepReport:
        cfg = state.config
        with state.timer:
            t = state.step / cfg.steps
            if cfg.schedule == "projector":
                lr = projector_lr(t, cfg.lr, rampup=cfg.lr_rampup, rampdown=cfg.lr_rampdown)
                for group in state.optimizer.param_groups:
                    group["lr"] = lr
            latent = state.latent
            if cfg.latent_noise > 0:
                scale = (
                    state.w_std * cfg.latent_noise * max(0.0, 1 - t / cfg.latent_noise_ramp) ** 2
                )
                eps = torch.randn(latent.shape, generator=state.generator).to(latent.device)
                latent = latent + eps * scale
            img = self.G.synthesis(expand(latent, self.G.num_ws), noise=state.noise or None)
            loss, terms = reconstruction_loss(
                img,
                state.target,
                perceptual=self.perceptual,
                weight=state.weight,
                mse_weight=cfg.mse_weight,
            )
            if state.noise:
                reg = noise_regularization(state.noise)
                loss = loss + cfg.noise_regularize * reg
                terms["noise_reg"] = float(reg.detach())
                terms["total"] = float(loss.detach())
            state.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            state.optimizer.step()
            with torch.no_grad():
                for n in state.noise.values():  # keep the maps N(0, 1)
                    n.sub_(n.mean()).div_(n.square().mean().sqrt())
            state.step += 1
        return StepReport(
            step=state.step,
            total=cfg.steps,
            elapsed=state.timer.seconds,
            losses=terms,
            resolution=self.G.img_resolution,
            preview=img.detach().cpu(),
        )

    def current_ws(self, state: AdamState) -> torch.Tensor:
        """The full-generator latent [1, num_ws, w_dim] the state stands for now."""
        return expand(state.latent, self.G.num_ws)

    def result(self, state: AdamState) -> InversionResult:
        ws = expand(state.latent.detach(), self.G.num_ws).clone()
        noise = {k: v.detach().clone() for k, v in state.noise.items()}
        metrics = full_metrics(
            self.G, ws, state.target, perceptual=self.perceptual, noise=noise or None
        )
        return InversionResult(
            ws=ws.cpu(),
            noise={k: v.cpu() for k, v in noise.items()},
            adain={},
            metrics=metrics,
            engine=self.name,
            perceptual=self.perceptual.name if self.perceptual is not None else "none",
            steps=state.step,
            elapsed=state.timer.seconds,
            config=dataclasses.asdict(state.config),
        )
