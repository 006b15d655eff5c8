"""Seeds -> latents -> images, with NVIDIA's conventions so a seed gives the same face as
NVIDIA's ``gen_images.py`` for the same weights."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from stylelens.networks.runtime import autocast, compiled
from stylelens.networks.stylegan2 import Generator, NoiseMode

MAX_SEED = 2**32 - 1  # numpy's RandomState accepts seeds in [0, 2**32)


def parse_seeds(spec: str) -> list[int]:
    """``"0-7"``, ``"1,5,9-11"`` -> the listed seeds (ranges inclusive). Raises ValueError."""
    seeds: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if m is None:
            raise ValueError(f"malformed seed list {spec!r}: use e.g. 0-7 or 1,5,9-11")
        lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
        if hi < lo:
            raise ValueError(f"seed range {part.strip()!r} runs backwards")
        if hi > MAX_SEED:
            raise ValueError(f"seeds must be below 2**32, got {hi}")
        if len(seeds) + hi - lo + 1 > 100_000:
            raise ValueError(f"{spec!r} asks for more than 100000 seeds")
        seeds.extend(range(lo, hi + 1))
    return seeds


def z_from_seed(seed: int, z_dim: int) -> torch.Tensor:
    """NVIDIA's convention: ``np.random.RandomState(seed).randn(1, z_dim)``. Returns [1, z_dim]."""
    return torch.from_numpy(np.random.RandomState(seed).randn(1, z_dim))


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> [N, H, W, C] uint8, rounding as ``gen_images.py`` does."""
    img = (img.float().permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return img.cpu().numpy()


def image_grid(images: Sequence[np.ndarray], cols: int | None = None) -> Image.Image:
    """Tile [H, W, C] uint8 images row by row into one picture."""
    n = len(images)
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    h, w, c = images[0].shape
    grid = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
    for i, im in enumerate(images):
        r, q = divmod(i, cols)
        grid[r * h : (r + 1) * h, q * w : (q + 1) * w] = im
    return Image.fromarray(grid.squeeze(-1) if c == 1 else grid)


@torch.no_grad()
def render_seeds(
    G: Generator,
    seeds: Sequence[int],
    *,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    noise_mode: NoiseMode = "const",
    precision: str = "float32",
    compile: bool = False,
    batch_size: int = 4,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (seed, [H, W, C] uint8 image) for each seed, in order.

    ``compile`` runs the synthesis network through ``torch.compile`` (worth it for many seeds:
    the first batch then takes tens of seconds longer).
    """
    device = next(G.parameters()).device
    synthesis = compiled(G.synthesis, compile)
    for start in range(0, len(seeds), batch_size):
        chunk = seeds[start : start + batch_size]
        z = torch.cat([z_from_seed(s, G.z_dim) for s in chunk]).to(device)
        ws = G.mapping(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        with autocast(device, precision):
            img = synthesis(ws, noise_mode=noise_mode)
        yield from zip(chunk, to_uint8(img), strict=True)
