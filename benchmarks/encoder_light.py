"""The light encoder of the embedded model against the average latent (issue 19).

The ``light`` part of ``benchmarks/encoder.py`` (runnable on its own too). Targets are those
of ``benchmarks/inversion.py``: held-out SynthFaces (the seed range FAD holds out, which no
training saw: ``HELD_OUT_FIRST_SEED + 50,000 ...``) and model samples (seeds 10,000 ...,
truncation 0.7). Per target: PSNR of ``w_avg`` itself, of the encoder's one pass (median time
of ``--repeats``), of ``--steps`` progressive steps from ``w_avg`` and of as many from the
encoder, with their times. The encoder is read from ``--models-dir`` (a copy of the model
directory can hold a candidate that is not shipped).

    OMP_NUM_THREADS=2 python benchmarks/encoder_light.py --write-docs
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from common import ROOT, machine, write_docs
from inversion import targets

from stylelens.checkpoints import load_generator, model_dir_for
from stylelens.checkpoints.preview_heads import load_preview_heads
from stylelens.encoders.encode import encode
from stylelens.encoders.store import load_encoder
from stylelens.inversion import ProgressiveConfig, ProgressiveEngine
from stylelens.inversion.common import full_metrics

DOC = ROOT / "docs" / "encoder.md"
SECTION = "encoder-light"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The part's options (``benchmarks/encoder.py`` adds them to its own)."""
    p.add_argument("--model", default="synthfaces-256")
    p.add_argument("--models-dir", type=Path, default=ROOT / "models")
    p.add_argument("--n-model", type=int, default=6, help="model samples (default: 6)")
    p.add_argument("--n-real", type=int, default=6, help="held-out SynthFaces (default: 6)")
    p.add_argument("--steps", type=int, default=50, help="progressive steps (default: 50)")
    p.add_argument("--repeats", type=int, default=7, help="timed encoder passes per target")


def progressive(engine: ProgressiveEngine, img: torch.Tensor, init: torch.Tensor | None,
                steps: int) -> tuple[torch.Tensor, float]:  # fmt: skip
    """The ws after ``steps`` progressive steps from ``init`` (None: w_avg), and the seconds."""
    t0 = time.perf_counter()
    state = engine.start(img, ProgressiveConfig(steps=steps), init)
    while not state.done:
        engine.step(state)
    return engine.current_ws(state).detach(), time.perf_counter() - t0


def measure(args: argparse.Namespace) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """One row per target; returns the model id, the card's encoder entry and the rows."""
    from stylelens.losses import select_perceptual

    model_dir = model_dir_for(args.models_dir, args.model)
    G, card = load_generator(model_dir)
    heads, encoder = load_preview_heads(model_dir, G), load_encoder(model_dir)
    if encoder is None or heads is None:
        raise SystemExit(f"{model_dir} needs an encoder and preview heads for this benchmark")
    perceptual = select_perceptual(models_dir=args.models_dir, model_dir=model_dir)
    engine = ProgressiveEngine(G, heads=heads, perceptual=perceptual)
    w_avg = G.mapping.w_avg.view(1, 1, -1).expand(1, G.num_ws, -1)

    def psnr(ws: torch.Tensor, img: torch.Tensor) -> float:
        with torch.no_grad():
            return full_metrics(G, ws, img, perceptual=None)["psnr"]

    rows: list[dict[str, Any]] = []
    for tgt in targets(G, args.n_model, args.n_real):
        img = tgt["image"]
        encode(encoder, img)  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ws_enc = encode(encoder, img)
            times.append(time.perf_counter() - t0)
        row = {"target": tgt["name"], "kind": tgt["kind"], "avg": psnr(w_avg, img),
               "enc": psnr(ws_enc, img), "enc_ms": statistics.median(times) * 1000}  # fmt: skip
        ws, row["avg_s"] = progressive(engine, img, None, args.steps)
        row["avg_steps"] = psnr(ws, img)
        ws, row["enc_s"] = progressive(engine, img, ws_enc, args.steps)
        row["enc_steps"] = psnr(ws, img)
        rows.append(row)
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    return card.id, dict((card.model_extra or {})["encoder"]), rows


def report(model_id: str, info: dict[str, Any], rows: list[dict[str, Any]], args: Any) -> str:
    def med(key: str, kind: str) -> float:
        return statistics.median(r[key] for r in rows if r["kind"] == kind)

    n = args.steps
    losses = ", ".join(f"{k} {v:.4f}" for k, v in (info.get("losses") or {}).items())
    lines = [
        f"Measured {datetime.date.today()} on {machine()} with `python benchmarks/encoder.py "
        f"--part light` (or `benchmarks/encoder_light.py`). The encoder: {info.get('kimg')} "
        f"kimg of `stylelens train-encoder` ({info.get('seconds', 0) / 60:.0f} min; perceptual "
        f"loss {info.get('perceptual')}; losses at the end: {losses}). Medians per target of "
        f"the PSNR (dB) against the target at full resolution, and times per image.",
        "",
        f"| targets | `w_avg` | encoder, one pass | pass | {n} progressive steps from `w_avg` "
        f"| time | {n} progressive steps from the encoder | time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, label in (("held-out", f"{args.n_real} held-out SynthFaces"),
                        ("model", f"{args.n_model} model samples (psi 0.7)")):  # fmt: skip
        if any(r["kind"] == kind for r in rows):
            lines.append(
                f"| {label} | {med('avg', kind):.2f} | {med('enc', kind):.2f} | "
                f"{med('enc_ms', kind):.0f} ms | {med('avg_steps', kind):.2f} | "
                f"{med('avg_s', kind):.1f} s | {med('enc_steps', kind):.2f} | "
                f"{med('enc_s', kind):.1f} s |"
            )
    return "\n".join(lines)


def part_light(args: argparse.Namespace) -> tuple[str, str]:
    """``benchmarks/encoder.py``'s part protocol: (docs section, body)."""
    model_id, info, rows = measure(args)
    body = f"## The light encoder of {model_id}\n\n" + report(model_id, info, rows, args)
    return SECTION, body


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--write-docs", action="store_true", help=f"update {DOC.relative_to(ROOT)}")
    args = p.parse_args()
    section, body = part_light(args)
    print(body)
    if args.write_docs:
        write_docs(section, body, doc=DOC)


if __name__ == "__main__":
    torch.set_grad_enabled(True)
    main()
