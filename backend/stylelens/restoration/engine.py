"""A restoration as one engine of the step protocol: mGANprior first, then (optionally) the
hand-off, a single-code W+ inversion of the restored image, so that the sliders, style mixing
and commits, which all work on one W+ latent, apply to the restored face.

Why a hand-off rather than editing the N codes: every edit, render, commit and latent file of
StyleLens is one W+ latent, and the restored image is a clean face of the model's domain (the
degradation is gone), which one W+ reconstructs well; the N codes and their importances are
kept in the codes file for whoever wants them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from stylelens.inversion.multicode import MultiCodeConfig, MultiCodeEngine, MultiCodeState
from stylelens.inversion.protocol import Engine, InversionResult, StepReport
from stylelens.losses.perceptual import PerceptualLoss
from stylelens.networks.stylegan2 import Generator
from stylelens.restoration.tasks import DEFAULT_STEPS, DEFAULTS, Task, check_layer, default_layer


def restoration_config(
    task: Task,
    resolution: int,
    *,
    steps: int = DEFAULT_STEPS,
    codes: int | None = None,
    layer: int | None = None,
    seed: int = 0,
) -> MultiCodeConfig:
    """mGANprior's settings for ``task`` (codes, composing layer), overridable; the layer is
    checked against the model's resolutions."""
    layer = default_layer(task.name, resolution) if layer is None else layer
    check_layer(layer, resolution)
    return MultiCodeConfig(
        steps=steps,
        codes=DEFAULTS[task.name].codes if codes is None else codes,
        layer=layer,
        task=task,
        seed=seed,
    )


@dataclass(frozen=True)
class RestoreConfig:
    restore: MultiCodeConfig
    handoff: Any = None  # the hand-off engine's config; None: no hand-off

    @property
    def steps(self) -> int:
        return self.restore.steps + (self.handoff.steps if self.handoff is not None else 0)


@dataclass
class RestoreState:
    config: RestoreConfig
    restore: MultiCodeState
    handoff: Any = None  # the hand-off engine's state, once it started
    restored: torch.Tensor | None = None  # mGANprior's output [1, 3, R, R]

    @property
    def done(self) -> bool:
        if self.config.handoff is None:
            return self.restore.done
        return self.handoff is not None and self.handoff.done


class RestoreEngine:
    """mGANprior's steps, then the hand-off engine's steps on the restored image."""

    name = "restore"

    def __init__(
        self,
        G: Generator,
        *,
        perceptual: PerceptualLoss | None,
        handoff: Engine[Any] | None = None,
        handoff_init: Callable[[torch.Tensor], torch.Tensor | None] | None = None,
    ) -> None:
        self.G = G
        self.multicode = MultiCodeEngine(G, perceptual=perceptual)
        self.handoff = handoff
        self.handoff_init = handoff_init  # the restored image -> where the hand-off starts

    def start(
        self, target: torch.Tensor, config: RestoreConfig, init_ws: torch.Tensor | None = None
    ) -> RestoreState:
        if config.handoff is not None and self.handoff is None:
            raise ValueError("a hand-off config needs a hand-off engine")
        return RestoreState(config, self.multicode.start(target, config.restore, init_ws))

    def step(self, state: RestoreState) -> StepReport:
        if not state.restore.done:
            report = self.multicode.step(state.restore)
            return StepReport(
                step=report.step,
                total=state.config.steps,
                elapsed=report.elapsed,
                losses=report.losses,
                resolution=report.resolution,
                preview=report.preview,
            )
        assert self.handoff is not None and state.config.handoff is not None
        if state.handoff is None:
            rs = state.restore
            state.restored = rs.config.task.finish(self.multicode.image(rs), rs.observed)
            init = self.handoff_init(state.restored) if self.handoff_init else None
            state.handoff = self.handoff.start(state.restored, state.config.handoff, init)
        report = self.handoff.step(state.handoff)
        offset = state.config.restore.steps
        return StepReport(
            step=offset + report.step,
            total=state.config.steps,
            elapsed=state.restore.timer.seconds + report.elapsed,
            losses={f"handoff_{k}": v for k, v in report.losses.items()},
            resolution=report.resolution,
            preview=report.preview,
        )

    def current_ws(self, state: RestoreState) -> torch.Tensor:
        if state.handoff is not None:
            assert self.handoff is not None
            return self.handoff.current_ws(state.handoff)
        return self.multicode.current_ws(state.restore)

    def result(self, state: RestoreState) -> InversionResult:
        """The hand-off's latent (or mGANprior's dominant code without one) with the restored
        image and the codes; metrics: mGANprior's on the observation, and the hand-off's
        ``handoff_psnr`` against the restored image."""
        restored = self.multicode.result(state.restore)
        if state.handoff is None:
            return restored
        assert self.handoff is not None
        single = self.handoff.result(state.handoff)
        metrics = {**restored.metrics, **{f"handoff_{k}": v for k, v in single.metrics.items()}}
        return InversionResult(
            ws=single.ws,
            noise=single.noise,
            adain=single.adain,
            metrics=metrics,
            engine=f"{restored.engine}+{single.engine}",
            perceptual=restored.perceptual,
            steps=restored.steps + single.steps,
            elapsed=restored.elapsed + single.elapsed,
            config={**restored.config, "handoff": single.config},
            image=restored.image,
            codes=restored.codes,
        )
