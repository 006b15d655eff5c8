"""GAN inversion: find the latent whose image is a given photo.

Engines follow one step protocol (:mod:`stylelens.inversion.protocol`): ``start``, ``step``,
``result``. :func:`make_engine` builds one by name for a loaded model.
"""

from __future__ import annotations

from typing import Any

from stylelens.inversion.adam import AdamConfig, AdamEngine
from stylelens.inversion.learned import LearnedConfig, LearnedEngine, LearnedOptimizer
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

ENGINES = ("adam", "projector", "progressive", "learned", "progressive-learned")
_NEEDS = {"progressive": "heads", "learned": "learned", "progressive-learned": "heads+learned"}
_HOW = {
    "heads": "preview heads; run `stylelens fit-preview-heads --model ID` first",
    "learned": "a learned optimizer; run `stylelens train-optimizer --model ID` first",
}


def available_engines(heads: PreviewHeads | None, learned: LearnedOptimizer | None) -> list[str]:
    """The engines a model with these parts can run, in :data:`ENGINES` order."""
    have = {"heads": heads is not None, "learned": learned is not None}
    return [e for e in ENGINES if all(have[n] for n in _NEEDS.get(e, "").split("+") if n)]


def make_engine(
    name: str,
    G: Generator,
    *,
    steps: int,
    perceptual: PerceptualLoss | None,
    heads: PreviewHeads | None = None,
    learned: LearnedOptimizer | None = None,
    seed: int = 0,
) -> tuple[Engine[Any], Any]:
    """(engine, config) for ``name``: "adam" (seed 001 preset), "projector" (NVIDIA's
    schedule), "progressive" (L-BFGS, needs preview heads for its intermediate stages),
    "learned" (seed 001's learned optimizer at full resolution) or "progressive-learned"
    (the learned optimizer inside the progressive engine: needs both)."""
    if name in ENGINES and name not in available_engines(heads, learned):
        missing = [
            n for n in _NEEDS[name].split("+") if {"heads": heads, "learned": learned}[n] is None
        ]
        raise InversionError(f"the {name} engine needs " + " and ".join(_HOW[n] for n in missing))
    if name == "adam":
        return AdamEngine(G, perceptual=perceptual), AdamConfig(steps=steps, seed=seed)
    if name == "projector":
        cfg = AdamConfig.projector(steps=steps)
        return AdamEngine(G, perceptual=perceptual), AdamConfig(**{**cfg.__dict__, "seed": seed})
    if name == "progressive":
        engine = ProgressiveEngine(G, heads=heads, perceptual=perceptual)
        return engine, ProgressiveConfig(steps=steps, seed=seed)
    if name == "learned":
        assert learned is not None
        return LearnedEngine(G, optimizer=learned, perceptual=perceptual), LearnedConfig(steps)
    if name == "progressive-learned":
        engine = ProgressiveEngine(G, heads=heads, perceptual=perceptual, learned=learned)
        return engine, ProgressiveConfig(steps=steps, optimizer="learned", seed=seed)
    raise InversionError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")


__all__ = [
    "ENGINES",
    "AdamConfig",
    "AdamEngine",
    "Engine",
    "InversionError",
    "InversionResult",
    "LearnedConfig",
    "LearnedEngine",
    "LearnedOptimizer",
    "ProgressiveConfig",
    "ProgressiveEngine",
    "StepReport",
    "available_engines",
    "make_engine",
    "run",
]
