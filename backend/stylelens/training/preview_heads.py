"""Fitting a model's preview heads and recording the fit in ``preview_heads.safetensors``: the
training side of the heads (``stylelens.networks.preview`` defines and fits them,
``stylelens.checkpoints.preview_heads`` stores and loads them)."""

from __future__ import annotations

import time
from pathlib import Path

from stylelens.checkpoints.preview_heads import save_preview_heads
from stylelens.evaluation.preview_heads import evaluate_preview_heads, raw_is_better
from stylelens.hardware import describe_hardware
from stylelens.networks.preview import FitConfig, PreviewHeads, fit_preview_heads
from stylelens.networks.stylegan2 import Generator


def fit_and_save_preview_heads(
    G: Generator, model_dir: Path, config: FitConfig, *, eval_samples: int = 16
) -> tuple[Path, PreviewHeads, dict[int, dict[str, float]], float]:
    """Fit heads on G's own samples, measure them, save them with the fit record.

    Returns the file written, the heads, the PSNR table {resolution: {variant: dB}} and the
    fitting time in seconds. Resolutions where the raw skip image beats the head are recorded
    in ``heads.raw_resolutions`` (the previews use the raw image there).
    """
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
