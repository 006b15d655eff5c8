"""Latents of faces no training saw, put through a model's encoder: what an upload starts from.

Used where quality is measured on encoded faces rather than sampled ones
(``stylelens directions measure --faces-from encoder``, ``benchmarks/encoder.py --part edit``).
"""

from __future__ import annotations

import torch

from stylelens.encoders.encode import encode
from stylelens.training.attributes import HELD_OUT_FIRST_SEED
from stylelens.training.encoder import draw_real

# SynthFaces that :func:`encode_synthfaces` encodes by default: the held-out range (no GAN,
# encoder or attribute training saw it), past the inversion (+50,000) and alignment (+60,000)
# benchmarks' faces.
ENCODED_FIRST_SEED = HELD_OUT_FIRST_SEED + 80_000


@torch.no_grad()
def encode_synthfaces(
    encoder: torch.nn.Module, n: int, resolution: int, *, first_seed: int = ENCODED_FIRST_SEED
) -> torch.Tensor:
    """ws [n, num_ws, w_dim] of SynthFaces ``first_seed ...`` drawn at ``resolution`` (the
    model's; drawn at 64 px and shrunk for smaller test models) and encoded one pass each:
    real-image latents as a user's uploads give them."""
    out = [encode(encoder, draw_real(first_seed + i, 1, resolution)).cpu() for i in range(n)]
    return torch.cat(out) if out else torch.empty(0)
