"""Running an encoder: an aligned target at the model's resolution to the ws it starts from."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
    device = next(encoder.parameters()).device
    ws = encoder(encoder_input(encoder, target.to(device)))  # [1, num_ws, w_dim]
    return ws.float()


def encoder_input(encoder: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Images [N, 3, H, W] in [-1, 1] resized to the encoder's ``input_resolution`` (area
    filter when shrinking, bilinear when growing), float32, clamped to [-1, 1]."""
    size = int(getattr(encoder, "input_resolution"))  # noqa: B009  (a module attribute)
    x = images.float()
    if x.shape[-1] != size or x.shape[-2] != size:
        mode = "area" if x.shape[-1] > size else "bilinear"
        kw = {} if mode == "area" else {"align_corners": False}
        x = F.interpolate(x, size=(size, size), mode=mode, **kw)
    return x.clamp(-1, 1)
