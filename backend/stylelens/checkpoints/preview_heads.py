"""``models/<id>/preview_heads.safetensors``: fitted preview heads, checked against the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import load_file, save_file

from stylelens.checkpoints.native import load_card, load_into, save_card
from stylelens.errors import CheckpointError
from stylelens.networks.preview import PREVIEW_HEADS_FILE, PreviewHeads
from stylelens.networks.stylegan2 import Generator


def save_preview_heads(model_dir: Path, heads: PreviewHeads, fit: dict[str, Any]) -> Path:
    """Write the heads and record ``fit`` (how they were fitted) in the card's ``preview_heads``."""
    path = model_dir / PREVIEW_HEADS_FILE
    state = {k: v.detach().cpu().contiguous() for k, v in heads.state_dict().items()}
    meta = {
        "resolutions": ",".join(str(r) for r in heads.resolutions),
        "raw_resolutions": ",".join(str(r) for r in heads.raw_resolutions),
    }
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.chmod(0o644)  # readable by a server running as another user (Docker)
    tmp.replace(path)
    card = load_card(model_dir)
    extra = dict(card.model_extra or {})
    extra["preview_heads"] = {
        "file": PREVIEW_HEADS_FILE,
        "resolutions": heads.resolutions,
        "raw_resolutions": heads.raw_resolutions,
        **fit,
    }
    save_card(model_dir, card.model_copy(update=extra))
    return path


def load_preview_heads(model_dir: Path, G: Generator) -> PreviewHeads | None:
    """The model's fitted heads, or None when it has none. Raises CheckpointError if corrupt."""
    path = model_dir / PREVIEW_HEADS_FILE
    if not path.is_file():
        return None
    try:
        state = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises several types for a damaged file
        raise CheckpointError(
            f"{path} is not readable ({e}); refit with fit-preview-heads"
        ) from None
    resolutions = sorted({int(k.split(".")[1]) for k in state if k.startswith("heads.")})
    raw = [int(r) for r in meta.get("raw_resolutions", "").split(",") if r]
    heads = PreviewHeads(G, resolutions, raw_resolutions=raw)
    load_into(heads, state, str(path))
    return heads.to(G.mapping.w_avg.device)
