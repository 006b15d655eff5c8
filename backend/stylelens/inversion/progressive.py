"""Progressive engine: invert at preview resolutions first, then climb to full resolution.

Seed 000's idea made an optimiser: a step at resolution r runs only the synthesis blocks up to
r and compares that block's preview head output with the target downsampled to r, so early
steps cost a fraction of a full pass; the schedule then moves up through the resolutions as
the step budget allows. ws stays one W+ latent throughout (layers above r simply receive no
gradient yet), so the result is always a valid full-generator latent.

While a stage runs below full resolution, the ws of the layers above it (which get no
gradient there) move with the last w the stage optimises: each is its start value plus that
w's move from its own start. From ``w_avg`` (every w the same) this is the last w itself, so
the full image keeps the coarse face found so far instead of mixing it with the average
face's fine styles; from an encoder's guess it keeps the guess's fine styles (colour,
texture), which copying the last w over them would throw away at the first step. A new stage
starts its newly active ws from those values.

Each stage minimises its loss with L-BFGS (default; :mod:`stylelens.inversion.lbfgs`, one
forward and backward pass per step, history reset when the stage changes), with Adam, or with
the model's learned optimizer (:mod:`stylelens.inversion.learned`, Adam's moments reset when
the stage changes).
L-BFGS is what makes the engine fast: on the embedded model it reaches the baseline's error in
0.21x its time (median of 16 targets) where Adam at lr 0.03 needed 0.48x (docs/performance.md).

The preview of every step is the head's image at the current resolution, with a per-target
AdaIN colour fit (a few Adam steps on the head's per-channel (s, b), on detached features)
that only colours the preview: the latent is optimised against the plain fitted head, so
what it learns carries over to the full generator.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Literal

import torch

from stylelens.inversion.common import (
    LatentSpace,
    expand,
    full_metrics,
    initial_latent,
    perceptual_weight,
    reconstruction_loss,
)
from stylelens.inversion.lbfgs import StepwiseLBFGS
from stylelens.inversion.learned import AdamMoments, LearnedOptimizer, check_fits
from stylelens.inversion.protocol import (
    InversionError,
    InversionResult,
    StepReport,
    Timer,
    check_target,
)
from stylelens.losses.perceptual import PerceptualLoss
from stylelens.networks.preview import PreviewHeads, downsample_to, fit_adain, torgb_w_index
from stylelens.networks.stylegan2 import BlockOutput, Generator

# Default stages: (fraction of the full resolution, share of the steps). From w_avg, a short
# coarse stage finds the face's layout for a few milliseconds a step; full-resolution steps
# then converge from there (measured in docs/performance.md; longer coarse stages plateau at
# the preview heads' fidelity). From a given start (an encoder's guess, a saved latent) the
# layout is already there and the coarse stage, fitting a preview head, only pulls the latent
# away from it (a held-out SynthFace: 22.9 -> 20.0 dB after 5 steps, docs/encoder.md): the
# default is then full resolution alone.
DEFAULT_STAGES = ((1 / 8, 0.1), (1.0, 0.9))
FROM_INIT_STAGES = ((1.0, 1.0),)


@dataclass(frozen=True)
class ProgressiveConfig:
    steps: int = 200
    # (resolution, share of the steps) per stage, coarse to fine; None: DEFAULT_STAGES (from
    # w_avg) or FROM_INIT_STAGES (from a given start), each at the lowest resolution
    # >= R * fraction that has a preview head.
    schedule: tuple[tuple[int, float], ...] | None = None
    # "lbfgs": L-BFGS, ``lr`` is the largest coordinate move of a steepest-descent step;
    # "adam": Adam with learning rate ``lr``; "learned": the engine's learned optimizer (W+
    # only; ``lr`` unused).
    optimizer: Literal["lbfgs", "adam", "learned"] = "lbfgs"
    lr: float = 0.03
    history: int = 20  # L-BFGS: (s, y) pairs kept (20 beat 10 on the embedded model)
    space: LatentSpace = "w+"
    perceptual_weight: float | None = None
    # The perceptual loss is used at resolutions >= this (None: only at full resolution, where
    # it costs no resizing; below, pixel MSE on the preview is cheap and enough for layout).
    perceptual_from: int | None = None
    colour_fit: bool = True  # AdaIN colour fit of the preview head, per target
    colour_fit_steps: int = 2  # AdaIN Adam steps per inversion step (warm-started)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.schedule is not None:
            if not self.schedule:
                raise ValueError("schedule needs at least one stage")
            res = [r for r, _ in self.schedule]
            if res != sorted(res) or len(set(res)) != len(res):
                raise ValueError(f"schedule resolutions must increase, got {res}")
            if any(s <= 0 for _, s in self.schedule):
                raise ValueError("every stage needs a positive share of the steps")
        if self.optimizer not in ("lbfgs", "adam", "learned"):
            raise ValueError(
                f"optimizer must be 'lbfgs', 'adam' or 'learned', got {self.optimizer!r}"
            )
        if self.optimizer == "learned" and self.space != "w+":
            raise ValueError("the learned optimizer works in W+ (one w per layer), not W")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


def stage_plan(
    G: Generator, heads: PreviewHeads | None, config: ProgressiveConfig, *, from_init: bool = False
) -> list[tuple[int, int]]:
    """[(resolution, steps)] covering exactly ``config.steps`` steps; ``from_init``: the
    inversion starts from a given latent rather than ``w_avg``."""
    R = G.img_resolution
    allowed = set(heads.resolutions if heads is not None else []) | {R}
    if config.schedule is None:
        stages: list[tuple[int, float]] = []
        # each at the lowest allowed resolution >= R * f
        for f, share in FROM_INIT_STAGES if from_init else DEFAULT_STAGES:
            r = min((a for a in allowed if a >= R * f), default=R)
            if not stages or stages[-1][0] != r:
                stages.append((r, share))
    else:
        bad = [r for r, _ in config.schedule if r not in allowed]
        if bad:
            raise InversionError(
                f"schedule resolutions {bad} have no preview head; this model has heads at "
                f"{sorted(allowed - {R})} (run `stylelens fit-preview-heads`)"
            )
        stages = list(config.schedule)
    total = sum(s for _, s in stages)
    counts = [int(config.steps * s / total) for _, s in stages]
    counts[-1] += config.steps - sum(counts)  # rounding goes to the finest stage
    return [(r, n) for (r, _), n in zip(stages, counts, strict=True) if n > 0]


@dataclass
class ProgressiveState:
    config: ProgressiveConfig
    target: torch.Tensor  # [1, 3, R, R]
    plan: list[tuple[int, int]]
    targets: dict[int, torch.Tensor]  # target downsampled per stage resolution
    latent: torch.Tensor  # the accepted point between steps
    start: torch.Tensor  # [1, num_ws, w_dim]: where the latent started (ws above a stage follow)
    optimizer: torch.optim.Optimizer | None  # Adam
    weight: float
    lbfgs: StepwiseLBFGS | None = None  # L-BFGS of the current stage
    moments: AdamMoments | None = None  # the learned optimizer's Adam moments, this stage
    preview: torch.Tensor | None = None  # L-BFGS: the preview of the last accepted point
    terms: dict[str, float] = field(default_factory=dict)  # and its loss terms
    adain: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    timer: Timer = field(default_factory=Timer)
    step: int = 0
    last_resolution: int = 0

    @property
    def done(self) -> bool:
        return self.step >= self.config.steps

    def resolution(self) -> int:
        """The stage resolution of the next step."""
        seen = 0
        for r, n in self.plan:
            seen += n
            if self.step < seen:
                return r
        return self.plan[-1][0]


class ProgressiveEngine:
    """Adam through the truncated generator and its preview heads, coarse to fine."""

    name = "progressive"

    def __init__(
        self,
        G: Generator,
        *,
        heads: PreviewHeads | None,
        perceptual: PerceptualLoss | None,
        learned: LearnedOptimizer | None = None,
    ) -> None:
        self.G, self.heads, self.perceptual = G, heads, perceptual
        if learned is not None:
            check_fits(learned, G, "this model")
            learned = learned.eval().requires_grad_(False)
        self.learned = learned
        self.name = "progressive-learned" if learned is not None else "progressive"

    def start(
        self, target: torch.Tensor, config: ProgressiveConfig, init_ws: torch.Tensor | None = None
    ) -> ProgressiveState:
        device = self.G.mapping.w_avg.device
        target = check_target(target, self.G.img_resolution).to(device)
        if config.optimizer == "learned" and self.learned is None:
            raise InversionError("this progressive engine was built without a learned optimizer")
        plan = stage_plan(self.G, self.heads, config, from_init=init_ws is not None)
        latent = initial_latent(self.G, init_ws, config.space)
        return ProgressiveState(
            config=config,
            target=target,
            plan=plan,
            targets={r: downsample_to(target, r) for r, _ in plan},
            latent=latent,
            start=expand(latent.detach(), self.G.num_ws).clone(),
            optimizer=(
                torch.optim.Adam([latent], lr=config.lr, betas=(0.9, 0.999))
                if config.optimizer == "adam"
                else None
            ),
            weight=perceptual_weight(self.perceptual, config.perceptual_weight),
        )

    def tied(self, latent: torch.Tensor, r: int, start: torch.Tensor) -> torch.Tensor:
        """[1, num_ws, w_dim] with the ws above a stage at ``r`` following its last w: each
        is its ``start`` value plus the move of that w from its start."""
        ws = expand(latent, self.G.num_ws)
        if r == self.G.img_resolution or latent.shape[1] == 1:
            return ws
        k = torgb_w_index(r)  # the last w a stage at r reaches
        move = ws[:, k : k + 1] - start[:, k : k + 1]
        return torch.cat([ws[:, : k + 1], start[:, k + 1 :] + move], dim=1)

    def current_ws(self, state: ProgressiveState) -> torch.Tensor:
        """The full-generator latent [1, num_ws, w_dim] the state stands for now."""
        r = state.last_resolution or state.resolution()
        return self.tied(state.latent, r, state.start)

    def _render(self, ws: torch.Tensor, r: int) -> tuple[torch.Tensor, BlockOutput]:
        out = self.G.synthesis.run_until(ws, r)
        if r == self.G.img_resolution:
            return out.img, out
        assert self.heads is not None
        return self.heads.preview(self.G, out, ws), out

    def step(self, state: ProgressiveState) -> StepReport:
        return step_together([(self, state)])[0]

    def _prepare(self, state: ProgressiveState) -> torch.Tensor:
        """Before a step's evaluation: the stage's start, the optimiser's trial point; returns
        the step's ws [1, num_ws, w_dim], differentiable in ``state.latent``."""
        cfg = state.config
        r = state.resolution()
        new_stage = r != state.last_resolution
        if state.last_resolution and new_stage and state.latent.shape[1] > 1:
            with torch.no_grad():  # the new stage's ws start where the tied ones were
                state.latent.copy_(self.current_ws(state))
        state.last_resolution = r
        if cfg.optimizer == "lbfgs":
            if new_stage or state.lbfgs is None:  # a new objective: a fresh history
                state.lbfgs = StepwiseLBFGS(state.latent, first_step=cfg.lr, history=cfg.history)
            with torch.no_grad():
                state.latent.copy_(state.lbfgs.trial().view_as(state.latent))
        elif cfg.optimizer == "learned" and (new_stage or state.moments is None):
            state.moments = AdamMoments.zeros_like(state.latent.detach())
        state.latent.grad = None
        return self.tied(state.latent, r, state.start)

    def _loss(
        self, state: ProgressiveState, pred: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        r = state.last_resolution
        cfg = state.config
        p_from = self.G.img_resolution if cfg.perceptual_from is None else cfg.perceptual_from
        use_p = self.perceptual if r >= p_from else None
        return reconstruction_loss(pred, state.targets[r], perceptual=use_p, weight=state.weight)

    def _finish(
        self,
        state: ProgressiveState,
        pred: torch.Tensor,
        out: BlockOutput,
        ws: torch.Tensor,
        terms: dict[str, float],
    ) -> StepReport:
        """After the evaluation (the latent's gradient in place): the optimiser's move, the
        preview (colour-fitted) and the report."""
        cfg = state.config
        r = state.last_resolution
        accepted = True
        if state.lbfgs is not None:
            assert state.latent.grad is not None
            accepted = state.lbfgs.observe(terms["total"], state.latent.grad)
            with torch.no_grad():  # between steps the latent is the accepted point
                state.latent.copy_(state.lbfgs.x.view_as(state.latent))
        elif state.moments is not None:
            assert state.latent.grad is not None and self.learned is not None
            with torch.no_grad():
                direction = state.moments.direction(state.latent.grad)
                state.latent.add_(self.learned(direction, state.latent))
        else:
            assert state.optimizer is not None
            state.optimizer.step()
        state.step += 1
        if accepted or state.preview is None:
            state.preview, state.terms = pred.detach(), terms
            if cfg.colour_fit and r != self.G.img_resolution:
                state.preview = self._colour_fit(state, out, ws.detach(), r)
        return StepReport(
            step=state.step,
            total=cfg.steps,
            elapsed=state.timer.seconds,
            losses=state.terms,
            resolution=r,
            preview=state.preview.clamp(-1, 1).cpu(),
        )

    def _colour_fit(
        self, state: ProgressiveState, out: BlockOutput, ws: torch.Tensor, r: int
    ) -> torch.Tensor:
        assert self.heads is not None
        detached = BlockOutput(r, out.x.detach(), out.img.detach())

        def head_fn(adain: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            assert self.heads is not None
            return self.heads.preview(self.G, detached, ws, adain=adain)

        s, b = fit_adain(
            head_fn,
            state.targets[r],
            detached.x.shape[1],
            steps=state.config.colour_fit_steps,
            init=state.adain.get(r),
        )
        state.adain[r] = (s, b)
        with torch.no_grad():
            return head_fn(adain=(s, b))

    def result(self, state: ProgressiveState) -> InversionResult:
        ws = self.current_ws(state).detach().clone()
        metrics = full_metrics(self.G, ws, state.target, perceptual=self.perceptual)
        return InversionResult(
            ws=ws.cpu(),
            noise={},
            adain={r: (s.cpu(), b.cpu()) for r, (s, b) in state.adain.items()},
            metrics=metrics,
            engine=self.name,
            perceptual=self.perceptual.name if self.perceptual is not None else "none",
            steps=state.step,
            elapsed=state.timer.seconds,
            config={**dataclasses.asdict(state.config), "plan": state.plan},
        )


def can_step_together(
    a: tuple[ProgressiveEngine, ProgressiveState], b: tuple[ProgressiveEngine, ProgressiveState]
) -> bool:
    """Whether two inversions' next steps can run as one batched evaluation: the same
    generator, preview heads and perceptual loss, at the same stage resolution."""
    (ea, sa), (eb, sb) = a, b
    return (
        ea.G is eb.G
        and ea.heads is eb.heads
        and ea.perceptual is eb.perceptual
        and not sa.done
        and not sb.done
        and sa.resolution() == sb.resolution()
    )


def step_together(
    items: list[tuple[ProgressiveEngine, ProgressiveState]],
) -> list[StepReport]:
    """One step of each inversion, their generator passes as one batch: the latents' trial
    points concatenated, one synthesis to the stage's resolution (and its preview head), each
    inversion's own loss on its slice, one backward through the sum (each latent gets its own
    gradient: the losses share no parameter), then each optimiser's move and preview. With one
    item this is :meth:`ProgressiveEngine.step`. ``benchmarks/batching.py --part steps``: on a
    2-core CPU four steps in one pass cost 0.68x each at full resolution, 0.48x at 64 px.

    Raises:
        ValueError: the items cannot step together (:func:`can_step_together`).
    """
    first = items[0]
    if any(not can_step_together(first, item) for item in items[1:]):
        raise ValueError("these inversions cannot step together (model or stage differ)")
    engine = first[0]
    r = first[1].resolution()
    t0 = time.perf_counter()
    ws = [e._prepare(s) for e, s in items]
    pred, out = engine._render(torch.cat(ws), r)
    total: torch.Tensor | None = None
    terms: list[dict[str, float]] = []
    for i, (e, s) in enumerate(items):
        loss, t = e._loss(s, pred[i : i + 1])
        terms.append(t)
        total = loss if total is None else total + loss
    assert total is not None
    total.backward()
    share = (time.perf_counter() - t0) / len(items)  # the batched pass, shared out
    reports = []
    for i, (e, s) in enumerate(items):
        t1 = time.perf_counter()
        own = BlockOutput(r, out.x[i : i + 1], out.img[i : i + 1])
        report = e._finish(s, pred[i : i + 1], own, ws[i], terms[i])
        s.timer.seconds += share + time.perf_counter() - t1
        reports.append(dataclasses.replace(report, elapsed=s.timer.seconds))
    return reports
