"""MS-SSIM distance (Wang, Simoncelli and Bovik 2003): 1 - MS-SSIM, needs no weights."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Per-scale exponents from Wang et al. 2003, finest scale first.
MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
K1, K2 = 0.01, 0.03


def gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian [size]."""
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _ssim_terms(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Mean luminance*contrast*structure and contrast*structure per sample, images in [0, 1]."""
    c1, c2 = K1**2, K2**2
    mx, my = _blur(x, g), _blur(y, g)
    sxx = _blur(x * x, g) - mx * mx
    syy = _blur(y * y, g) - my * my
    sxy = _blur(x * y, g) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    return (lum * cs).flatten(1).mean(1), cs.flatten(1).mean(1)


def ms_ssim(
    x: torch.Tensor, y: torch.Tensor, *, window: int = 11, sigma: float = 1.5
) -> torch.Tensor:
    """MS-SSIM per sample ([N]) of images in [-1, 1] ([N, C, H, W]).

    Uses as many of the five scales as the image size allows (the coarsest must still be at
    least as large as the window; the window shrinks for images under 11 px), with the
    exponents renormalised.
    """
    x, y = (x.float() + 1) / 2, (y.float() + 1) / 2
    side = min(x.shape[-2:])
    window = min(window, side if side % 2 else side - 1)
    levels = max(1, min(len(MS_WEIGHTS), int(math.log2(side / window)) + 1))
    weights = torch.tensor(MS_WEIGHTS[:levels], device=x.device)
    weights = weights / weights.sum()
    g = gaussian_window(window, sigma).to(x.device)
    vals = []
    for level in range(levels):
        ssim, cs = _ssim_terms(x, y, g)
        vals.append((ssim if level == levels - 1 else cs).relu())
        if level < levels - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stack = torch.stack(vals, dim=1)  # [N, levels]
    return (stack.clamp_min(1e-8) ** weights).prod(dim=1)


class MSSSIMDistance(nn.Module):
    """1 - MS-SSIM: 0 for identical images, up to 1."""

    name = "ms-ssim"

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 1 - ms_ssim(x, y)
