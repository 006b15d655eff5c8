"""Running an encoder: an aligned target at the model's resolution to the ws it starts from."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stylelens.training.attributes import HELD_OUT_FIRST_SEED


@torch.no_grad()
def encode(encoder: torch.nn.Module, target: torch.Tensor) -> torch.Tensor:
    """``target`` [1, 3, R, R] in [-1, 1] (the model's resolution) -> ws [1, num_ws, w_dim].

    The target is resized to the encoder's ``input_resolution`` first (area filter when
    shrinking, the usual case: a 256 px target for a 128 px light encoder).

    Raises:
        ValueError: the target is not one [3, H, W] image.
    """
    if target.ndim != 4 or target.shape[0] != 1 or target.shape[1] != 3:
        raise ValueError(f"target must be [1, 3, H, W], got {list(target.shape)}")
    size = int(getattr(encoder, "input_resolution"))  # noqa: B009  (a module attribute)
    device = next(encoder.parameters()).device
    x = target.to(device).float()
    if x.shape[-1] != size or x.shape[-2] != size:
        mode = "area" if x.shape[-1] > size else "bilinear"
        kw = {} if mode == "area" else {"align_corners": False}
        x = F.interpolate(x, size=(size, size), mode=mode, **kw)
    ws = encoder(x.clamp(-1, 1))  # [1, num_ws, w_dim]
    return ws.float()


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
    from stylelens.training.encoder import draw_real

    out = [encode(encoder, draw_real(first_seed + i, 1, resolution)).cpu() for i in range(n)]
    return torch.cat(out) if out else torch.empty(0)
