"""SeFa: closed-form factorisation of the latent space (Shen & Zhou, CVPR 2021).

Every style a layer sees is an affine map of w: s = A w + b. Moving w along a unit n changes
the styles by A n, so the directions that change the styles most solve
max_n ||A n||^2 s.t. ||n|| = 1 (paper eq. 5): the eigenvectors of A^T A with the largest
eigenvalues. For a layer range, A stacks the affine weights of every layer that reads a ws of
the range. Each row (one style channel) is scaled to unit norm first, so that a channel counts
the same whatever its layer's equalised-lr gain.
"""

from __future__ import annotations

import torch

from stylelens.directions.core import layer_indices
from stylelens.networks.stylegan2 import Generator


def affine_ws_index(G: Generator) -> dict[str, int]:
    """Which ws index each modulation layer reads: ``{"b8.conv0": 1, "b8.torgb": 3, ...}``."""
    out: dict[str, int] = {}
    w_idx = 0
    for block in G.synthesis.blocks():
        for j, name in enumerate(block.layer_names()):
            out[f"b{block.resolution}.{name}"] = w_idx + j
        out[f"b{block.resolution}.torgb"] = w_idx + block.num_conv
        w_idx += block.num_conv
    return out


@torch.no_grad()
def modulation_weights(G: Generator, layers: str = "all") -> torch.Tensor:
    """Stacked effective affine weights A [sum of style channels, w_dim] for ``layers``."""
    picked = set(layer_indices(layers, G.num_ws))
    rows = []
    for name, index in affine_ws_index(G).items():
        if index in picked:
            block, layer = name.split(".")
            affine = getattr(getattr(G.synthesis, block), layer).affine
            rows.append(affine.weight.float() * affine.weight_gain)  # [C, w_dim]
    return torch.cat(rows)


def _fix_signs(vectors: torch.Tensor) -> torch.Tensor:
    """Flip each row so that its largest-magnitude entry is positive (a reproducible sign)."""
    idx = vectors.abs().argmax(dim=1, keepdim=True)
    return vectors * vectors.gather(1, idx).sign()


def sefa(weight: torch.Tensor, top: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``top`` SeFa directions of stacked affine weights.

    Args:
        weight: A [C, w_dim] (rows: style channels).
        top: how many directions, 1 to w_dim.

    Returns:
        (directions [top, w_dim], orthonormal rows; eigenvalues [top], descending), the
        eigenvectors of A^T A after scaling A's rows to unit norm.

    Raises:
        ValueError: if ``top`` is outside 1..w_dim or A is not 2-D.
    """
    if weight.ndim != 2:
        raise ValueError(f"weight must be [C, w_dim], got {list(weight.shape)}")
    w_dim = weight.shape[1]
    if not 1 <= top <= w_dim:
        raise ValueError(f"top must be between 1 and w_dim={w_dim}, got {top}")
    a = weight.double()
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    eigenvalues, eigenvectors = torch.linalg.eigh(a.T @ a)  # ascending
    order = eigenvalues.argsort(descending=True)[:top]
    vectors = _fix_signs(eigenvectors[:, order].T)
    return vectors.float(), eigenvalues[order].float()
