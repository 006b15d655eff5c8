"""Directions computed from a model: SeFa, GANSpace and InterFaceGAN, as stored ``Direction``s.

The maths lives in ``sefa``, ``ganspace``, ``interfacegan`` and ``gradients``; this module
samples the model, labels faces with the attribute network, and for InterFaceGAN picks each
direction's vector (boundary normal, conditioned normal or conditioned attribute gradient),
layer range and default step by measuring candidates on held-out faces.

Seeds: fitting samples use z seeds from ``seed`` (the mean gradients are taken on the first
``gradient_faces`` of them); tuning faces start at ``TUNE_SEED`` and the quality report's
faces at ``MEASURE_SEED``, so the three sets never overlap.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from stylelens.directions.core import Direction, DirectionError, layer_indices
from stylelens.directions.ganspace import pca, sample_w, std_along
from stylelens.directions.gradients import mean_score_gradients, range_gradients
from stylelens.directions.interfacegan import (
    BoundaryConfig,
    Kind,
    condition,
    fit_boundary,
)
from stylelens.directions.measure import (
    EditEffect,
    binary_attributes,
    measure_edit,
    render_measures,
    render_scores,
    score_names,
)
from stylelens.directions.sefa import modulation_weights, sefa
from stylelens.networks.attributes import AttributeNet
from stylelens.networks.stylegan2 import Generator

TUNE_SEED = 1_000_000
MEASURE_SEED = 2_000_000
UNIT_SAMPLES = 5000  # w samples that set a SeFa direction's unit


def _ws(G: Generator, n: int, seed: int) -> torch.Tensor:
    return sample_w(G, n, seed=seed)[:, None].repeat(1, G.num_ws, 1)  # [n, num_ws, w_dim]


def compute_sefa(G: Generator, *, layers: str = "all", top: int = 10) -> list[Direction]:
    """Top-``top`` SeFa directions of ``layers``, named ``sefa-<layers>-00`` ..."""
    vectors, eigenvalues = sefa(modulation_weights(G, layers), top)
    units = std_along(sample_w(G, UNIT_SAMPLES), vectors)
    tag = layers.replace("+", "_")
    return [
        Direction(
            name=f"sefa-{tag}-{i:02d}",
            vector=v,
            layers=layers,
            unit=float(u),
            slider=(-3.0, 3.0),
            step=2.0,
            method="sefa",
            provenance={"index": i, "eigenvalue": float(e), "unit_samples": UNIT_SAMPLES},
        )
        for i, (v, e, u) in enumerate(zip(vectors, eigenvalues, units, strict=True))
    ]


def compute_ganspace(
    G: Generator, *, layers: str = "all", top: int = 10, n: int = 10_000, seed: int = 0
) -> list[Direction]:
    """Top-``top`` principal components of ``n`` sampled w, applied on ``layers``."""
    components, stds = pca(sample_w(G, n, seed=seed), top)
    tag = layers.replace("+", "_")
    return [
        Direction(
            name=f"ganspace-{tag}-{i:02d}",
            vector=v,
            layers=layers,
            unit=float(s),
            slider=(-3.0, 3.0),
            step=2.0,
            method="ganspace",
            provenance={"index": i, "std": float(s), "samples": n, "seed": seed},
        )
        for i, (v, s) in enumerate(zip(components, stds, strict=True))
    ]


@dataclass(frozen=True)
class InterFaceGANConfig:
    """Sampling, fitting and tuning of InterFaceGAN directions."""

    n: int = 3000  # labelled samples (20% held out for accuracy / R^2)
    seed: int = 0
    tune: bool = True  # pick layer range, conditioning and step by measurement
    tune_faces: int = 48
    gradient_faces: int = 512  # faces whose mean attribute gradients are taken (0: none)
    layer_candidates: tuple[str, ...] = ("all", "coarse", "middle", "fine", "coarse+middle")
    target_change: float = 0.25  # own score change at the default step (fraction of range)
    max_step: float = 3.0  # in units (standard deviations of w along the direction)
    min_own: float = 0.3  # a candidate's own change must reach this share of the strongest
    batch: int = 16
    precision: str = "bfloat16"


def label_samples(
    G: Generator,
    net: AttributeNet,
    n: int,
    *,
    seed: int,
    batch: int = 16,
    precision: str = "bfloat16",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(w [n, w_dim], scores [n, A]) of ``n`` sampled faces, labelled by the attribute net."""
    ws = _ws(G, n, seed)
    return ws[:, 0], render_scores(G, net, ws, batch=batch, precision=precision)


def _cached_labels(
    path: Path | None, config: InterFaceGANConfig, names: list[str]
) -> tuple[torch.Tensor, torch.Tensor] | None:
    if path is None or not path.is_file():
        return None
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
        want = {"n": str(config.n), "seed": str(config.seed), "names": ",".join(names)}
        if any(meta.get(k) != v for k, v in want.items()):
            return None
        return f.get_tensor("w"), f.get_tensor("scores")


def compute_interfacegan(
    G: Generator,
    net: AttributeNet,
    *,
    attributes: Sequence[str] | None = None,
    config: InterFaceGANConfig | None = None,
    log: Callable[[str], None] = lambda _: None,
    labels_file: Path | None = None,
) -> list[Direction]:
    """One direction per attribute (all scored attributes if None), see module doc.

    ``labels_file`` caches the labelled samples (safetensors): read when it holds the same
    n, seed and attributes, written otherwise; refitting then skips the rendering.

    Raises:
        ValueError: for an attribute the network does not score.
    """
    config = config or InterFaceGANConfig()
    names = score_names(net)
    wanted = list(attributes or names)
    unknown = [a for a in wanted if a not in names]
    if unknown:
        raise ValueError(f"unknown attributes {unknown}; the attribute network scores {names}")
    t0 = time.perf_counter()
    labelled = _cached_labels(labels_file, config, names)
    if labelled is None:
        labelled = label_samples(
            G, net, config.n, seed=config.seed, batch=config.batch, precision=config.precision
        )
        log(f"labelled {config.n} faces in {time.perf_counter() - t0:.0f} s")
        if labels_file is not None:
            meta = {
                "n": str(config.n),
                "seed": str(config.seed),
                "names": ",".join(names),
                "precision": config.precision,
            }
            save_file(
                {"w": labelled[0].contiguous(), "scores": labelled[1].contiguous()},
                str(labels_file),
                metadata=meta,
            )
    else:
        log(f"read {config.n} labelled faces from {labels_file}")
    w, scores = labelled
    binary = binary_attributes(net)
    bcfg = BoundaryConfig(seed=config.seed)
    fits = {}
    for j, name in enumerate(names):  # every boundary: the others condition on them
        kind: Kind = "binary" if name in binary else "continuous"
        y = (scores[:, j] > 0.5).float() if kind == "binary" else scores[:, j]
        try:
            fits[name] = fit_boundary(w, y, kind=kind, config=bcfg)
        except ValueError as exc:  # e.g. no sampled face wears glasses
            if name in wanted:
                raise ValueError(f"cannot fit a boundary for {name!r}: {exc}") from exc
            log(f"{name}: skipped ({exc})")
            continue
        log(f"{name}: held-out {fits[name].metric} {fits[name].value:.3f}")
    tune_ws = _ws(G, config.tune_faces, TUNE_SEED) if config.tune else None
    tune_base = (
        render_measures(G, net, tune_ws, batch=config.batch, precision=config.precision)
        if tune_ws is not None
        else None
    )
    grads = None
    if tune_ws is not None and config.gradient_faces > 0:
        t1 = time.perf_counter()
        grads = mean_score_gradients(
            G,
            net,
            _ws(G, config.gradient_faces, config.seed),
            batch=config.batch,
            precision=config.precision,
        )
        log(
            f"mean attribute gradients of {config.gradient_faces} faces in "
            f"{time.perf_counter() - t1:.0f} s"
        )
    out = []
    for name in wanted:
        fit = fits[name]
        rest = [f.normal for n, f in fits.items() if n != name]
        others = torch.stack(rest) if rest else w.new_zeros(0, w.shape[1])
        provenance = {
            "attribute": name,
            "kind": fit.kind,
            "held_out": {fit.metric: round(fit.value, 4)},
            "n_train": fit.n_train,
            "n_val": fit.n_val,
            "seed": config.seed,
            "labels": "attributes network scores (see docs/directions.md)",
            "precision": config.precision,
        }
        if grads is not None:
            provenance["gradient_faces"] = config.gradient_faces
        plain = _direction(name, fit.normal, "all", w, 1.0, provenance, conditioned="none")
        if tune_ws is None or tune_base is None:
            out.append(plain)
            continue
        best = _tune(
            G,
            net,
            name,
            fit.normal,
            others,
            w,
            tune_ws,
            tune_base,
            names,
            config,
            provenance,
            grads=grads,
        )
        log(
            f"{name}: layers {best.layers}, conditioned {best.provenance['conditioned']}, "
            f"step {best.step}, tuned selectivity {best.provenance['tuned_selectivity']:.1f}"
        )
        out.append(best)
    log(f"interfacegan done in {time.perf_counter() - t0:.0f} s")
    return out


def _direction(
    name: str,
    normal: torch.Tensor,
    layers: str,
    w: torch.Tensor,
    step: float,
    provenance: dict,
    *,
    conditioned: str,
) -> Direction:
    hi = min(2 * step, 4.0)
    return Direction(
        name=name,
        vector=normal,
        layers=layers,
        unit=float(std_along(w, normal[None])[0]),
        slider=(-hi, hi),
        step=step,
        method="interfacegan",
        provenance={**provenance, "conditioned": conditioned},
    )


def _tune(
    G: Generator,
    net: AttributeNet,
    name: str,
    normal: torch.Tensor,
    others: torch.Tensor,
    w: torch.Tensor,
    tune_ws: torch.Tensor,
    tune_base: tuple[torch.Tensor, torch.Tensor],
    names: list[str],
    config: InterFaceGANConfig,
    provenance: dict,
    *,
    grads: torch.Tensor | None = None,
) -> Direction:
    """Measure every (layer range, conditioning) candidate at +1 unit; keep the most selective
    among those whose own change is at least ``min_own`` x the strongest's; scale the step so
    the own change reaches ``target_change``.

    Candidates on each layer range: the boundary normal (``none``), the normal conditioned on
    the other boundaries (``boundaries``) and, given ``grads`` ([A + 3, num_ws, w_dim] mean
    gradients of the scores and the clothes colour, see ``gradients``), the attribute's range
    gradient conditioned on all the others (``gradients``)."""
    vectors = {"none": normal, "boundaries": condition(normal, others)}
    trials: list[tuple[Direction, EditEffect]] = []
    target = names.index(name)

    def trial(d: Direction) -> None:
        effect = measure_edit(
            G,
            net,
            tune_ws,
            tune_base[0],
            d,
            1.0,
            names=names,
            target=name,
            batch=config.batch,
            precision=config.precision,
            base_clothes=tune_base[1],
        )
        trials.append((d, effect))

    for layers in config.layer_candidates:
        try:
            layer_indices(layers, G.num_ws)
        except DirectionError:  # e.g. no fine layers in a 32 px model
            continue
        candidates = dict(vectors)
        if grads is not None:
            rg = range_gradients(grads, layers)  # [A + 3, w_dim]: scores, clothes RGB
            rest = torch.cat([rg[:target], rg[target + 1 :]])
            if float(rg[target].norm()) > 0:
                # ValueError: its gradient lies in the span of the others'
                with contextlib.suppress(ValueError):
                    candidates["gradients"] = condition(rg[target], rest)
        for conditioned, v in candidates.items():
            d = _direction(name, v, layers, w, 1.0, provenance, conditioned=conditioned)
            trial(d)
    strongest = max(abs(e.own()) for _, e in trials)
    eligible = [(d, e) for d, e in trials if e.own() >= config.min_own * strongest and e.own() > 0]
    d, e = max(eligible or trials, key=lambda t: t[1].selectivity())
    step = min(config.max_step, max(0.5, config.target_change / max(abs(e.own()), 1e-6)))
    step = round(step * 4) / 4
    tuned = {
        "tuned_selectivity": round(e.selectivity(), 2),
        "tuned_own_per_unit": round(e.own(), 4),
        "tune_faces": config.tune_faces,
        "tune_seed": TUNE_SEED,
        "tune_trials": [
            {
                "layers": t.layers,
                "conditioned": t.provenance["conditioned"],
                "own": round(x.own(), 4),
                "selectivity": round(x.selectivity(), 2),
                "clothes": round(x.clothes or 0.0, 4),
            }
            for t, x in trials
        ],
    }
    return _direction(
        name,
        d.vector,
        d.layers,
        w,
        step,
        {**provenance, **tuned},
        conditioned=str(d.provenance["conditioned"]),
    )


def config_dict(config: InterFaceGANConfig) -> dict:
    return asdict(config)
