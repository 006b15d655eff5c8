"""The step-wise L-BFGS of the progressive engine: one evaluation per step, a monotone accepted
loss, and fast convergence where gradient descent is slow."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from stylelens.inversion.lbfgs import StepwiseLBFGS


def quadratic(n: int = 50, condition: float = 1e3, seed: int = 0):
    """f(x) = 0.5 (x - x*)' A (x - x*) with A's eigenvalues spread over ``condition``."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    A = q @ torch.diag(torch.logspace(0, math.log10(condition), n, dtype=torch.float64)) @ q.T
    x_star = torch.randn(n, generator=g, dtype=torch.float64)

    def fg(x: torch.Tensor) -> tuple[float, torch.Tensor]:
        d = x - x_star
        return float(0.5 * d @ A @ d), A @ d

    return fg, x_star


def minimise(opt: StepwiseLBFGS, fg, steps: int) -> list[float]:
    accepted = []
    for _ in range(steps):
        f, g = fg(opt.trial())
        if opt.observe(f, g):
            accepted.append(f)
    return accepted


def test_converges_on_an_ill_conditioned_quadratic_where_gradient_descent_crawls() -> None:
    fg, x_star = quadratic()
    x0 = torch.zeros_like(x_star)
    opt = StepwiseLBFGS(x0, first_step=0.1, history=10)
    minimise(opt, fg, 150)
    assert float((opt.x - x_star).norm() / x_star.norm()) < 1e-3
    # gradient descent with the best fixed step (1 / largest eigenvalue) after as many steps
    x = x0.clone()
    for _ in range(150):
        x = x - 1e-3 * fg(x)[1]
    assert float((x - x_star).norm() / x_star.norm()) > 0.1


def test_accepted_losses_never_increase_and_bad_trials_are_rejected() -> None:
    def rosenbrock(x: torch.Tensor) -> tuple[float, torch.Tensor]:
        x = x.detach().requires_grad_(True)
        f = (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
        f.backward()
        assert x.grad is not None
        return float(f), x.grad

    opt = StepwiseLBFGS(torch.tensor([-1.2, 1.0], dtype=torch.float64), first_step=0.5)
    accepted = minimise(opt, rosenbrock, 300)
    assert all(b <= a for a, b in itertools.pairwise(accepted))
    assert opt.rejected_total > 0  # the first, too long, steps were backtracked
    assert torch.allclose(opt.x, torch.tensor([1.0, 1.0], dtype=torch.float64), atol=1e-3)


def test_a_rejected_trial_keeps_the_point_and_halves_the_step() -> None:
    opt = StepwiseLBFGS(torch.zeros(3), first_step=1.0)
    assert torch.equal(opt.trial(), torch.zeros(3))  # the start is evaluated first
    assert opt.observe(1.0, torch.tensor([1.0, 0.0, 0.0]))
    first = opt.trial()
    assert torch.allclose(first, torch.tensor([-1.0, 0.0, 0.0]))  # largest move = first_step
    assert not opt.observe(5.0, torch.tensor([1.0, 0.0, 0.0]))  # worse: rejected
    assert torch.equal(opt.x, torch.zeros(3))
    assert torch.allclose(opt.trial(), first / 2)
    assert not opt.observe(float("nan"), torch.zeros(3))  # NaN is rejected too


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="first_step"):
        StepwiseLBFGS(torch.zeros(2), first_step=0)
    with pytest.raises(ValueError, match="history"):
        StepwiseLBFGS(torch.zeros(2), first_step=0.1, history=0)
