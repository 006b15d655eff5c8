"""GANSpace: principal components of sampled w (Härkönen et al., NeurIPS 2020).

PCA of w = mapping(z) over many z gives the axes along which the model's faces vary most;
applied to a layer range only (the paper's "edit layers"), a component often changes one
thing, e.g. the head's turn on the coarse layers and the lighting on the fine ones.
"""

from __future__ import annotations

import torch

from stylelens.directions.sefa import _fix_signs
from stylelens.networks.stylegan2 import Generator
from stylelens.render import z_from_seed


@torch.no_grad()
def sample_w(G: Generator, n: int, *, seed: int = 0, batch: int = 1024) -> torch.Tensor:
    """w [n, w_dim] = mapping(z) for NVIDIA-style seeded z (seed, seed + 1, ...), psi = 1."""
    device = next(G.parameters()).device
    out = []
    for start in range(0, n, batch):
        seeds = range(seed + start, seed + min(n, start + batch))
        z = torch.cat([z_from_seed(s, G.z_dim) for s in seeds]).float().to(device)
        out.append(G.mapping(z)[:, 0].cpu())
    return torch.cat(out)


def pca(w: torch.Tensor, top: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Principal axes of samples.

    Args:
        w: [N, w_dim] samples, N >= 2.
        top: number of components, 1 to min(N - 1, w_dim).

    Returns:
        (components [top, w_dim], orthonormal rows by decreasing variance; stds [top], the
        standard deviation of the samples along each).
    """
    if w.ndim != 2 or w.shape[0] < 2:
        raise ValueError(f"need samples [N >= 2, w_dim], got {list(w.shape)}")
    if not 1 <= top <= min(w.shape[0] - 1, w.shape[1]):
        raise ValueError(f"top must be between 1 and {min(w.shape[0] - 1, w.shape[1])}")
    x = w.double() - w.double().mean(dim=0)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)  # x = U S Vh, rows of Vh: axes
    stds = s[:top] / (w.shape[0] - 1) ** 0.5
    return _fix_signs(vh[:top]).float(), stds.float()


def std_along(w: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Std of samples w [N, w_dim] projected on each unit row of vectors [K, w_dim] -> [K]."""
    return (w.double() @ vectors.double().T).std(dim=0).float()
