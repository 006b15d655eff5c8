"""L-BFGS that evaluates the objective exactly once per step, for step-wise inversion engines.

An inversion step in StyleLens is one forward and backward pass through the generator, after
which a preview goes out. Library L-BFGS implementations run their line search inside one
``step`` call (several passes, no preview in between); this one is a small state machine
instead: :meth:`StepwiseLBFGS.trial` gives the point to evaluate next, :meth:`observe` takes
the loss and gradient there and decides the point after it.

* Direction: the two-loop recursion over the last ``history`` pairs (s, y), initial inverse
  Hessian scaled by s'y / y'y (Nocedal & Wright, Algorithm 7.4); pairs with y's <= 0 are not
  stored, so the approximation stays positive definite.
* Step length: 1 along a quasi-Newton direction; along steepest descent (the first step, and
  after a reset) the step whose largest coordinate move is ``first_step``, which plays the
  role of Adam's learning rate.
* Line search: Armijo backtracking over steps: a trial that does not decrease the loss enough
  (f_trial > f + c1 * alpha * g'd) is rejected and the next step evaluates alpha * backtrack;
  after ``max_backtracks`` rejections in a row the history is dropped and the search restarts
  along steepest descent.

On the embedded model this reaches the full-resolution error that Adam (lr 0.01) reaches in
200 steps in about a fifth of Adam's time (median 0.21, docs/performance.md), at the same cost
per step.
"""

from __future__ import annotations

import math
from collections import deque

import torch


class StepwiseLBFGS:
    """Minimise f(x) over a flat tensor x, one evaluation of (f, grad f) per step."""

    def __init__(
        self,
        x0: torch.Tensor,
        *,
        first_step: float,
        history: int = 10,
        c1: float = 1e-4,
        backtrack: float = 0.5,
        max_backtracks: int = 10,
    ) -> None:
        if first_step <= 0:
            raise ValueError(f"first_step must be positive, got {first_step}")
        if history < 1:
            raise ValueError(f"history must be at least 1, got {history}")
        self.first_step, self.c1, self.backtrack = first_step, c1, backtrack
        self.max_backtracks = max_backtracks
        self.x = x0.detach().flatten().clone()  # the accepted point
        self.f = math.inf
        self.g: torch.Tensor | None = None  # gradient at x (None until x is evaluated)
        self.d = torch.zeros_like(self.x)  # search direction
        self.alpha = 0.0
        self.pairs: deque[tuple[torch.Tensor, torch.Tensor, float]] = deque(maxlen=history)
        self.rejections = 0  # in a row
        self.rejected_total = 0

    def trial(self) -> torch.Tensor:
        """The point (flat) whose loss and gradient :meth:`observe` expects next."""
        if self.g is None:
            return self.x
        return self.x + self.alpha * self.d

    def observe(self, f: float, g: torch.Tensor) -> bool:
        """Take the loss and gradient at :meth:`trial`; True if that point was accepted."""
        g = g.detach().flatten()
        if self.g is None:  # the starting point
            self.f, self.g = f, g
            self._new_direction()
            return True
        slope = float(self.g @ self.d)  # < 0: d is a descent direction
        if math.isfinite(f) and f <= self.f + self.c1 * self.alpha * slope:
            s = self.alpha * self.d
            y = g - self.g
            ys = float(y @ s)
            if ys > 1e-12:
                self.pairs.append((s, y, ys))
            self.x, self.f, self.g = self.x + s, f, g
            self.rejections = 0
            self._new_direction()
            return True
        self.rejections += 1
        self.rejected_total += 1
        if self.rejections >= self.max_backtracks:
            self.pairs.clear()
            self.rejections = 0
            self._steepest()
        else:
            self.alpha *= self.backtrack
        return False

    def _steepest(self) -> None:
        assert self.g is not None
        self.d = -self.g
        self.alpha = self.first_step / max(float(self.g.abs().max()), 1e-12)

    def _new_direction(self) -> None:
        assert self.g is not None
        if not self.pairs:
            self._steepest()
            return
        q = self.g.clone()
        coeffs = []
        for s, y, ys in reversed(self.pairs):
            a = float(s @ q) / ys
            coeffs.append(a)
            q.sub_(y, alpha=a)
        _, y_last, ys_last = self.pairs[-1]  # initial inverse Hessian: (s'y / y'y) I
        q.mul_(ys_last / float(y_last @ y_last))
        for (s, y, ys), a in zip(self.pairs, reversed(coeffs), strict=True):
            b = float(y @ q) / ys
            q.add_(s, alpha=a - b)
        if float(self.g @ q) <= 0:  # not a descent direction (numerical trouble): restart
            self.pairs.clear()
            self._steepest()
            return
        self.d = -q
        self.alpha = 1.0
