"""What the engines share: the loss, the starting latent, schedules and final metrics."""

from __future__ import annotations

import math
from typing import Literal

import torch

from stylelens.losses.perceptual import PerceptualLoss, pixel_mse
from stylelens.networks.preview import psnr
from stylelens.networks.stylegan2 import Generator

LatentSpace = Literal["w", "w+"]

# lambda in  loss = MSE + lambda * perceptual, per backend, so that on a half-converged
# reconstruction both terms are of the same order. "vgg16-features" is seed 001's 5e-5.
DEFAULT_PERCEPTUAL_WEIGHT = {
    "lpips-vgg16": 1.0,
    "vgg16-features": 5e-5,
    "d-features": 0.1,
    "ms-ssim": 0.5,
}


def perceptual_weight(loss: PerceptualLoss | None, weight: float | None) -> float:
    """The configured weight, or the backend's default (0 without a perceptual loss)."""
    if loss is None:
        return 0.0
    return DEFAULT_PERCEPTUAL_WEIGHT.get(loss.name, 1.0) if weight is None else weight


def reconstruction_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    perceptual: PerceptualLoss | None,
    weight: float,
    mse_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """mse_weight * MSE + weight * perceptual (both means over the batch); returns (loss, terms)."""
    mse = pixel_mse(pred, target).mean()
    loss = mse_weight * mse
    terms = {"mse": float(mse.detach())}
    if perceptual is not None and weight > 0:
        p = perceptual(pred, target).mean()
        loss = loss + weight * p
        terms["perceptual"] = float(p.detach())
    terms["total"] = float(loss.detach())
    return loss, terms


def initial_latent(G: Generator, init_ws: torch.Tensor | None, space: LatentSpace) -> torch.Tensor:
    """The tensor to optimise: [1, 1, w_dim] in W, [1, num_ws, w_dim] in W+ (from w_avg or init)."""
    w_avg = G.mapping.w_avg.detach()
    if init_ws is None:
        ws = w_avg.view(1, 1, -1).repeat(1, G.num_ws, 1)
    else:
        if tuple(init_ws.shape) != (1, G.num_ws, G.w_dim):
            raise ValueError(
                f"init latent must be [1, {G.num_ws}, {G.w_dim}], got {list(init_ws.shape)}"
            )
        ws = init_ws.detach().to(w_avg.device).float()
    if space == "w":
        ws = ws.mean(dim=1, keepdim=True)
    return ws.clone().requires_grad_(True)


def expand(latent: torch.Tensor, num_ws: int) -> torch.Tensor:
    """[1, 1 or num_ws, w_dim] -> [1, num_ws, w_dim]."""
    return latent.expand(-1, num_ws, -1) if latent.shape[1] == 1 else latent


def projector_lr(t: float, base: float, *, rampup: float, rampdown: float) -> float:
    """NVIDIA projector's learning-rate schedule at progress t in [0, 1]: linear ramp-up over
    the first ``rampup``, cosine ramp-down over the last ``rampdown``."""
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp *= min(1.0, t / rampup) if rampup > 0 else 1.0
    return base * ramp


@torch.no_grad()
def full_metrics(
    G: Generator,
    ws: torch.Tensor,
    target: torch.Tensor,
    *,
    perceptual: PerceptualLoss | None,
    noise: dict[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """PSNR (dB), MSE and the perceptual distance of G(ws) against the full-resolution target."""
    img = G.synthesis(ws, noise=noise)
    out = {"psnr": float(psnr(img, target)[0]), "mse": float(pixel_mse(img, target)[0])}
    if perceptual is not None:
        out["perceptual"] = float(perceptual(img, target)[0])
    return out


def w_std(G: Generator, *, samples: int = 10_000, seed: int = 0) -> float:
    """Spread of W around w_avg: sqrt(E||w - w_avg||^2), from ``samples`` random z."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(samples, G.z_dim, generator=gen).to(G.mapping.w_avg.device)
    with torch.no_grad():
        w = G.mapping(z)[:, 0]
    return float((w - G.mapping.w_avg).square().sum(dim=1).mean().sqrt())
