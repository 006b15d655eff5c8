"""The step protocol every inversion engine follows.

``state = engine.start(target, config)``, then ``report = engine.step(state)`` until
``state.done``, then ``engine.result(state)``. Engines do no I/O and keep no global state;
a caller cancels by simply not calling ``step`` again, and two runs with the same config
(and seed) give the same reports. The CLI, the web app's worker and the benchmarks all drive
engines through :func:`run` or this loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import torch

from stylelens.errors import StyleLensError


class InversionError(StyleLensError):
    """An inversion cannot start or continue as asked (bad target, bad config)."""


@dataclass(frozen=True)
class StepReport:
    """What one step did; cheap to make, safe to hand to another thread."""

    step: int  # steps done so far (1 after the first step)
    total: int  # steps planned
    elapsed: float  # seconds spent inside step() since start
    losses: dict[str, float]  # the loss terms of this step ("mse", "perceptual", "total", ...)
    resolution: int  # resolution the step optimised at
    preview: torch.Tensor  # [1, 3, r, r] in [-1, 1], detached, on the CPU


@dataclass(frozen=True)
class InversionResult:
    """The latent found and how well it reconstructs the target at full resolution."""

    ws: torch.Tensor  # [1, num_ws, w_dim], a valid full-generator latent
    noise: dict[str, torch.Tensor]  # optimised noise maps by layer name (empty if not optimised)
    adain: dict[int, tuple[torch.Tensor, torch.Tensor]]  # preview colour fit (s, b) per res
    metrics: dict[str, float]  # full-resolution "psnr", "mse", "perceptual"
    engine: str
    perceptual: str  # the perceptual backend's name
    steps: int
    elapsed: float  # seconds spent in step()
    config: dict[str, Any] = field(default_factory=dict)
    # The engine's final image where it is not G(ws): a multi-code restoration's output.
    image: torch.Tensor | None = None
    # Tensors of an engine whose result is not one latent (mGANprior's codes, alphas, tail).
    codes: dict[str, torch.Tensor] = field(default_factory=dict)


S = TypeVar("S")


class Engine(Protocol[S]):
    """An inversion engine (Adam, progressive, learned optimizer, mGANprior...)."""

    name: str

    def start(
        self, target: torch.Tensor, config: Any, init_ws: torch.Tensor | None = None
    ) -> S: ...

    def step(self, state: S) -> StepReport: ...

    def current_ws(self, state: S) -> torch.Tensor: ...

    def result(self, state: S) -> InversionResult: ...


class Timer:
    """Accumulates the seconds spent inside ``with timer:`` blocks."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> Timer:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._t0


def check_target(target: torch.Tensor, resolution: int) -> torch.Tensor:
    """A target must be [1, 3, R, R] at the model's resolution, in [-1, 1]."""
    if target.ndim != 4 or target.shape[0] != 1 or target.shape[1] != 3:
        raise InversionError(f"target must be [1, 3, H, W], got {list(target.shape)}")
    if target.shape[-2:] != (resolution, resolution):
        raise InversionError(
            f"target is {target.shape[-1]}x{target.shape[-2]}, the model makes "
            f"{resolution}x{resolution}: crop and resize it first"
        )
    if not torch.isfinite(target).all():
        raise InversionError("target holds NaN or infinite values")
    return target.float().clamp(-1, 1)


def run(
    engine: Engine[Any],
    target: torch.Tensor,
    config: Any,
    *,
    on_step: Callable[[StepReport], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> InversionResult:
    """Drive ``engine`` to the end (or until ``should_stop()``) and return its result."""
    state = engine.start(target, config)
    while not state.done:
        if should_stop is not None and should_stop():
            break
        report = engine.step(state)
        if on_step is not None:
            on_step(report)
    return engine.result(state)
