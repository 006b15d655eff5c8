"""Seed 001's learned optimizer and the engine that inverts with it.

The optimizer ``g`` sees, per W+ layer, Adam's update direction ``f = -m_hat / (sqrt(v_hat) +
eps)`` (the step Adam would take at learning rate 1) and the current ``w``; each goes through
its own 4-layer MLP, the two features are concatenated and go through a third 4-layer MLP, and
its output multiplies ``f``: ``w <- w + g(f, w)``. Every W+ layer has its own weights (the
networks below hold one weight matrix per layer and apply all layers in one ``einsum``).

The third MLP's output ``h`` becomes a per-coordinate step size ``base_lr * max_factor **
tanh(h)``, between ``base_lr / max_factor`` and ``base_lr * max_factor``. Its last layer
starts at zero, so an untrained optimizer *is* Adam at ``base_lr`` (seed 001's baseline, lr
0.01): training can only move it away from there by what lowers the loss.

:class:`LearnedEngine` runs it at full resolution under the step protocol; the progressive
engine uses it as its per-stage optimiser (``ProgressiveConfig(optimizer="learned")``).
Training is in :mod:`stylelens.training.optimizer`; the file format in
:mod:`stylelens.inversion.optimizer_store`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from stylelens.inversion.common import full_metrics, initial_latent, perceptual_weight
from stylelens.inversion.protocol import (
    InversionError,
    InversionResult,
    StepReport,
    Timer,
    check_target,
)
from stylelens.losses.perceptual import PerceptualLoss, pixel_mse
from stylelens.networks.stylegan2 import Generator

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


class PerLayerMLP(nn.Module):
    """An MLP with its own weights for each of ``layers`` positions: x [N, layers, sizes[0]]
    -> [N, layers, sizes[-1]]; leaky ReLU between linear layers (and after the last one when
    ``final_activation``)."""

    def __init__(self, layers: int, sizes: list[int], *, final_activation: bool) -> None:
        super().__init__()
        self.final_activation = final_activation
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        gain = math.sqrt(2 / (1 + 0.2**2))
        for a, b in itertools.pairwise(sizes):
            self.weights.append(nn.Parameter(torch.randn(layers, a, b) * gain / math.sqrt(a)))
            self.biases.append(nn.Parameter(torch.zeros(layers, b)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.einsum("nli,lio->nlo", x, w) + b
            if i < last or self.final_activation:
                x = F.leaky_relu(x, 0.2)
        return x


class LearnedOptimizer(nn.Module):
    """g(f, w): the update of a W+ latent from Adam's direction ``f`` and the latent ``w``
    (both [N, num_ws, w_dim])."""

    w_mean: torch.Tensor  # buffers
    w_scale: torch.Tensor

    def __init__(
        self,
        num_ws: int,
        w_dim: int,
        *,
        hidden: int = 64,
        depth: int = 4,
        base_lr: float = 0.01,
        max_factor: float = 10.0,
    ) -> None:
        super().__init__()
        if depth < 1 or hidden < 1:
            raise ValueError(f"depth and hidden must be at least 1, got {depth}, {hidden}")
        if base_lr <= 0 or max_factor < 1:
            raise ValueError("base_lr must be positive and max_factor at least 1")
        self.num_ws, self.w_dim = num_ws, w_dim
        self.hidden, self.depth = hidden, depth
        self.base_lr, self.max_factor = base_lr, max_factor
        self.direction_net = PerLayerMLP(num_ws, [w_dim] + [hidden] * depth, final_activation=True)
        self.latent_net = PerLayerMLP(num_ws, [w_dim] + [hidden] * depth, final_activation=True)
        self.joint_net = PerLayerMLP(
            num_ws, [2 * hidden] + [hidden] * (depth - 1) + [w_dim], final_activation=False
        )
        with torch.no_grad():  # untrained == Adam at base_lr
            self.joint_net.weights[-1].zero_()
        # How w is normalised before latent_net (set from the generator by the trainer).
        self.register_buffer("w_mean", torch.zeros(w_dim))
        self.register_buffer("w_scale", torch.ones([]))

    def config(self) -> dict[str, float | int]:
        """The constructor's keywords, as the card stores them."""
        return {
            "num_ws": self.num_ws,
            "w_dim": self.w_dim,
            "hidden": self.hidden,
            "depth": self.depth,
            "base_lr": self.base_lr,
            "max_factor": self.max_factor,
        }

    def set_latent_statistics(self, G: Generator, spread: float) -> None:
        """Normalise w by the generator's ``w_avg`` and ``spread`` (E||w - w_avg||^2)^0.5."""
        with torch.no_grad():
            self.w_mean.copy_(G.mapping.w_avg.detach().to(self.w_mean.device))
            self.w_scale.fill_(spread / math.sqrt(self.w_dim))

    def step_size(self, direction: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
        """Per-coordinate step sizes [N, num_ws, w_dim] in [base_lr / max_factor, base_lr *
        max_factor]."""
        a = self.direction_net(direction)
        b = self.latent_net((ws - self.w_mean) / self.w_scale)
        h = self.joint_net(torch.cat([a, b], dim=2))
        return self.base_lr * torch.exp(math.log(self.max_factor) * torch.tanh(h))

    def forward(self, direction: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
        """The update g(f, w), to be added to ``ws``."""
        return self.step_size(direction, ws) * direction


@dataclass
class AdamMoments:
    """Adam's running moments for a latent; :meth:`direction` is Adam's step at lr 1."""

    m: torch.Tensor
    v: torch.Tensor
    t: torch.Tensor  # [N] steps taken, per latent of the batch (float64)

    @classmethod
    def zeros_like(cls, ws: torch.Tensor) -> AdamMoments:
        z = torch.zeros_like(ws)
        t = torch.zeros(ws.shape[0], dtype=torch.float64, device=ws.device)
        return cls(z.clone(), z.clone(), t)

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        """Take the gradient in and return ``-m_hat / (sqrt(v_hat) + eps)`` (as torch.optim.Adam
        computes it)."""
        b1, b2 = ADAM_BETAS
        self.t = self.t + 1
        self.m = self.m * b1 + grad * (1 - b1)
        self.v = self.v * b2 + grad.square() * (1 - b2)
        shape = (-1,) + (1,) * (grad.ndim - 1)
        t = self.t.double()  # 1 - 0.999 loses 4 digits in float32
        c1 = (1 - b1**t).to(grad.dtype).view(shape)
        c2 = (1 - b2**t).to(grad.dtype).view(shape)
        return -(self.m / c1) / ((self.v / c2).sqrt() + ADAM_EPS)

    def reset(self, rows: torch.Tensor) -> None:
        """Forget the moments of the latents where ``rows`` (bool [N]) is set."""
        keep = (~rows).to(self.m.dtype).view((-1,) + (1,) * (self.m.ndim - 1))
        self.m, self.v = self.m * keep, self.v * keep
        self.t = self.t * (~rows).to(self.t.dtype)


def check_fits(optimizer: LearnedOptimizer, G: Generator, what: str) -> None:
    """Refuse a learned optimizer made for a generator of another W+ shape."""
    if (optimizer.num_ws, optimizer.w_dim) != (G.num_ws, G.w_dim):
        raise InversionError(
            f"the learned optimizer was made for num_ws={optimizer.num_ws}, "
            f"w_dim={optimizer.w_dim}, but {what} has num_ws={G.num_ws}, w_dim={G.w_dim}"
        )


def image_loss(
    img: torch.Tensor,
    target: torch.Tensor,
    perceptual: PerceptualLoss | None,
    weight: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per image [N]: MSE + weight * perceptual; also the MSE and perceptual terms."""
    mse = pixel_mse(img, target)
    if perceptual is None or weight <= 0:
        return mse, mse, None
    p = perceptual(img, target)
    return mse + weight * p, mse, p


@dataclass(frozen=True)
class LearnedConfig:
    steps: int = 200
    perceptual_weight: float | None = None  # None: the backend's default
    seed: int = 0  # unused (the engine is deterministic); kept for the common signature

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")


@dataclass
class LearnedState:
    config: LearnedConfig
    target: torch.Tensor
    latent: torch.Tensor  # [1, num_ws, w_dim]
    moments: AdamMoments
    weight: float
    timer: Timer = field(default_factory=Timer)
    step: int = 0

    @property
    def done(self) -> bool:
        return self.step >= self.config.steps


class LearnedEngine:
    """The learned optimizer on W+ through the whole generator (one full pass per step)."""

    name = "learned"

    def __init__(
        self, G: Generator, *, optimizer: LearnedOptimizer, perceptual: PerceptualLoss | None
    ) -> None:
        check_fits(optimizer, G, "this model")
        self.G, self.perceptual = G, perceptual
        self.optimizer = optimizer.eval().requires_grad_(False)

    def start(
        self, target: torch.Tensor, config: LearnedConfig, init_ws: torch.Tensor | None = None
    ) -> LearnedState:
        device = self.G.mapping.w_avg.device
        target = check_target(target, self.G.img_resolution).to(device)
        latent = initial_latent(self.G, init_ws, "w+")
        return LearnedState(
            config=config,
            target=target,
            latent=latent,
            moments=AdamMoments.zeros_like(latent.detach()),
            weight=perceptual_weight(self.perceptual, config.perceptual_weight),
        )

    def step(self, state: LearnedState) -> StepReport:
        with state.timer:
            img = self.G.synthesis(state.latent)
            loss, mse, p = image_loss(img, state.target, self.perceptual, state.weight)
            state.latent.grad = None
            loss.sum().backward()
            assert state.latent.grad is not None
            with torch.no_grad():
                direction = state.moments.direction(state.latent.grad)
                state.latent.add_(self.optimizer(direction, state.latent))
            state.step += 1
        terms = {"mse": float(mse[0].detach())}
        if p is not None:
            terms["perceptual"] = float(p[0].detach())
        terms["total"] = float(loss[0].detach())
        return StepReport(
            step=state.step,
            total=state.config.steps,
            elapsed=state.timer.seconds,
            losses=terms,
            resolution=self.G.img_resolution,
            preview=img.detach().clamp(-1, 1).cpu(),
        )

    def current_ws(self, state: LearnedState) -> torch.Tensor:
        return state.latent

    def result(self, state: LearnedState) -> InversionResult:
        ws = state.latent.detach().clone()
        metrics = full_metrics(self.G, ws, state.target, perceptual=self.perceptual)
        return InversionResult(
            ws=ws.cpu(),
            noise={},
            adain={},
            metrics=metrics,
            engine=self.name,
            perceptual=self.perceptual.name if self.perceptual is not None else "none",
            steps=state.step,
            elapsed=state.timer.seconds,
            config=dataclasses.asdict(state.config),
        )
