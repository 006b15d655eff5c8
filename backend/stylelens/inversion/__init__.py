"""GAN inversion: find the latent whose image is a given photo.

Engines follow one step protocol (:mod:`stylelens.inversion.protocol`): ``start``, ``step``,
``result``. :func:`make_engine` builds one by name for a loaded model.
"""

from __future__ import annotations

from typing import Any

from stylelens.inversion.adam import AdamConfig, AdamEngine
from stylelens.inversion.progressive import ProgressiveConfig, ProgressiveEngine
from stylelens.inversion.protocol import (
    Engine,
    InversionError,
    InversionResult,
    StepReport,
    run,
)
from stylelens.losses.perceptual import PerceptualLoss
from stylelens.networks.preview import PreviewHeads
from stylelens.networks.stylegan2 import Generator

ENGINES = ("adam", "projector", "progressive")


def make_engine(
    name: str,
    G: Generator,
    *,
    steps: int,
    perceptual: PerceptualLoss | None,
    heads: PreviewHeads | None = None,
    seed: int = 0,
) -> tuple[Engine[Any], Any]:
    """(engine, config) for ``name``: "adam" (seed 001 preset), "projector" (NVIDIA's
    schedule) or "progressive" (needs preview heads for its intermediate stages)."""
    if name == "adam":
        return AdamEngine(G, perceptual=perceptual), AdamConfig(steps=steps, seed=seed)
    if name == "projector":
        cfg = AdamConfig.projector(steps=steps)
        return AdamEngine(G, perceptual=perceptual), AdamConfig(**{**cfg.__dict__, "seed": seed})
    if name == "progressive":
        if heads is None:
            raise InversionError(
                "the progressive engine needs preview heads; run "
                "`stylelens fit-preview-heads --model ID` first"
            )
        engine = ProgressiveEngine(G, heads=heads, perceptual=perceptual)
        return engine, ProgressiveConfig(steps=steps, seed=seed)
    raise InversionError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")


__all__ = [
    "ENGINES",
    "AdamConfig",
    "AdamEngine",
    "Engine",
    "InversionError",
    "InversionResult",
    "ProgressiveConfig",
    "ProgressiveEngine",
    "StepReport",
    "make_engine",
    "run",
]
