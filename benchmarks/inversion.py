"""Inversion engines against each other: wall time vs full-resolution error, on the same targets.

Targets: 8 faces sampled from the model (known latents, truncation 0.7) and 8 held-out
SynthFaces (seeds from the held-out range FAD uses). Every engine runs on every target, one
after another in one process; every ``--eval-every`` steps the current latent is rendered at
full resolution and scored (perceptual distance, PSNR, and the W+ error where the latent is
known) outside the timed region: the time axis is the engine's own ``elapsed``.

From the curves: the baseline's error after ``--baseline-steps`` (Adam, seed-001 preset) per
target, and for every engine the time at which it first reaches that error (interpolated
between evaluations); the ratio to the baseline's time, median over targets. Also the time to
the first preview (the first step's report).

Writes CSV (one row per evaluation), a PNG plot of median error vs time, and with
``--write-docs`` a section of ``docs/performance.md``.

    python benchmarks/inversion.py --write-docs            # synthfaces-256, ~15 min on 2 cores
    python benchmarks/inversion.py --ffhq-shape            # random FFHQ-1024 generator: step times
"""

from __future__ import annotations

import argparse
import csv
import datetime
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import ROOT, machine, write_docs
from PIL import Image, ImageDraw

from stylelens.checkpoints import load_generator, model_dir_for
from stylelens.checkpoints.preview_heads import load_preview_heads
from stylelens.data.synthfaces import render_face
from stylelens.evaluation.eval_model import HELD_OUT_FIRST_SEED
from stylelens.inversion import AdamConfig, AdamEngine, ProgressiveConfig, ProgressiveEngine
from stylelens.inversion.common import full_metrics
from stylelens.losses import select_perceptual
from stylelens.networks.preview import PreviewHeads
from stylelens.networks.stylegan2 import Generator, GeneratorConfig
from stylelens.render import z_from_seed


def targets(G: Generator, n_model: int, n_real: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n_model):
        with torch.no_grad():
            ws = G.mapping(z_from_seed(10_000 + i, G.z_dim).float(), truncation_psi=0.7)
            img = G.synthesis(ws)
        out.append({"name": f"sample{i}", "kind": "model", "image": img, "ws": ws})
    for i in range(n_real):
        arr, _ = render_face(HELD_OUT_FIRST_SEED + 50_000 + i, G.img_resolution)
        img = torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 127.5 - 1
        out.append({"name": f"synthface{i}", "kind": "held-out", "image": img, "ws": None})
    return out


def run_curve(engine: Any, config: Any, target: dict[str, Any], every: int, perceptual: Any):
    G = engine.G
    state = engine.start(target["image"], config)
    rows, first_preview = [], None
    while not state.done:
        report = engine.step(state)
        first_preview = first_preview if first_preview is not None else report.elapsed
        if report.step % every == 0 or state.done:
            ws = engine.current_ws(state).detach()
            noise = {k: v.detach() for k, v in getattr(state, "noise", {}).items()} or None
            m = full_metrics(G, ws, target["image"], perceptual=perceptual, noise=noise)
            if target["ws"] is not None:
                m["w_error"] = float((ws - target["ws"]).square().mean())
            rows.append({"step": report.step, "elapsed": report.elapsed, **m})
    return rows, first_preview


def time_to_reach(rows: list[dict[str, Any]], key: str, goal: float) -> float:
    """First elapsed time at which rows[key] <= goal, linearly interpolated; inf if never."""
    prev_t, prev_v = 0.0, math.inf
    for r in rows:
        if r[key] <= goal:
            if math.isinf(prev_v):
                return r["elapsed"]
            frac = (prev_v - goal) / max(prev_v - r[key], 1e-12)
            return prev_t + frac * (r["elapsed"] - prev_t)
        prev_t, prev_v = r["elapsed"], r[key]
    return math.inf


def plot(curves: dict[str, list[list[dict[str, Any]]]], key: str, path: Path) -> None:
    """Median (over targets) of ``key`` vs median elapsed, per engine; log-time axis."""
    W, H, pad = 760, 420, 60
    im = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(im)
    series = {}
    for name, runs in curves.items():
        n = min(len(r) for r in runs)
        t = [statistics.median(r[i]["elapsed"] for r in runs) for i in range(n)]
        v = [statistics.median(r[i][key] for r in runs) for i in range(n)]
        series[name] = (t, v)
    ts = [x for t, _ in series.values() for x in t if x > 0]
    vs = [x for _, v in series.values() for x in v]
    t0, t1 = math.log10(min(ts)), math.log10(max(ts))
    v0, v1 = min(vs), max(vs)
    colours = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"]

    def xy(t: float, v: float) -> tuple[float, float]:
        x = pad + (math.log10(max(t, 1e-9)) - t0) / max(t1 - t0, 1e-9) * (W - 2 * pad)
        y = H - pad - (v - v0) / max(v1 - v0, 1e-12) * (H - 2 * pad)
        return x, y

    d.rectangle([pad, pad, W - pad, H - pad], outline="black")
    for k in range(math.floor(t0), math.ceil(t1) + 1):
        for m in (1, 2, 5):
            t = m * 10**k
            if 10**t0 <= t <= 10**t1:
                x, _ = xy(t, v0)
                d.line([x, H - pad, x, H - pad + 5], fill="black")
                d.text((x - 8, H - pad + 8), f"{t:g}", fill="black")
    for j in range(5):
        v = v0 + (v1 - v0) * j / 4
        _, y = xy(10**t0, v)
        d.text((5, y - 6), f"{v:.3f}", fill="black")
    for i, (name, (t, v)) in enumerate(series.items()):
        pts = [xy(a, b) for a, b in zip(t, v, strict=True)]
        d.line(pts, fill=colours[i % 4], width=2)
        d.text((W - pad - 170, pad + 10 + 16 * i), name, fill=colours[i % 4])
    d.text((W // 2 - 80, H - 25), "seconds (log scale)", fill="black")
    d.text((pad, 20), f"median full-resolution {key} vs wall time", fill="black")
    im.save(path)


def ffhq_shape_step_times(repeats: int) -> list[dict[str, Any]]:
    """Time per progressive step at each resolution of a random FFHQ-1024 generator."""
    torch.manual_seed(0)
    G = Generator(GeneratorConfig()).eval().requires_grad_(False)
    heads = PreviewHeads(G).requires_grad_(False)
    target = torch.zeros(1, 3, 1024, 1024)
    rows = []
    for r in [32, 64, 128, 256, 512, 1024]:
        engine = ProgressiveEngine(G, heads=heads, perceptual=None)
        cfg = ProgressiveConfig(steps=repeats + 1, schedule=((r, 1),), colour_fit=r != 1024)
        state = engine.start(target, cfg)
        times = []
        while not state.done:
            before = state.timer.seconds
            engine.step(state)
            times.append(state.timer.seconds - before)
        rows.append(
            {"resolution": r, "first_s": times[0], "median_s": statistics.median(times[1:])}
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="synthfaces-256")
    ap.add_argument("--models-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--targets-model", type=int, default=8)
    ap.add_argument("--targets-real", type=int, default=8)
    ap.add_argument("--baseline-steps", type=int, default=200)
    ap.add_argument("--progressive-steps", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--ffhq-shape", action="store_true", help="only the FFHQ-1024 step times")
    ap.add_argument("--ffhq-repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "logs")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    torch.set_grad_enabled(True)
    if args.ffhq_shape:
        rows = ffhq_shape_step_times(args.ffhq_repeats)
        body = ffhq_doc(rows)
        print(body)
        if args.write_docs:
            write_docs("inversion-ffhq-shape", body)
        return

    model_dir = model_dir_for(args.models_dir, args.model)
    G, card = load_generator(model_dir)
    heads = load_preview_heads(model_dir, G)
    if heads is None:
        raise SystemExit(f"{args.model} has no preview heads: run stylelens fit-preview-heads")
    perceptual = select_perceptual(models_dir=args.models_dir, model_dir=model_dir)
    key = "perceptual"
    engines = {
        "adam (baseline)": (
            AdamEngine(G, perceptual=perceptual),
            AdamConfig.seed001(steps=args.baseline_steps),
        ),
        "progressive": (
            ProgressiveEngine(G, heads=heads, perceptual=perceptual),
            ProgressiveConfig(steps=args.progressive_steps),
        ),
    }
    tgts = targets(G, args.targets_model, args.targets_real)
    curves: dict[str, list[list[dict[str, Any]]]] = {k: [] for k in engines}
    previews: dict[str, list[float]] = {k: [] for k in engines}
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / f"inversion-{card.id}.csv"
    t_start = time.time()
    with csv_path.open("w", newline="") as f:
        writer = None
        for tgt in tgts:
            for name, (engine, cfg) in engines.items():
                rows, first = run_curve(engine, cfg, tgt, args.eval_every, perceptual)
                curves[name].append(rows)
                previews[name].append(first or 0.0)
                for r in rows:
                    rec = {"engine": name, "target": tgt["name"], "kind": tgt["kind"], **r}
                    rec.setdefault("w_error", "")
                    if writer is None:
                        writer = csv.DictWriter(f, fieldnames=list(rec))
                        writer.writeheader()
                    writer.writerow(rec)
                last = rows[-1]
                print(f"{tgt['name']:>11} {name:>16}: {last['elapsed']:6.1f} s "
                      f"{key} {last[key]:.4f} psnr {last['psnr']:.2f}", flush=True)  # fmt: skip
    plot(curves, key, args.out / f"inversion-{card.id}.png")
    summary = summarise(curves, previews, key, args)
    body = doc(card.id, perceptual.name, summary, args, time.time() - t_start)
    print(body)
    if args.write_docs:
        write_docs(f"inversion-{card.id}", body)


def summarise(curves, previews, key, args) -> dict[str, Any]:
    base = curves["adam (baseline)"]
    goals = [runs[-1][key] for runs in base]
    goal_psnr = [runs[-1]["psnr"] for runs in base]
    base_time = [runs[-1]["elapsed"] for runs in base]
    out: dict[str, Any] = {"goals": goals, "base_time": base_time}
    for name, runs in curves.items():
        t = [time_to_reach(r, key, g) for r, g in zip(runs, goals, strict=True)]
        ratio = [a / b for a, b in zip(t, base_time, strict=True)]
        out[name] = {
            "time_to_goal": t,
            "ratio": ratio,
            "reached": sum(math.isfinite(x) for x in t),
            "final": [r[-1][key] for r in runs],
            "final_psnr": [r[-1]["psnr"] for r in runs],
            "first_preview": previews[name],
            "step_time": [r[-1]["elapsed"] / r[-1]["step"] for r in runs],
            "psnr_at_goal_time": [
                _value_at(r, "psnr", bt / 3) for r, bt in zip(runs, base_time, strict=True)
            ],
        }
    out["goal_psnr"] = goal_psnr
    return out


def _value_at(rows: list[dict[str, Any]], key: str, t: float) -> float:
    best = None
    for r in rows:
        if r["elapsed"] <= t:
            best = r[key]
    return best if best is not None else float("nan")


def _med(xs: list[float]) -> float:
    return float(np.median(np.array(xs, dtype=float)))


def doc(model_id: str, perceptual: str, s: dict[str, Any], args, seconds: float) -> str:
    n = len(s["goals"])
    lines = [
        f"### Inversion: progressive vs full-resolution Adam ({model_id})",
        "",
        f"Measured {datetime.date.today()} on {machine()} with "
        f"`python benchmarks/inversion.py --write-docs` ({seconds / 60:.0f} min). "
        f"{n} targets ({args.targets_model} model samples at psi 0.7, {args.targets_real} "
        f"held-out SynthFaces); perceptual distance: {perceptual}; error evaluated at full "
        f"resolution every {args.eval_every} steps, outside the timed region. Baseline: Adam, "
        f"seed-001 preset (W+, lr 0.01), {args.baseline_steps} steps. Goal per target: the "
        f"baseline's {perceptual} distance after {args.baseline_steps} steps. Curves: "
        f"`docs/logs/inversion-{model_id}.csv`, plot `docs/logs/inversion-{model_id}.png`.",
        "",
        "| engine | median s/step | median first preview (s) | reached goal | median time "
        f"to goal (s) | median ratio to baseline | median final {perceptual} | median final "
        "PSNR (dB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("adam (baseline)", "progressive"):
        e = s[name]
        lines.append(
            f"| {name} | {_med(e['step_time']):.3f} | {_med(e['first_preview']):.3f} | "
            f"{e['reached']}/{n} | {_med(e['time_to_goal']):.2f} | {_med(e['ratio']):.2f} | "
            f"{_med(e['final']):.4f} | {_med(e['final_psnr']):.2f} |"
        )
    p = s["progressive"]
    lines += [
        "",
        "Per-target ratios (progressive time to goal / baseline time): "
        + ", ".join("never" if math.isinf(r) else f"{r:.2f}" for r in p["ratio"]),
        "",
        f"Median PSNR at one third of the baseline's time: progressive "
        f"{_med(p['psnr_at_goal_time']):.2f} dB (baseline after its full time: "
        f"{_med(s['goal_psnr']):.2f} dB).",
    ]
    return "\n".join(lines)


def ffhq_doc(rows: list[dict[str, Any]]) -> str:
    lines = [
        "### Inversion step time on a random-weight FFHQ-1024-shaped generator",
        "",
        f"Measured {datetime.date.today()} on {machine()} with "
        "`python benchmarks/inversion.py --ffhq-shape --write-docs`: one progressive step "
        "(forward to the stage resolution, preview head, MSE, backward, Adam; plus the "
        "2-step AdaIN colour fit below full resolution), batch 1, float32. The first step "
        "is also the time to the first preview.",
        "",
        "| stage resolution | first step (s) | median step (s) |",
        "|---|---|---|",
    ]
    lines += [f"| {r['resolution']} | {r['first_s']:.3f} | {r['median_s']:.3f} |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
