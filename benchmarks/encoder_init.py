"""Encoder initialisation against the average latent, side by side in one run (issue 19).

Targets as in ``benchmarks/inversion.py``: faces sampled from the model (known latents,
truncation 0.7) and held-out SynthFaces (the held-out seed range FAD uses, which no training
saw). Per target, one after another in one process:

* the encoder alone: one forward pass (median of ``--repeats`` timed passes) and its
  reconstruction's PSNR and perceptual distance at full resolution;
* Adam from ``w_avg`` for ``--baseline-steps`` (the seed-001 preset): its final perceptual
  distance is the goal;
* the progressive engine from ``w_avg`` and from the encoder's guess: the time each takes to
  reach the goal (interpolated between evaluations; the encoder's pass is counted in), and the
  error after 50 steps from ``w_avg`` (the encoder alone should be at least as good).

Goals (issue 19): one pass <= 50 ms; encoder alone at least as good as 50 progressive steps
from ``w_avg``; progressive from the encoder <= 0.5x the time from ``w_avg`` (<= 0.1x Adam's).

    OMP_NUM_THREADS=2 python benchmarks/encoder_init.py --write-docs
"""

from __future__ import annotations

import argparse
import datetime
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from common import ROOT, machine, write_docs
from inversion import targets, time_to_reach

from stylelens.checkpoints import load_generator, model_dir_for
from stylelens.checkpoints.preview_heads import load_preview_heads
from stylelens.encoders.encode import encode
from stylelens.encoders.store import load_encoder
from stylelens.inversion import AdamConfig, AdamEngine, ProgressiveConfig, ProgressiveEngine
from stylelens.inversion.common import full_metrics
from stylelens.losses import select_perceptual


def curve(
    engine: Any,
    config: Any,
    target: torch.Tensor,
    *,
    init: torch.Tensor | None,
    offset_s: float,
    every: int,
    perceptual: Any,
) -> list[dict[str, Any]]:
    """Evaluations every ``every`` steps: elapsed (engine time + ``offset_s``), PSNR,
    perceptual distance; row 0 is the start itself."""
    G = engine.G
    state = engine.start(target, config, init)
    ws0 = engine.current_ws(state).detach()
    rows = [{"step": 0, "elapsed": offset_s, **full_metrics(G, ws0, target, perceptual=perceptual)}]
    while not state.done:
        report = engine.step(state)
        if report.step % every == 0 or state.done:
            ws = engine.current_ws(state).detach()
            m = full_metrics(G, ws, target, perceptual=perceptual)
            rows.append({"step": report.step, "elapsed": report.elapsed + offset_s, **m})
    return rows


def at_step(rows: list[dict[str, Any]], step: int, key: str) -> float:
    return next((r[key] for r in rows if r["step"] >= step), rows[-1][key])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="synthfaces-256")
    ap.add_argument("--models-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--targets-model", type=int, default=4)
    ap.add_argument("--targets-real", type=int, default=4)
    ap.add_argument("--baseline-steps", type=int, default=200)
    ap.add_argument("--progressive-steps", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=7, help="timed encoder passes per target")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    model_dir = model_dir_for(args.models_dir, args.model)
    G, card = load_generator(model_dir)
    heads = load_preview_heads(model_dir, G)
    encoder = load_encoder(model_dir)
    if heads is None or encoder is None:
        raise SystemExit(f"{args.model} needs preview heads and an encoder for this benchmark")
    perceptual = select_perceptual(models_dir=args.models_dir, model_dir=model_dir)
    adam = AdamEngine(G, perceptual=perceptual)
    prog = ProgressiveEngine(G, heads=heads, perceptual=perceptual)
    rows: list[dict[str, Any]] = []
    t_start = time.time()
    for tgt in targets(G, args.targets_model, args.targets_real):
        img = tgt["image"]
        encode(encoder, img)  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ws_enc = encode(encoder, img)
            times.append(time.perf_counter() - t0)
        enc_s = statistics.median(times)
        enc = full_metrics(G, ws_enc, img, perceptual=perceptual)
        base = curve(adam, AdamConfig.seed001(steps=args.baseline_steps), img, init=None,
                     offset_s=0.0, every=args.eval_every, perceptual=perceptual)  # fmt: skip
        goal = base[-1]["perceptual"]
        cfg = ProgressiveConfig(steps=args.progressive_steps)
        avg = curve(prog, cfg, img, init=None, offset_s=0.0, every=args.eval_every,
                    perceptual=perceptual)  # fmt: skip
        from_enc = curve(prog, cfg, img, init=ws_enc, offset_s=enc_s, every=args.eval_every,
                         perceptual=perceptual)  # fmt: skip
        row = {
            "target": tgt["name"],
            "kind": tgt["kind"],
            "enc_ms": enc_s * 1000,
            "enc_psnr": enc["psnr"],
            "enc_perc": enc["perceptual"],
            "avg50_psnr": at_step(avg, 50, "psnr"),
            "avg50_perc": at_step(avg, 50, "perceptual"),
            "adam_s": base[-1]["elapsed"],
            "t_avg": time_to_reach(avg, "perceptual", goal),
            "t_enc": time_to_reach(from_enc, "perceptual", goal),
            "final_avg_psnr": avg[-1]["psnr"],
            "final_enc_psnr": from_enc[-1]["psnr"],
        }
        rows.append(row)
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    body = doc(card.id, perceptual.name, rows, args, time.time() - t_start)
    print(body)
    if args.write_docs:
        write_docs("encoder-init", body)


def doc(model_id: str, perceptual: str, rows: list[dict[str, Any]], args: Any, secs: float) -> str:
    def med(key: str, kind: str | None = None) -> float:
        xs = [r[key] for r in rows if kind is None or r["kind"] == kind]
        return statistics.median(xs) if xs else math.nan

    ratio_avg = [r["t_enc"] / r["t_avg"] for r in rows]
    ratio_adam = [r["t_enc"] / r["adam_s"] for r in rows]
    reached = sum(math.isfinite(r["t_enc"]) for r in rows)
    lines = [
        "## Encoder initialisation (`benchmarks/encoder_init.py`)",
        "",
        f"Measured {datetime.date.today()} on {machine()}, model {model_id}, perceptual "
        f"{perceptual}, {len(rows)} targets ({args.targets_model} model samples, "
        f"{args.targets_real} held-out SynthFaces), all in one run ({secs / 60:.0f} min). "
        f"Goal of each target: the perceptual distance Adam reaches in {args.baseline_steps} "
        "steps from `w_avg`.",
        "",
        "| target | kind | encoder pass | encoder PSNR / perc. | 50 progressive steps from "
        "`w_avg`, PSNR / perc. | Adam to goal | progressive from `w_avg` to goal | "
        "from the encoder to goal | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['target']} | {r['kind']} | {r['enc_ms']:.0f} ms | {r['enc_psnr']:.2f} dB / "
            f"{r['enc_perc']:.4f} | {r['avg50_psnr']:.2f} dB / {r['avg50_perc']:.4f} | "
            f"{r['adam_s']:.1f} s | {r['t_avg']:.2f} s | {r['t_enc']:.2f} s | "
            f"{r['t_enc'] / r['t_avg']:.2f} |"
        )
    lines += [
        "",
        f"Medians: encoder pass {med('enc_ms'):.0f} ms (goal <= 50 ms); encoder PSNR "
        f"{med('enc_psnr'):.2f} dB against {med('avg50_psnr'):.2f} dB after 50 progressive steps "
        f"from `w_avg` (model samples {med('enc_psnr', 'model'):.2f} vs "
        f"{med('avg50_psnr', 'model'):.2f}, held-out SynthFaces {med('enc_psnr', 'held-out'):.2f}"
        f" vs {med('avg50_psnr', 'held-out'):.2f}); time to the goal from the encoder / from "
        f"`w_avg`: {statistics.median(ratio_avg):.2f}x (goal <= 0.5x), / Adam's: "
        f"{statistics.median(ratio_adam):.2f}x (goal <= 0.1x); {reached} of {len(rows)} "
        "reached the goal from the encoder.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    torch.set_grad_enabled(True)
    main()
