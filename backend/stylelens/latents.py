"""Latent files: one inverted or edited face as ``ws`` (+ optional noise maps) in safetensors.

Layout of a ``.safetensors`` latent file:

- ``ws``: float32 [1, num_ws, w_dim], the W+ latent the synthesis network takes;
- ``noise.<layer>`` (optional): float32 [1, 1, R, R] per noise layer, keyed like
  ``SynthesisNetwork.noise_layers()`` (``noise.b8.conv0``);
- metadata (strings): ``model`` (model id), ``num_ws``, ``w_dim`` and free-form provenance
  (engine, steps, source image...).

The CLI, the web app and the editing operations read and write only this format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from stylelens.errors import StyleLensError

NOISE_PREFIX = "noise."


class LatentError(StyleLensError):
    """A latent file is unreadable or does not fit the model it is used with."""


@dataclass(frozen=True)
class Latent:
    """A W+ latent for one image: ws [1, num_ws, w_dim] and optional per-layer noise."""

    ws: torch.Tensor
    noise: dict[str, torch.Tensor] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ws.ndim != 3 or self.ws.shape[0] != 1:
            raise LatentError(f"ws must be [1, num_ws, w_dim], got {list(self.ws.shape)}")
        # A non-finite latent renders black and poisons every edit made from it: refuse it
        # wherever one is made or read, so none is ever stored or served.
        tensors = [("ws", self.ws), *((NOISE_PREFIX + k, v) for k, v in self.noise.items())]
        bad = [n for n, t in tensors if not bool(t.isfinite().all())]
        if bad:
            raise LatentError(
                f"latent holds NaN or infinite values (in {', '.join(bad[:3])}); "
                "it cannot be rendered or edited"
            )

    @property
    def model(self) -> str:
        return self.metadata.get("model", "")

    def check_fits(self, *, num_ws: int, w_dim: int, model_id: str | None = None) -> None:
        """Raise LatentError unless ws is [1, num_ws, w_dim] (and, if given, the model matches)."""
        if tuple(self.ws.shape[1:]) != (num_ws, w_dim):
            raise LatentError(
                f"latent has ws of shape {list(self.ws.shape)}, but the model takes "
                f"[1, {num_ws}, {w_dim}]; was it made with another model ({self.model or '?'})?"
            )
        if model_id is not None and self.model and self.model != model_id:
            raise LatentError(
                f"latent was made with model {self.model!r}, not {model_id!r}; "
                "pass --model to use the model it was made with"
            )


def save_latent(path: Path, latent: Latent) -> Path:
    """Write ``latent`` to ``path`` (safetensors); returns the path."""
    tensors = {"ws": latent.ws.detach().float().cpu().contiguous()}
    for name, value in latent.noise.items():
        tensors[NOISE_PREFIX + name] = value.detach().float().cpu().contiguous()
    meta = {
        **latent.metadata,
        "num_ws": str(latent.ws.shape[1]),
        "w_dim": str(latent.ws.shape[2]),
    }
    save_file(tensors, str(path), metadata=meta)
    return path


def load_latent(path: Path) -> Latent:
    """Read a latent file written by :func:`save_latent`. Raises LatentError."""
    try:
        tensors = load_file(str(path))
        with open(path, "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            meta = json.loads(f.read(header_len)).get("__metadata__", {}) or {}
    except FileNotFoundError:
        raise LatentError(f"{path}: no such latent file") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise LatentError(f"{path} is not a StyleLens latent (.safetensors): {e}") from None
    if "ws" not in tensors:
        raise LatentError(f"{path} holds no 'ws' tensor; it is not a StyleLens latent")
    unknown = [k for k in tensors if k != "ws" and not k.startswith(NOISE_PREFIX)]
    if unknown:
        raise LatentError(f"{path}: unexpected tensors {unknown[:5]} in a latent file")
    noise = {k[len(NOISE_PREFIX) :]: v for k, v in tensors.items() if k.startswith(NOISE_PREFIX)}
    return Latent(ws=tensors["ws"].float(), noise=noise, metadata=dict(meta))


@dataclass(frozen=True)
class Fits:
    """What a latent must be to be used with a model (``Latent.check_fits``)."""

    num_ws: int
    w_dim: int
    model_id: str

    def check(self, latent: Latent) -> Latent:
        latent.check_fits(num_ws=self.num_ws, w_dim=self.w_dim, model_id=self.model_id)
        return latent
