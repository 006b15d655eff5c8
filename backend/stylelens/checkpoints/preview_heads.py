"""``models/<id>/preview_heads.safetensors``: fitted preview heads, checked against the model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import load_file, save_file

from stylelens.checkpoints.native import load_card, load_into, save_card
from stylelens.errors import CheckpointError
from stylelens.networks.preview import PREVIEW_HEADS_FILE, FitConfig, PreviewHeads
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


def fit_and_save_preview_heads(
    G: Generator, model_dir: Path, config: FitConfig, *, eval_samples: int = 16
) -> tuple[Path, PreviewHeads, dict[int, dict[str, float]], float]:
    """Fit heads on G's own samples, measure them, save them with the fit record.

    Returns the file written, the heads, the PSNR table {resolution: {variant: dB}} and the
    fitting time in seconds. Resolutions where the raw skip image beats the head are recorded
    in ``heads.raw_resolutions`` (the previews use the raw image there).
    """
    from stylelens.evaluation.preview_heads import evaluate_preview_heads, raw_is_better
    from stylelens.networks.preview import fit_preview_heads
    from stylelens.training.state import describe_hardware

    device = G.mapping.w_avg.device
    heads = PreviewHeads(G).to(device)
    t0 = time.perf_counter()
    losses = fit_preview_heads(G, heads, config, progress=True)
    seconds = time.perf_counter() - t0
    table = evaluate_preview_heads(G, heads, samples=eval_samples)
    heads.raw_resolutions = raw_is_better(table)
    fit = {
        "steps": config.steps,
        "batch": config.batch,
        "lr": config.lr,
        "psi_range": list(config.psi_range),
        "seed": config.seed,
        "loss_first": round(losses[0], 5),
        "loss_last": round(sum(losses[-20:]) / len(losses[-20:]), 5),
        "seconds": round(seconds, 1),
        "hardware": describe_hardware(device),
        "psnr_db": {str(r): {k: round(v, 2) for k, v in row.items()} for r, row in table.items()},
    }
    return save_preview_heads(model_dir, heads, fit), heads, table, seconds
