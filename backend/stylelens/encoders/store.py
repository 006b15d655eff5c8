"""``models/<id>/encoder.safetensors``: an encoder for the model, checked against it.

The file holds the encoder's state dict; the card's ``encoder`` entry says which network
family built it (``architecture``, a key of :data:`ARCHITECTURES`), the keyword arguments of
its constructor (``config``) and where it came from (trained here, converted from e4e/pSp...).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from stylelens.checkpoints.native import load_card, load_into, save_card
from stylelens.errors import CheckpointError

ENCODER_FILE = "encoder.safetensors"
# architecture name -> "module:class"; the class takes the card's ``config`` as keywords.
ARCHITECTURES = {
    "light": "stylelens.encoders.light:LightEncoder",
    "psp": "stylelens.encoders.psp:PSPEncoder",
    "e4e": "stylelens.encoders.psp:E4EEncoder",
}


def encoder_class(architecture: str) -> Any:
    if architecture not in ARCHITECTURES:
        raise CheckpointError(
            f"unknown encoder architecture {architecture!r}; known: {sorted(ARCHITECTURES)}"
        )
    module, name = ARCHITECTURES[architecture].split(":")
    return getattr(importlib.import_module(module), name)


def save_encoder(
    model_dir: Path,
    encoder: torch.nn.Module,
    *,
    architecture: str,
    config: dict[str, Any],
    info: dict[str, Any],
) -> Path:
    """Write ``encoder`` for the model in ``model_dir`` and record it in the card.

    ``info`` says how it was made (training settings and results, or the source file); it is
    stored in the card's ``encoder`` entry next to ``architecture`` and ``config``.

    Raises:
        CheckpointError: the encoder's ``num_ws``/``w_dim`` do not fit the model.
    """
    card = load_card(model_dir)
    _check_fits(encoder, card.num_ws, card.generator.w_dim, f"model {card.id!r}")
    path = model_dir / ENCODER_FILE
    state = {k: v.detach().float().cpu().contiguous() for k, v in encoder.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"architecture": architecture})
    tmp.chmod(0o644)  # readable by a server running as another user (Docker)
    tmp.replace(path)
    extra = dict(card.model_extra or {})
    extra["encoder"] = {
        "file": ENCODER_FILE,
        "architecture": architecture,
        "config": config,
        **info,
    }
    save_card(model_dir, card.model_copy(update=extra))
    return path


def load_encoder(model_dir: Path, *, device: torch.device | str = "cpu") -> torch.nn.Module | None:
    """The model's encoder (in eval mode, on ``device``), or None when it has none.

    Raises:
        CheckpointError: the file is damaged, its tensors do not fit the architecture the card
            names, or the encoder does not fit the model.
    """
    card = load_card(model_dir)
    entry = (card.model_extra or {}).get("encoder")
    path = model_dir / ENCODER_FILE
    if entry is None or not path.is_file():
        return None
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises several types for a damaged file
        raise CheckpointError(f"{path} is not readable ({e}); train or convert it again") from None
    encoder = encoder_class(str(entry.get("architecture")))(**dict(entry.get("config") or {}))
    _check_fits(encoder, card.num_ws, card.generator.w_dim, f"model {card.id!r}")
    load_into(encoder, state, str(path))
    return encoder.eval().to(device)


def _check_fits(encoder: torch.nn.Module, num_ws: int, w_dim: int, what: str) -> None:
    got = (getattr(encoder, "num_ws", None), getattr(encoder, "w_dim", None))
    if got != (num_ws, w_dim):
        raise CheckpointError(
            f"the encoder makes ws of num_ws={got[0]}, w_dim={got[1]}, but {what} takes "
            f"num_ws={num_ws}, w_dim={w_dim}: it was made for another generator"
        )
