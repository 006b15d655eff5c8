"""InterFaceGAN: linear attribute boundaries in W (Shen et al., CVPR 2020 / TPAMI 2020).

Label sampled w with the attribute network, fit a hyperplane per attribute and use its unit
normal n as the direction: a logistic-regression classifier for a binary attribute (the paper
uses a linear SVM; both give a separating hyperplane), ridge regression for a continuous one.
Conditional manipulation (paper sec. 2.2) removes from n its component along chosen other
normals, so that moving along it leaves those attributes' scores unchanged to first order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Kind = Literal["binary", "continuous"]


@dataclass(frozen=True)
class BoundaryConfig:
    """How a boundary is fitted."""

    val_fraction: float = 0.2  # held-out share for accuracy / R^2
    # Penalties tried (relative to the feature variance); the one that predicts an inner
    # 20% of the training samples best is refitted on all of them. The held-out share is
    # never used to choose.
    l2_grid: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
    max_iter: int = 200  # L-BFGS iterations of the logistic fit
    seed: int = 0  # train / held-out split


@dataclass(frozen=True)
class Boundary:
    """A fitted hyperplane n . (w - mean) + bias and its held-out quality."""

    normal: torch.Tensor  # [w_dim], unit norm, pointing toward more of the attribute
    bias: float
    kind: Kind
    metric: str  # "accuracy" (binary) or "r2" (continuous)
    l2: float  # the penalty chosen on the inner split
    value: float  # on the held-out samples
    n_train: int
    n_val: int


def _split(n: int, config: BoundaryConfig) -> tuple[torch.Tensor, torch.Tensor]:
    n_val = max(1, round(n * config.val_fraction))
    if n - n_val < 2:
        raise ValueError(f"need at least {n_val + 2} samples to fit and hold out, got {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed))
    return perm[n_val:], perm[:n_val]


def _logistic(x: torch.Tensor, y: torch.Tensor, l2: float, max_iter: int) -> torch.Tensor:
    """Weights [D + 1] (last: bias) minimising mean BCE + l2 ||w||^2, by L-BFGS."""
    xb = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    theta = torch.zeros(xb.shape[1], dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([theta], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = xb @ theta
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
        loss = loss + l2 * theta[:-1].square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return theta.detach()


def _ridge(x: torch.Tensor, y: torch.Tensor, l2: float) -> torch.Tensor:
    """Weights [D + 1] (last: bias) of ridge regression on centred data, closed form."""
    xm, ym = x.mean(dim=0), y.mean()
    xc = x - xm
    gram = xc.T @ xc / len(x) + l2 * torch.eye(x.shape[1], dtype=x.dtype)
    coef = torch.linalg.solve(gram, xc.T @ (y - ym) / len(x))
    return torch.cat([coef, (ym - xm @ coef).reshape(1)])


def _fit(
    x: torch.Tensor, y: torch.Tensor, kind: Kind, l2: float, config: BoundaryConfig
) -> torch.Tensor:
    if kind == "binary":
        return _logistic(x, y, l2, config.max_iter)
    return _ridge(x, y, l2)


def _score(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, kind: Kind) -> float:
    """Accuracy (binary) or R^2 (continuous) of weights theta [D + 1] on (x, y)."""
    pred = x @ theta[:-1] + theta[-1]
    if kind == "binary":
        return float(((pred > 0).double() == y).double().mean())
    resid = (y - pred).square().mean()
    return 1.0 - float(resid / y.var(correction=0).clamp_min(1e-12))


def fit_boundary(
    w: torch.Tensor, y: torch.Tensor, *, kind: Kind, config: BoundaryConfig | None = None
) -> Boundary:
    """Fit an attribute boundary in W.

    Args:
        w: [N, w_dim] latents.
        y: [N] labels: 0/1 for ``binary``, real values for ``continuous``.
        kind: ``binary`` (logistic regression) or ``continuous`` (ridge regression).

    Returns:
        The :class:`Boundary`, its normal unit-norm and oriented toward larger y.

    Raises:
        ValueError: on mismatched shapes, a binary label that is not 0/1, or a label with one
            value only (nothing to separate).
    """
    config = config or BoundaryConfig()
    if w.ndim != 2 or y.shape != (w.shape[0],):
        raise ValueError(f"need w [N, w_dim] and y [N], got {list(w.shape)}, {list(y.shape)}")
    x, t = w.double(), y.double()
    if kind == "binary" and not torch.all((t == 0) | (t == 1)):
        raise ValueError("binary labels must be 0 or 1")
    if t.std() == 0:
        raise ValueError("every sample has the same label; sample more or pick another attribute")
    train, val = _split(len(x), config)
    mean = x[train].mean(dim=0)
    xs = x - mean
    scale = float(xs[train].std())  # unit-variance features for the penalty and L-BFGS
    xs = xs / scale
    inner_fit, inner_val = (train[i] for i in _split(len(train), config))
    l2 = min(
        config.l2_grid,
        key=lambda lam: (
            -_score(
                _fit(xs[inner_fit], t[inner_fit], kind, lam, config),
                xs[inner_val],
                t[inner_val],
                kind,
            )
        ),
    )
    theta = _fit(xs[train], t[train], kind, l2, config)
    value = _score(theta, xs[val], t[val], kind)
    coef, bias = theta[:-1] / scale, float(theta[-1])
    metric = "accuracy" if kind == "binary" else "r2"
    norm = float(coef.norm())
    if norm == 0:
        raise ValueError("the fit found no direction (all weights zero); raise the sample size")
    return Boundary(
        normal=(coef / norm).float(),
        l2=l2,
        bias=bias / norm,
        kind=kind,
        metric=metric,
        value=value,
        n_train=len(train),
        n_val=len(val),
    )


def condition(normal: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """Conditional manipulation: ``normal`` minus its projection on span(others), unit norm.

    Args:
        normal: [w_dim].
        others: [K, w_dim] directions to keep fixed (need not be orthogonal).

    Raises:
        ValueError: if ``normal`` lies (almost) in the span of ``others``.
    """
    if others.numel() == 0:
        return normal / normal.norm()
    q, _ = torch.linalg.qr(others.double().T)  # [w_dim, K] orthonormal basis of the span
    n = normal.double()
    n = n - q @ (q.T @ n)
    if float(n.norm()) < 1e-6 * float(normal.double().norm()):
        raise ValueError("the direction lies in the span of the ones to keep fixed")
    return (n / n.norm()).float()
