"""Directions optimised through the generator and the attribute network (method "optimized").

InterFaceGAN fits a hyperplane to how an attribute varies among sampled faces, so its normal
also carries whatever co-varies with that attribute in the model (in the embedded model,
glasses come with a bluer background, smiles with hair colour). Conditioning removes what
other *linear* boundaries explain, which helps little where the attributes are far from
linear in W. This method optimises the edit itself, measured the way
``stylelens directions measure`` measures it:

* a per-layer offset ``V`` [num_ws, w_dim] of fixed size ``r`` (the root mean square of its
  per-layer norms), starting from an existing direction (the InterFaceGAN one);
* on a fresh batch of sampled faces every step, ``D = scores(G(ws + V)) - scores(G(ws))``
  (the attribute network's scores, :func:`~stylelens.directions.measure.attribute_scores`);
* loss = ``-mean(D_own) / c + sum_k (mean(D_k) / (c * tol_k))^2`` over every other attribute
  k, with ``c`` the wanted change at the default step and ``tol_k`` = 1/4 (1/8 for the
  identity attributes face width and skin tone): an off-target change of a quarter of the
  wanted one costs as much as the whole wanted change gains.

Gradients flow through the generator and the attribute network into ``V`` only; each step
renders new faces (z seeds from ``OPT_SEED``, disjoint from the fitting, tuning and measuring
faces), so the direction cannot fit a fixed set of faces.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from stylelens.directions.core import Direction
from stylelens.directions.ganspace import sample_w
from stylelens.directions.measure import (
    IDENTITY_ATTRIBUTES,
    EditEffect,
    attribute_scores,
    measure_edit,
    render_scores,
    score_names,
)
from stylelens.networks.attributes import AttributeNet
from stylelens.networks.stylegan2 import Generator

OPT_SEED = 3_000_000  # faces the optimisation renders (fitting 0.., tuning 1e6.., measure 2e6..)


@dataclass(frozen=True)
class OptimizeConfig:
    steps: int = 120
    batch: int = 8
    lr: float = 0.05
    target_change: float = 0.25  # c: own score change wanted at the default step
    tolerance: float = 0.25  # tol_k for ordinary attributes, as a share of c
    identity_tolerance: float = 0.125  # tol_k for face width and skin tone
    tune_faces: int = 48  # faces (TUNE_SEED) that set the default step afterwards
    max_step: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch < 1:
            raise ValueError("steps and batch must be at least 1")
        if self.target_change <= 0 or self.tolerance <= 0 or self.identity_tolerance <= 0:
            raise ValueError("target_change and the tolerances must be positive")


def _rms_norm(v: torch.Tensor) -> torch.Tensor:
    return v.norm(dim=-1).square().mean().sqrt()


def edit_objective(
    G: Generator,
    net: AttributeNet,
    ws: torch.Tensor,
    v: torch.Tensor,
    attribute: str,
    config: OptimizeConfig,
) -> tuple[torch.Tensor, float, float]:
    """(loss, mean own change, off-target penalty) of adding ``v`` [num_ws, w_dim] to the
    faces ``ws`` [N, num_ws, w_dim] (see the module doc); the loss carries gradients to v.

    Raises:
        ValueError: for an attribute the network does not score.
    """
    names = score_names(net)
    if attribute not in names:
        raise ValueError(f"unknown attribute {attribute!r}; the attribute network scores {names}")
    j = names.index(attribute)
    tol = torch.tensor(
        [config.identity_tolerance if n in IDENTITY_ATTRIBUTES else config.tolerance for n in names]
    )
    off = torch.ones(len(names), dtype=torch.bool)
    off[j] = False
    with torch.no_grad():
        base = attribute_scores(net, G.synthesis(ws))
    mean = (attribute_scores(net, G.synthesis(ws + v[None])) - base).mean(dim=0)  # [A]
    c = config.target_change
    penalty = ((mean[off] / (c * tol[off].to(mean))) ** 2).sum()
    loss = -mean[j] / c + penalty
    return loss, float(mean[j]), float(penalty)


def optimize_direction(
    G: Generator,
    net: AttributeNet,
    start: Direction,
    attribute: str,
    *,
    config: OptimizeConfig = OptimizeConfig(),
    log: Callable[[str], None] = lambda _: None,
) -> tuple[torch.Tensor, float, list[dict[str, float]]]:
    """(V / r [num_ws, w_dim], r, per-step log) for ``attribute``, starting from ``start``
    at its default step (whose w distance sets r).

    Raises:
        ValueError: for an attribute the network does not score.
    """
    device = G.mapping.w_avg.device
    v0 = start.delta(start.step, G.num_ws).float().to(device)  # the start's default edit
    r = float(_rms_norm(v0))
    if r == 0:
        raise ValueError(f"direction {start.name!r} is zero on every layer")
    u = (v0 / r).clone().requires_grad_(True)
    opt = torch.optim.Adam([u], lr=config.lr)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    for step in range(config.steps):
        seed = OPT_SEED + config.seed * 1_000_003 + step * config.batch
        w = sample_w(G, config.batch, seed=seed).to(device)[:, None].repeat(1, G.num_ws, 1)
        loss, own, penalty = edit_objective(G, net, w, r * u / _rms_norm(u), attribute, config)
        opt.zero_grad(set_to_none=True)
        loss.backward(inputs=[u])  # no gradients for the networks' weights
        opt.step()
        history.append({"step": step + 1, "own": own, "penalty": penalty})
        if (step + 1) % 10 == 0 or step == 0:
            log(
                f"{attribute}: step {step + 1}/{config.steps} own {own:+.3f} "
                f"penalty {penalty:.3f} ({time.perf_counter() - t0:.0f} s)"
            )
    with torch.no_grad():
        vector = (u / _rms_norm(u)).detach().cpu()
    return vector, r, history


def compute_optimized(
    G: Generator,
    net: AttributeNet,
    starts: list[Direction],
    *,
    config: OptimizeConfig = OptimizeConfig(),
    log: Callable[[str], None] = lambda _: None,
    precision: str = "float32",
) -> list[tuple[Direction, EditEffect, EditEffect]]:
    """Optimise each start direction (its name is the attribute) and set its default step on
    the tuning faces. Returns (optimised direction, its effect at +1 unit and the start's
    effect at its step, both on the tuning faces) per attribute; the caller keeps whichever
    is more selective."""
    from stylelens.directions.compute import TUNE_SEED, _ws

    names = score_names(net)
    tune_ws = _ws(G, config.tune_faces, TUNE_SEED)
    tune_base = render_scores(G, net, tune_ws, precision=precision)
    out = []
    for start in starts:
        attribute = str(start.provenance.get("attribute", start.name))
        t0 = time.perf_counter()
        vector, r, history = optimize_direction(G, net, start, attribute, config=config, log=log)
        seconds = time.perf_counter() - t0
        provisional = Direction(
            name=start.name, vector=vector, layers="all", unit=r, step=1.0, method="optimized"
        )
        effect = measure_edit(
            G, net, tune_ws, tune_base, provisional, 1.0, names=names, target=attribute,
            precision=precision,
        )  # fmt: skip
        before = measure_edit(
            G, net, tune_ws, tune_base, start, start.step, names=names, target=attribute,
            precision=precision,
        )  # fmt: skip
        own = effect.own()
        step = min(config.max_step, max(0.5, config.target_change / max(abs(own), 1e-6)))
        step = round(step * 4) / 4
        hi = min(2 * step, 4.0)
        last = history[-10:]
        direction = Direction(
            name=start.name,
            vector=vector,
            layers="all",
            unit=r,
            slider=(-hi, hi),
            step=step,
            method="optimized",
            provenance={
                "attribute": attribute,
                "started_from": {
                    "method": start.method,
                    "layers": start.layers,
                    "step": start.step,
                    "tuned_selectivity": round(before.selectivity(), 2),
                },
                "unit": "w distance (RMS over layers) of the optimised edit",
                "config": asdict(config),
                "faces_seen": config.steps * config.batch,
                "opt_seed": OPT_SEED,
                "seconds": round(seconds, 1),
                "final_own": round(sum(h["own"] for h in last) / len(last), 4),
                "final_penalty": round(sum(h["penalty"] for h in last) / len(last), 4),
                "tuned_selectivity": round(effect.selectivity(), 2),
                "tuned_own_per_unit": round(own, 4),
                "tune_faces": config.tune_faces,
                "tune_seed": TUNE_SEED,
            },
        )
        log(
            f"{attribute}: optimised selectivity {effect.selectivity():.1f} "
            f"(start {before.selectivity():.1f}), step {step}, {seconds:.0f} s"
        )
        out.append((direction, effect, before))
    return out
