"""The StyleGAN2 training objective and its schedules, as pure functions.

Karras et al., "Analyzing and Improving the Image Quality of StyleGAN" (CVPR 2020), with the
defaults and conventions of NVIDIA's stylegan2-ada-pytorch (Karras et al., NeurIPS 2020):

* non-saturating logistic loss (Goodfellow et al. 2014) for G, logistic loss for D;
* R1 gradient penalty on real images (Mescheder et al., ICML 2018), evaluated lazily every
  ``r1_interval`` minibatches and scaled by the interval (StyleGAN2 sec. 3.1);
* path-length regularisation (StyleGAN2 sec. 3.2, eq. 4), also lazy;
* style-mixing regularisation (Karras et al. 2019, sec. 3.1);
* w_avg tracking, the generator EMA and the lazy-regularisation optimiser adjustment.

Nothing here touches a module's state: functions take tensors and return tensors or numbers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating logistic loss: mean softplus(-D(G(z))). fake_logits [N, 1] -> scalar."""
    return F.softplus(-fake_logits.float()).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic loss: mean softplus(D(G(z))) + mean softplus(-D(x)). Logits [N, 1] -> scalar."""
    return F.softplus(fake_logits.float()).mean() + F.softplus(-real_logits.float()).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """||grad_x D(x)||^2 per real image (Mescheder et al. 2018, eq. 9 without gamma / 2).

    Args:
        real_logits: [N, 1] D's output for ``real_images``.
        real_images: [N, C, H, W] leaf tensor with ``requires_grad=True``.

    Returns:
        [N] penalties; differentiable w.r.t. D's parameters (the graph is kept).
    """
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real_images, create_graph=True)
    return grad.float().square().sum(dim=[1, 2, 3])


def r1_loss(penalty: torch.Tensor, *, gamma: float, interval: int) -> torch.Tensor:
    """gamma / 2 * mean penalty, times the lazy interval so that the average strength over
    ``interval`` minibatches equals a penalty on every minibatch (StyleGAN2 sec. 3.1)."""
    return penalty.mean() * (gamma / 2) * interval


def r1_gamma_auto(resolution: int, batch: int) -> float:
    """stylegan2-ada-pytorch's heuristic R1 weight for its "auto" config: 0.0002 * R^2 / batch."""
    return 0.0002 * resolution**2 / batch


def path_length_noise(
    shape: torch.Size | tuple[int, ...], *, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """y ~ N(0, I) / sqrt(H W) for images of ``shape`` [N, C, H, W] (StyleGAN2 eq. 4)."""
    h, w = shape[2], shape[3]
    return torch.randn(shape, generator=generator, device=device) / math.sqrt(h * w)


def path_lengths(images: torch.Tensor, ws: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """||J_w^T y||_2 per sample, J_w the Jacobian of the image w.r.t. w (StyleGAN2 eq. 4).

    The gradient w.r.t. ws [N, num_ws, w_dim] is summed over w_dim squared and averaged over
    the num_ws copies of w, as NVIDIA does. Returns [N]; the graph is kept for the penalty.
    """
    (grad,) = torch.autograd.grad((images.float() * noise).sum(), ws, create_graph=True)
    return grad.float().square().sum(dim=2).mean(dim=1).sqrt()


def path_length_penalty(
    lengths: torch.Tensor, pl_mean: torch.Tensor, *, decay: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(lengths - a)^2 with ``a`` the running mean of the lengths (StyleGAN2 eq. 4).

    Returns (penalty [N], new running mean detached). As in NVIDIA's code the penalty uses the
    updated mean before detaching it, so ``decay`` of the batch mean also receives gradients.
    """
    mean = pl_mean.lerp(lengths.mean(), decay)
    return (lengths - mean).square(), mean.detach()


def mixing_cutoff(num_ws: int, *, prob: float, generator: torch.Generator) -> int:
    """Index from which ws come from a second latent: one per minibatch, uniform in
    [1, num_ws) with probability ``prob``, else ``num_ws`` (no mixing). Always draws twice."""
    cutoff = int(torch.randint(1, max(num_ws, 2), (), generator=generator))
    mix = float(torch.rand((), generator=generator)) < prob
    return cutoff if mix and num_ws > 1 else num_ws


def mix_styles(ws: torch.Tensor, ws2: torch.Tensor, cutoff: int) -> torch.Tensor:
    """ws [N, num_ws, w_dim] with entries ``cutoff:`` taken from ws2 (style mixing)."""
    if cutoff >= ws.shape[1]:
        return ws
    return torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)


def tracked_w_avg(w_avg: torch.Tensor, ws: torch.Tensor, *, beta: float) -> torch.Tensor:
    """New w_avg: beta * w_avg + (1 - beta) * batch mean of w (ws [N, num_ws, w_dim], one w
    repeated). NVIDIA's MappingNetwork does this in ``forward``; here it stays in the trainer."""
    return ws[:, 0].detach().float().mean(dim=0).lerp(w_avg, beta)


def lazy_regularisation(
    lr: float, betas: tuple[float, float], interval: int
) -> tuple[float, tuple[float, float]]:
    """Adam's lr and betas when a regulariser takes an extra optimiser step every ``interval``
    minibatches: c = interval / (interval + 1), lr * c, beta ** c (StyleGAN2 appendix B)."""
    c = interval / (interval + 1)
    return lr * c, (betas[0] ** c, betas[1] ** c)


def ema_beta(*, batch: int, cur_nimg: int, ema_kimg: float, ema_rampup: float | None) -> float:
    """Per-step decay of the generator EMA: its half-life is ``ema_kimg`` thousand images,
    ramped up as ``ema_rampup * cur_nimg`` early in training (stylegan2-ada-pytorch)."""
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))
