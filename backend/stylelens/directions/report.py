"""The measured quality of a model's directions (``stylelens directions measure``).

For every direction, the mean change of every attribute score between faces and the same
faces edited by the direction's default step (see ``measure`` for the score scale), over
faces from ``MEASURE_SEED``, disjoint from the fitting and tuning faces. The goal check of
a named (InterFaceGAN) direction: its own change is at least 3x the largest off-target one,
and the identity attributes move less than their label noise.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from stylelens.directions.compute import MEASURE_SEED, _ws
from stylelens.directions.core import Direction
from stylelens.directions.measure import (
    IDENTITY_ATTRIBUTES,
    EditEffect,
    describe_effect,
    label_noise,
    measure_edit,
    render_measures,
    score_names,
)
from stylelens.networks.attributes import AttributeNet
from stylelens.networks.stylegan2 import Generator

GOAL_RATIO = 3.0
DOC_START, DOC_END = "<!-- directions-quality:start -->", "<!-- directions-quality:end -->"


def quality_report(
    G: Generator,
    net: AttributeNet,
    net_metrics: dict[str, dict[str, float]],
    directions: Sequence[Direction],
    *,
    faces: int = 200,
    components: int = 10,
    batch: int = 16,
    precision: str = "bfloat16",
    ws: torch.Tensor | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """Measure ``directions``; components (sefa/ganspace) only the first ``components`` each.
    The faces are ``faces`` sampled ones (z seeds from ``MEASURE_SEED``), or the given ``ws``
    [N, num_ws, w_dim] (encoded photos, say), described by ``source`` in the report."""
    names = score_names(net)
    if ws is None:
        ws = _ws(G, faces, MEASURE_SEED)
        source = f"{faces} faces (z seeds from {MEASURE_SEED:,}, psi 1)"
    else:
        faces = len(ws)
        source = source or f"{faces} given latents"
    base, clothes = render_measures(G, net, ws, batch=batch, precision=precision)
    noise = label_noise(net_metrics, base, names)
    named: list[dict[str, Any]] = []
    comps: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for d in directions:
        target = d.provenance.get("attribute") if d.method == "interfacegan" else None
        if target is None:
            key = d.method + d.layers
            counts[key] = counts.get(key, 0) + 1
            if d.method not in ("sefa", "ganspace") or counts[key] > components:
                continue
        effect = measure_edit(
            G,
            net,
            ws,
            base,
            d,
            d.step,
            names=names,
            target=target,
            batch=batch,
            precision=precision,
            base_clothes=clothes,
        )
        (named if target else comps).append(_entry(d, effect, noise))
    return {
        "faces": faces,
        "source": source,
        "seed": MEASURE_SEED,
        "precision": precision,
        "label_noise": noise,
        "named": named,
        "components": comps,
    }


def _entry(d: Direction, e: EditEffect, noise: dict[str, float]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": d.name,
        "method": d.method,
        "layers": d.layers,
        "step": d.step,
        "conditioned": str(d.provenance.get("conditioned", "none")),
        "mean": e.mean,
        "clothes": e.clothes,
    }
    if e.target is None:
        out["does"] = describe_effect(e)
        return out
    off = e.off_target()
    largest, value = e.largest_off()
    identity = {
        a: {"change": e.mean[a], "noise": noise[a]}
        for a in IDENTITY_ATTRIBUTES
        if a != e.target and a in e.mean
    }
    out.update(
        attribute=e.target,
        held_out=d.provenance.get("held_out", {}),
        own=e.own(),
        own_per_unit=e.own() / d.step,
        off_mean=sum(abs(v) for v in off.values()) / len(off),
        off_largest={"attribute": largest, "change": value},
        ratio=e.selectivity(),
        identity=identity,
        meets_ratio=e.selectivity() >= GOAL_RATIO,
        identity_ok=all(abs(v["change"]) <= v["noise"] for v in identity.values()),
    )
    return out


def to_markdown(report: dict[str, Any]) -> str:
    """The tables of ``docs/directions.md`` (between its quality markers)."""
    lines = [
        f"{report['source']}, rendered in {report['precision']}; changes are mean score "
        "changes at each direction's default step (fraction of the attribute's range, or "
        "probability). Clothes colour: mean per-face RGB distance (0-1 scale) of the bottom "
        "band's colour.",
        "",
        "| direction | layers | cond. | step (sd) | held-out | own change / sd | own at step "
        "| off-target mean \\|Δ\\| | largest off-target | ratio | face_width / skin_tone Δ "
        "(noise) | clothes colour \\|Δ\\| | goal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["named"]:
        held = ", ".join(f"{k} {v:.3f}" for k, v in r["held_out"].items())
        ident = "; ".join(f"{v['change']:+.3f} ({v['noise']:.3f})" for v in r["identity"].values())
        goal = ("yes" if r["meets_ratio"] else "no: ratio") + (
            "" if r["identity_ok"] else "; identity moves"
        )
        lo = r["off_largest"]
        lines.append(
            f"| `{r['name']}` | {r['layers']} | {r['conditioned']} "
            f"| {r['step']:g} | {held} | {r['own_per_unit']:+.3f} | {r['own']:+.3f} "
            f"| {r['off_mean']:.3f} | {lo['attribute']} {lo['change']:+.3f} "
            f"| {r['ratio']:.1f} | {ident or '-'} | {r['clothes']:.3f} | {goal} |"
        )
    attrs = list(report["named"][0]["mean"]) if report["named"] else []
    if attrs:
        lines += [
            "",
            "Every attribute's mean change at the default step (own change in bold):",
            "",
            "| direction | " + " | ".join(attrs) + " |",
            "|---|" + "---|" * len(attrs),
        ]
        for r in report["named"]:
            cells = [
                (f"**{r['mean'][a]:+.3f}**" if a == r["attribute"] else f"{r['mean'][a]:+.3f}")
                for a in attrs
            ]
            lines.append(f"| `{r['name']}` | " + " | ".join(cells) + " |")
    if report["components"]:
        lines += [
            "",
            "Components at +2 sd on their layer range, named by their strongest measured changes:",
            "",
            "| component | layers | what it does |",
            "|---|---|---|",
        ]
        for r in report["components"]:
            lines.append(f"| `{r['name']}` | {r['layers']} | {r['does']} |")
    noise = ", ".join(f"{k} {v:.3f}" for k, v in report["label_noise"].items())
    lines += ["", f"Label noise (per-face error of each score): {noise}."]
    return "\n".join(lines)


def write_doc_section(path: Path, markdown: str) -> None:
    """Replace the text between the quality markers of ``path`` (which must have them)."""
    text = path.read_text()
    pattern = re.compile(re.escape(DOC_START) + ".*?" + re.escape(DOC_END), re.S)
    if not pattern.search(text):
        raise ValueError(f"{path} has no {DOC_START} ... {DOC_END} section to fill")
    path.write_text(pattern.sub(lambda _: f"{DOC_START}\n{markdown}\n{DOC_END}", text))
