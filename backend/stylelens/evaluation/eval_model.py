"""``stylelens eval-model``: how close a generator's faces are to SynthFaces.

Three feature sets from the attribute network: ``n`` generated faces, ``n`` held-out SynthFaces
(set A, seeds from ``HELD_OUT_FIRST_SEED``) and ``n`` more (set B, disjoint). FAD(generated, A)
is the score; FAD(A, B) is the floor that finite samples alone give. Per attribute, coverage
compares the network's predictions on generated faces with its predictions on set A (KS
statistic for continuous attributes, total variation for categorical ones), next to the same
figure for A vs B.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from stylelens.data.synthfaces.dataset import render_arrays
from stylelens.evaluation.fad import fad, ks_statistic, near_duplicates, total_variation
from stylelens.networks.attributes import AttributeNet
from stylelens.networks.runtime import autocast
from stylelens.networks.stylegan2 import Generator
from stylelens.training.attributes import HELD_OUT_FIRST_SEED, to_float

SET_B_OFFSET = 5_000_000  # set B starts this far after set A


@dataclass(frozen=True)
class EvalConfig:
    n: int = 5000
    truncation_psi: float = 1.0
    seed: int = 0  # seeds the generated z
    batch: int = 16
    precision: str = "float32"


@dataclass
class FeatureSet:
    features: np.ndarray  # [N, feature_dim]
    labels: np.ndarray  # [N, len(attributes)], predicted, natural units


def _measure(net: AttributeNet, batches: Iterator[torch.Tensor]) -> FeatureSet:
    feats, labels = [], []
    with torch.no_grad():
        for img in batches:  # float [-1, 1]
            f = net.features(img.float())
            feats.append(f.cpu().numpy())
            labels.append(net.decode(net.head(f)).cpu().numpy())
    return FeatureSet(np.concatenate(feats), np.concatenate(labels))


def generated_set(
    G: Generator, net: AttributeNet, config: EvalConfig, *, progress: bool = True
) -> FeatureSet:
    device = next(G.parameters()).device
    gen = torch.Generator().manual_seed(config.seed)
    bar = tqdm(total=config.n, desc="generated", unit="img", disable=not progress, file=sys.stderr)

    def batches() -> Iterator[torch.Tensor]:
        for start in range(0, config.n, config.batch):
            z = torch.randn(min(config.batch, config.n - start), G.z_dim, generator=gen)
            with torch.no_grad(), autocast(device, config.precision):
                img = G(z.to(device), truncation_psi=config.truncation_psi, noise_mode="const")
            bar.update(len(z))
            yield img.float().clamp(-1, 1).cpu()

    result = _measure(net, batches())
    bar.close()
    return result


def real_set(
    net: AttributeNet,
    *,
    first_seed: int,
    n: int,
    resolution: int,
    workers: int | None = None,
    progress: bool = True,
) -> FeatureSet:
    """Held-out SynthFaces rendered at the generator's resolution, in chunks of 500."""
    bar = tqdm(
        total=n,
        desc=f"synthfaces from {first_seed}",
        unit="img",
        disable=not progress,
        file=sys.stderr,
    )

    def batches() -> Iterator[torch.Tensor]:
        for start in range(0, n, 500):
            images, _ = render_arrays(
                first_seed=first_seed + start,
                n=min(500, n - start),
                resolution=resolution,
                workers=workers,
                progress=False,
            )
            bar.update(len(images))
            for i in range(0, len(images), 100):
                yield to_float(torch.from_numpy(images[i : i + 100]))

    result = _measure(net, batches())
    bar.close()
    return result


def coverage(a: FeatureSet, b: FeatureSet, net: AttributeNet) -> dict[str, dict[str, float]]:
    out = {}
    for j, attr in enumerate(net.config.specs):
        if attr.kind == "categorical":
            tv = total_variation(a.labels[:, j], b.labels[:, j], len(attr.classes))
            out[attr.name] = {"tv": tv}
        else:
            out[attr.name] = {"ks": ks_statistic(a.labels[:, j], b.labels[:, j])}
    return out


def evaluate_model(
    G: Generator,
    net: AttributeNet,
    config: EvalConfig,
    *,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """FAD of generated faces vs held-out SynthFaces, the real-vs-real floor, and coverage."""
    t0 = time.perf_counter()
    res = G.img_resolution
    fake = generated_set(G, net, config, progress=progress)
    real_a = real_set(
        net,
        first_seed=HELD_OUT_FIRST_SEED,
        n=config.n,
        resolution=res,
        workers=workers,
        progress=progress,
    )
    real_b = real_set(
        net,
        first_seed=HELD_OUT_FIRST_SEED + SET_B_OFFSET,
        n=config.n,
        resolution=res,
        workers=workers,
        progress=progress,
    )
    score, floor = fad(fake.features, real_a.features), fad(real_a.features, real_b.features)
    return {
        "n": config.n,
        "truncation_psi": config.truncation_psi,
        "fad": score,
        "fad_floor": floor,
        "fad_ratio": score / floor if floor > 0 else float("inf"),
        "coverage": coverage(fake, real_a, net),
        "coverage_floor": coverage(real_b, real_a, net),
        "near_duplicates": near_duplicates(fake.features, real_b.features),
        "seconds": time.perf_counter() - t0,
    }


def format_report(report: dict[str, Any]) -> str:
    """A readable summary: FAD, floor, ratio, then coverage per attribute."""
    lines = [
        f"FAD {report['fad']:.4f}  floor (real vs real) {report['fad_floor']:.4f}  "
        f"ratio {report['fad_ratio']:.2f}  (n={report['n']}, psi={report['truncation_psi']})",
        _format_duplicates(report["near_duplicates"]),
        "",
        "| attribute | statistic | generated vs real | real vs real |",
        "|---|---|---|---|",
    ]
    for name, m in report["coverage"].items():
        ((key, value),) = m.items()
        floor = report["coverage_floor"][name][key]
        lines.append(f"| {name} | {'KS' if key == 'ks' else 'TV'} | {value:.3f} | {floor:.3f} |")
    return "\n".join(lines)


def _format_duplicates(d: dict[str, float]) -> str:
    return (
        f"nearest-neighbour feature distance, generated vs real: min {d['generated_min']:.3f} "
        f"vs {d['real_min']:.3f}, median {d['generated_median']:.3f} vs "
        f"{d['real_median']:.3f}; {100 * d['fraction_below_real_min']:.1f}% of generated "
        "faces are closer to another than any two real faces"
    )
