"""Editing operations: pure functions over ws [N, num_ws, w_dim] that return new tensors.

None of them mutates its inputs; each checks shapes at the door.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stylelens.directions.core import Direction, DirectionError, layer_mask


def _check_ws(ws: torch.Tensor, what: str = "ws") -> None:
    if ws.ndim != 3:
        raise DirectionError(f"{what} must be [N, num_ws, w_dim], got {list(ws.shape)}")


def apply_directions(ws: torch.Tensor, edits: Sequence[tuple[Direction, float]]) -> torch.Tensor:
    """ws + sum_k amount_k * unit_k * mask_k * v_k, each direction on its own layer range.

    Args:
        ws: [N, num_ws, w_dim].
        edits: (direction, amount in slider units) pairs; amounts add.

    Returns:
        New ws of the same shape (a copy even when ``edits`` is empty).

    Raises:
        DirectionError: when a direction does not fit the shape of ws.
    """
    _check_ws(ws)
    num_ws, w_dim = ws.shape[1], ws.shape[2]
    out = ws.clone()
    for direction, amount in edits:
        direction.check_fits(num_ws=num_ws, w_dim=w_dim)
        out = out + direction.delta(float(amount), num_ws).to(ws)[None]
    return out


def style_mix(ws: torch.Tensor, ref_ws: torch.Tensor, layers: str) -> torch.Tensor:
    """Take the ws of ``layers`` (coarse / middle / fine / indices) from ``ref_ws``.

    ``ref_ws`` is [N or 1, num_ws, w_dim]; one reference is shared by every sample.
    Karras et al. 2019 sec. 3.1: coarse styles carry pose and face shape, middle ones
    features and expression, fine ones colours and texture.
    """
    _check_ws(ws)
    _check_ws(ref_ws, "ref_ws")
    if ref_ws.shape[1:] != ws.shape[1:] or ref_ws.shape[0] not in (1, ws.shape[0]):
        raise DirectionError(
            f"reference latent has shape {list(ref_ws.shape)}, ws {list(ws.shape)}; "
            "both must come from the same model"
        )
    mask = layer_mask(layers, ws.shape[1]).bool().to(ws.device)[None, :, None]  # [1, num_ws, 1]
    return torch.where(mask, ref_ws.to(ws), ws)


def truncate_toward(
    ws: torch.Tensor, w_avg: torch.Tensor, psi: float, *, layers: str = "all"
) -> torch.Tensor:
    """w_avg + psi * (w - w_avg) on ``layers``: psi 1 keeps ws, 0 gives the average face."""
    _check_ws(ws)
    if w_avg.shape != (ws.shape[2],):
        raise DirectionError(f"w_avg must be [{ws.shape[2]}], got {list(w_avg.shape)}")
    mask = layer_mask(layers, ws.shape[1]).bool().to(ws.device)[None, :, None]
    truncated = w_avg.to(ws).lerp(ws, float(psi))
    return torch.where(mask, truncated, ws)


def interpolate(ws_a: torch.Tensor, ws_b: torch.Tensor, t: float) -> torch.Tensor:
    """(1 - t) * ws_a + t * ws_b: linear in W, where StyleGAN's paths are short and smooth."""
    _check_ws(ws_a, "ws_a")
    if ws_b.shape != ws_a.shape:
        raise DirectionError(
            f"cannot interpolate ws of shapes {list(ws_a.shape)} and {list(ws_b.shape)}"
        )
    return torch.lerp(ws_a, ws_b.to(ws_a), float(t))
