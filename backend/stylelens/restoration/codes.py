"""Codes files: an mGANprior restoration's N codes, importances and tail styles (safetensors).

Layout: ``codes`` float32 [N, 1, w_dim], ``alpha`` float32 [N, C + img_channels], ``tail``
float32 [1, num_ws, w_dim]; metadata (strings): ``model``, ``resolution`` (the composing
resolution), ``layer``, ``task`` and free-form provenance. :func:`render_codes` draws the
restoration again from the file and the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from stylelens.inversion.multicode import compose
from stylelens.networks.stylegan2 import Generator
from stylelens.restoration.tasks import RestorationError


@dataclass(frozen=True)
class Codes:
    codes: torch.Tensor
    alpha: torch.Tensor
    tail: torch.Tensor
    resolution: int
    metadata: dict[str, str] = field(default_factory=dict)


def save_codes(path: Path, codes: Codes) -> Path:
    tensors = {
        "codes": codes.codes.detach().float().cpu().contiguous(),
        "alpha": codes.alpha.detach().float().cpu().contiguous(),
        "tail": codes.tail.detach().float().cpu().contiguous(),
    }
    meta = {**codes.metadata, "resolution": str(codes.resolution)}
    save_file(tensors, str(path), metadata=meta)
    return path


def load_codes(path: Path) -> Codes:
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except (OSError, SafetensorError) as e:
        raise RestorationError(f"{path}: not a readable codes file ({e})") from None
    missing = {"codes", "alpha", "tail"} - set(tensors)
    if missing or "resolution" not in meta:
        raise RestorationError(
            f"{path}: not a codes file (missing {sorted(missing) or 'resolution'})"
        )
    return Codes(tensors["codes"], tensors["alpha"], tensors["tail"], int(meta["resolution"]), meta)


@torch.no_grad()
def render_codes(G: Generator, codes: Codes) -> torch.Tensor:
    """The restoration [1, 3, R, R] a codes file stands for."""
    if tuple(codes.tail.shape) != (1, G.num_ws, G.w_dim) or codes.codes.shape[-1] != G.w_dim:
        raise RestorationError(
            f"the codes are for a model with {codes.tail.shape[1]} ws of {codes.tail.shape[2]}; "
            f"this one takes {G.num_ws} of {G.w_dim} (made with {codes.metadata.get('model', '?')})"
        )
    device = G.mapping.w_avg.device
    return compose(
        G,
        codes.codes.to(device),
        codes.alpha.to(device),
        codes.tail.to(device),
        codes.resolution,
    )
