"""``models/<id>/optimizer.safetensors``: a learned optimizer for the model, checked against it.

The file holds the optimizer's state dict, with its constructor keywords in the safetensors
metadata (so a file copied between model folders still says what it was made for); the card's
``optimizer`` entry records the same keywords and how it was trained.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from stylelens.checkpoints.native import load_card, load_into, save_card
from stylelens.errors import CheckpointError
from stylelens.inversion.learned import LearnedOptimizer

OPTIMIZER_FILE = "optimizer.safetensors"


def save_optimizer(model_dir: Path, optimizer: LearnedOptimizer, info: dict[str, Any]) -> Path:
    """Write ``optimizer`` for the model in ``model_dir`` and record it (with ``info``: how it
    was trained) in the card's ``optimizer`` entry.

    Raises:
        CheckpointError: the optimizer was made for another W+ shape than the model's.
    """
    card = load_card(model_dir)
    _check_shape(optimizer.config(), card.num_ws, card.generator.w_dim, model_dir)
    path = model_dir / OPTIMIZER_FILE
    state = {k: v.detach().float().cpu().contiguous() for k, v in optimizer.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"config": json.dumps(optimizer.config())})
    tmp.chmod(0o644)
    tmp.replace(path)
    extra = dict(card.model_extra or {})
    extra["optimizer"] = {"file": OPTIMIZER_FILE, "config": optimizer.config(), **info}
    save_card(model_dir, card.model_copy(update=extra))
    return path


def load_optimizer(
    model_dir: Path, *, device: torch.device | str = "cpu"
) -> LearnedOptimizer | None:
    """The model's learned optimizer (eval mode, on ``device``), or None when it has none.

    Raises:
        CheckpointError: the file is damaged, or was made for a model of another
            ``num_ws``/``w_dim`` (both named).
    """
    path = model_dir / OPTIMIZER_FILE
    if not path.is_file():
        return None
    card = load_card(model_dir)
    try:
        with safe_open(str(path), framework="pt") as f:
            config = json.loads((f.metadata() or {})["config"])
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
        optimizer = LearnedOptimizer(**config)
    except Exception as e:  # damaged file, missing or malformed metadata
        raise CheckpointError(
            f"{path} is not a readable learned optimizer ({e}); train it again with "
            f"`stylelens train-optimizer --model {card.id}`"
        ) from None
    _check_shape(config, card.num_ws, card.generator.w_dim, model_dir)
    load_into(optimizer, state, str(path))
    return optimizer.to(device)


def _check_shape(config: dict[str, Any], num_ws: int, w_dim: int, model_dir: Path) -> None:
    got = (config.get("num_ws"), config.get("w_dim"))
    if got != (num_ws, w_dim):
        raise CheckpointError(
            f"the learned optimizer was made for a model with num_ws={got[0]}, w_dim={got[1]}; "
            f"model {model_dir.name!r} has num_ws={num_ws}, w_dim={w_dim}. Train one for it "
            f"with `stylelens train-optimizer --model {model_dir.name}`"
        )
