"""What an encoder is worth: as a start for inversion, and as a start for editing (issue 19).

Two parts of ``benchmarks/encoder.py`` (each a function ``args -> [(doc, section, body)]``):

* ``init``: per target (model samples, known latents at truncation 0.7, and held-out
  SynthFaces from the seed range FAD holds out, which no training saw), one after another in
  one process: the encoder alone (median of ``--repeats`` timed passes, PSNR and perceptual
  distance at full resolution); Adam from ``w_avg`` for ``--baseline-steps`` (the seed-001
  preset), whose final perceptual distance is the goal; and the progressive engine from
  ``w_avg`` and from the encoder's guess (each with its default schedule), the time each takes
  to reach the goal (interpolated between evaluations, the encoder's pass counted in) and its
  PSNR after 10 and 50 steps. ``--sheet`` draws the held-out faces through all of it.
* ``edit``: ``stylelens directions measure`` on ``--edit-faces`` sampled faces and on as many
  held-out SynthFaces encoded by the model's encoder (as an upload starts): each named
  direction's selectivity (own change / largest off-target change) on both.

Goals (issue 19): one pass <= 50 ms; the encoder alone at least as good as 50 progressive
steps from ``w_avg``; progressive from the encoder <= 0.5x the time from ``w_avg`` (<= 0.1x
Adam's); selectivity on encoded faces within 20 % of the sampled faces'.

    OMP_NUM_THREADS=2 python benchmarks/encoder.py --part init --part edit --write-docs
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
from common import ROOT, machine
from inversion import targets, time_to_reach
from PIL import Image, ImageDraw, ImageFont

from stylelens.checkpoints import load_generator, model_dir_for
from stylelens.checkpoints.preview_heads import load_preview_heads
from stylelens.encoders.encode import encode
from stylelens.encoders.store import load_encoder
from stylelens.inversion import AdamConfig, AdamEngine, ProgressiveConfig, ProgressiveEngine
from stylelens.inversion.common import full_metrics
from stylelens.losses import select_perceptual
from stylelens.render import to_uint8

ENCODER_DOC = ROOT / "docs" / "encoder.md"
PERF_DOC = ROOT / "docs" / "performance.md"
SNAPSHOTS = (10, 50)  # steps at which the PSNR (and the sheet's pictures) are taken


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of both parts (``benchmarks/encoder.py`` adds them to its own)."""
    p.add_argument("--model", default="synthfaces-256")
    p.add_argument("--models-dir", type=Path, default=ROOT / "models")
    p.add_argument("--targets-model", type=int, default=4, help="model samples (default: 4)")
    p.add_argument("--targets-real", type=int, default=4, help="held-out SynthFaces (4)")
    p.add_argument("--baseline-steps", type=int, default=200, help="Adam's steps (200)")
    p.add_argument("--progressive-steps", type=int, default=200, help="progressive steps (200)")
    p.add_argument("--eval-every", type=int, default=5, help="evaluate every N steps (5)")
    p.add_argument("--repeats", type=int, default=7, help="timed encoder passes per target")
    p.add_argument("--sheet", type=Path, default=None, help="draw the held-out faces here")
    p.add_argument("--edit-faces", type=int, default=100, help="faces per edit measurement")


def _load(args: argparse.Namespace) -> tuple[Any, Any, Any, Any, Path]:
    model_dir = model_dir_for(args.models_dir, args.model)
    G, card = load_generator(model_dir)
    encoder = load_encoder(model_dir)
    if encoder is None:
        raise SystemExit(f"{args.model} needs an encoder for this benchmark")
    return G, card, encoder, load_preview_heads(model_dir, G), model_dir


Curve = tuple[list[dict[str, Any]], dict[int, torch.Tensor]]


def curve(
    engine: Any,
    config: Any,
    target: torch.Tensor,
    *,
    init: torch.Tensor | None,
    offset_s: float,
    every: int,
    perceptual: Any,
) -> Curve:
    """Evaluations every ``every`` steps (elapsed = engine time + ``offset_s``, PSNR,
    perceptual distance; row 0 is the start itself) and the ws at :data:`SNAPSHOTS`."""
    G = engine.G
    state = engine.start(target, config, init)
    ws0 = engine.current_ws(state).detach()
    rows = [{"step": 0, "elapsed": offset_s, **full_metrics(G, ws0, target, perceptual=perceptual)}]
    snaps: dict[int, torch.Tensor] = {}
    while not state.done:
        report = engine.step(state)
        if report.step % every == 0 or report.step in SNAPSHOTS or state.done:
            ws = engine.current_ws(state).detach()
            m = full_metrics(G, ws, target, perceptual=perceptual)
            rows.append({"step": report.step, "elapsed": report.elapsed + offset_s, **m})
            if report.step in SNAPSHOTS:
                snaps[report.step] = ws.clone()
    final = engine.current_ws(state).detach()
    return rows, {n: snaps.get(n, final) for n in SNAPSHOTS}  # short runs: the last one


def at_step(rows: list[dict[str, Any]], step: int, key: str) -> float:
    return next((r[key] for r in rows if r["step"] >= step), rows[-1][key])


def part_init(args: argparse.Namespace) -> list[tuple[Path, str, str]]:
    G, card, encoder, heads, model_dir = _load(args)
    if heads is None:
        raise SystemExit(f"{args.model} needs preview heads for this benchmark")
    perceptual = select_perceptual(models_dir=args.models_dir, model_dir=model_dir)
    adam = AdamEngine(G, perceptual=perceptual)
    prog = ProgressiveEngine(G, heads=heads, perceptual=perceptual)
    w_avg = G.mapping.w_avg.view(1, 1, -1).expand(1, G.num_ws, -1)
    rows: list[dict[str, Any]] = []
    pictures: list[list[torch.Tensor]] = []
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
        base, _ = curve(adam, AdamConfig.seed001(steps=args.baseline_steps), img, init=None,
                        offset_s=0.0, every=args.eval_every, perceptual=perceptual)  # fmt: skip
        goal = base[-1]["perceptual"]
        cfg = ProgressiveConfig(steps=args.progressive_steps)
        avg, avg_ws = curve(prog, cfg, img, init=None, offset_s=0.0, every=args.eval_every,
                            perceptual=perceptual)  # fmt: skip
        fen, fen_ws = curve(prog, cfg, img, init=ws_enc, offset_s=enc_s, every=args.eval_every,
                            perceptual=perceptual)  # fmt: skip
        row = {
            "target": tgt["name"],
            "kind": tgt["kind"],
            "enc_ms": enc_s * 1000,
            "avg_psnr": full_metrics(G, w_avg, img, perceptual=None)["psnr"],
            "enc_psnr": enc["psnr"],
            "enc_perc": enc["perceptual"],
            "adam_s": base[-1]["elapsed"],
            "t_avg": time_to_reach(avg, "perceptual", goal),
            "t_enc": time_to_reach(fen, "perceptual", goal),
        }
        for n in SNAPSHOTS:
            row[f"avg{n}_psnr"] = at_step(avg, n, "psnr")
            row[f"avg{n}_perc"] = at_step(avg, n, "perceptual")
            row[f"enc{n}_psnr"] = at_step(fen, n, "psnr")
        rows.append(row)
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
        if tgt["kind"] == "held-out":
            snaps = [s[n] for n in SNAPSHOTS for s in (avg_ws, fen_ws)]
            pictures.append([img, w_avg, ws_enc, *snaps])
    if args.sheet is not None and pictures:
        draw_sheet(G, pictures, args.sheet)
        print(f"wrote {args.sheet}")
    info = dict((card.model_extra or {})["encoder"])
    secs = time.time() - t_start
    return [
        (PERF_DOC, "encoder-init", perf_table(card.id, perceptual.name, rows, args, secs)),
        (ENCODER_DOC, "encoder-light", summary(card.id, info, rows, args)),
    ]


SHEET_COLUMNS = ("target", "w_avg", "encoder, 1 pass", "10 steps from w_avg",
                 "10 from encoder", "50 steps from w_avg", "50 from encoder")  # fmt: skip


@torch.no_grad()
def draw_sheet(G: Any, rows: list[list[torch.Tensor]], path: Path, tile: int = 128) -> None:
    """One row per face: the target, then the images of each latent in the row, under a row
    of column names."""
    top = 20
    sheet = Image.new("RGB", (tile * len(rows[0]), top + tile * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=12)
    for j, name in enumerate(SHEET_COLUMNS[: len(rows[0])]):
        draw.text((j * tile + tile // 2, top // 2), name, fill="black", font=font, anchor="mm")
    for i, row in enumerate(rows):
        for j, x in enumerate(row):
            img = x if j == 0 else G.synthesis(x, noise_mode="const")
            tile_img = Image.fromarray(to_uint8(img)[0]).resize((tile, tile), Image.LANCZOS)
            sheet.paste(tile_img, (j * tile, top + i * tile))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, quality=90)


def _med(rows: list[dict[str, Any]], key: str, kind: str | None = None) -> float:
    xs = [r[key] for r in rows if kind is None or r["kind"] == kind]
    return statistics.median(xs) if xs else math.nan


def perf_table(model_id: str, perceptual: str, rows: list[dict[str, Any]], args: Any,
               secs: float) -> str:  # fmt: skip
    ratio_avg = [r["t_enc"] / r["t_avg"] for r in rows]
    ratio_adam = [r["t_enc"] / r["adam_s"] for r in rows]
    reached = sum(math.isfinite(r["t_enc"]) for r in rows)
    lines = [
        "## Encoder initialisation (`benchmarks/encoder.py --part init`)",
        "",
        f"Measured {datetime.date.today()} on {machine()}, model {model_id}, perceptual "
        f"{perceptual}, {len(rows)} targets ({args.targets_model} model samples, "
        f"{args.targets_real} held-out SynthFaces), all in one run ({secs / 60:.0f} min). "
        f"Goal of each target: the perceptual distance Adam reaches in {args.baseline_steps} "
        "steps from `w_avg`. Progressive from `w_avg` runs its coarse stage first; from the "
        "encoder, full resolution alone (each engine's default).",
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
        f"Medians: encoder pass {_med(rows, 'enc_ms'):.0f} ms (goal <= 50 ms); encoder PSNR "
        f"{_med(rows, 'enc_psnr'):.2f} dB against {_med(rows, 'avg50_psnr'):.2f} dB after 50 "
        f"progressive steps from `w_avg` (model samples {_med(rows, 'enc_psnr', 'model'):.2f} vs "
        f"{_med(rows, 'avg50_psnr', 'model'):.2f}, held-out SynthFaces "
        f"{_med(rows, 'enc_psnr', 'held-out'):.2f} vs {_med(rows, 'avg50_psnr', 'held-out'):.2f}"
        f"); time to the goal from the encoder / from `w_avg`: "
        f"{statistics.median(ratio_avg):.2f}x (goal <= 0.5x), / Adam's: "
        f"{statistics.median(ratio_adam):.2f}x (goal <= 0.1x); {reached} of {len(rows)} "
        "reached the goal from the encoder.",
    ]
    return "\n".join(lines)


def summary(model_id: str, info: dict[str, Any], rows: list[dict[str, Any]], args: Any) -> str:
    kimg = info.get("kimg_total", info.get("kimg"))
    runs = [info, *info.get("earlier_runs", [])]
    minutes = sum(r.get("seconds", 0) for r in runs) / 60
    lines = [
        f"## The light encoder of {model_id}",
        "",
        f"Measured {datetime.date.today()} on {machine()} with `python benchmarks/encoder.py "
        f"--part init` (per-target rows in docs/performance.md). The encoder: {kimg} kimg of "
        f"`stylelens train-encoder` in all ({minutes:.0f} min; perceptual loss "
        f"{info.get('perceptual')}). Medians per target of the PSNR (dB) against the target at "
        "full resolution; times per image.",
        "",
        "| targets | `w_avg` | encoder, one pass | pass | 10 steps from `w_avg` | 10 from the "
        "encoder | 50 steps from `w_avg` | 50 from the encoder | time to Adam-200's error, "
        "encoder / `w_avg` |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, label in (("held-out", f"{args.targets_real} held-out SynthFaces"),
                        ("model", f"{args.targets_model} model samples (psi 0.7)")):  # fmt: skip
        sub = [r for r in rows if r["kind"] == kind]
        if sub:
            ratio = statistics.median(r["t_enc"] / r["t_avg"] for r in sub)
            lines.append(
                f"| {label} | {_med(sub, 'avg_psnr'):.2f} | {_med(sub, 'enc_psnr'):.2f} | "
                f"{_med(sub, 'enc_ms'):.0f} ms | {_med(sub, 'avg10_psnr'):.2f} | "
                f"{_med(sub, 'enc10_psnr'):.2f} | {_med(sub, 'avg50_psnr'):.2f} | "
                f"{_med(sub, 'enc50_psnr'):.2f} | {ratio:.2f}x |"
            )
    return "\n".join(lines)


def part_edit(args: argparse.Namespace) -> list[tuple[Path, str, str]]:
    """Directions measured on sampled faces, on encoded ones, and on two references."""
    from stylelens.checkpoints.attribute_net import load_attribute_net
    from stylelens.directions.compute import MEASURE_SEED, _ws
    from stylelens.directions.report import quality_report
    from stylelens.directions.store import load_directions
    from stylelens.evaluation.encoded import ENCODED_FIRST_SEED, encode_synthfaces

    G, card, encoder, _, model_dir = _load(args)
    net, net_card = load_attribute_net(args.models_dir / "attributes-synthfaces")
    directions = load_directions(model_dir)
    n = args.edit_faces
    t0 = time.time()
    sampled = _ws(G, n, MEASURE_SEED)
    w_avg = G.mapping.w_avg
    with torch.no_grad():
        images = [G.synthesis(sampled[i : i + 1], noise_mode="const") for i in range(n)]
    sets = {  # name -> ws of the faces
        "sampled": sampled,
        "encoded SynthFaces": encode_synthfaces(encoder, n, G.img_resolution),
        "encoded samples": torch.cat([encode(encoder, img) for img in images]),
        "sampled, psi 0.5": w_avg + 0.5 * (sampled - w_avg),
    }
    selectivity: dict[str, dict[str, float]] = {}
    for name, ws in sets.items():
        report = quality_report(G, net, net_card.metrics, directions, ws=ws, components=0)
        selectivity[name] = {r["name"]: r["ratio"] for r in report["named"]}
    secs = time.time() - t0
    spread = {k: float((ws.mean(1) - w_avg).norm(dim=1).mean()) for k, ws in sets.items()}
    lines = [
        "## Editing encoded faces (`benchmarks/encoder.py --part edit`)",
        "",
        f"Measured {datetime.date.today()} on {machine()}, model {card.id}, in one run "
        f"({secs / 60:.0f} min): `stylelens directions measure` on four sets of {n} faces: "
        f"sampled (z seeds from {MEASURE_SEED:,}, psi 1: the reference of docs/directions.md); "
        f"held-out SynthFaces (seeds from {ENCODED_FIRST_SEED:,}) encoded by the model's "
        "encoder, one pass each, as an upload starts; the sampled faces' own images encoded "
        "(the same faces, so only the encoder differs); and the sampled faces truncated to "
        "psi 0.5. Selectivity: a direction's own change over the largest off-target change at "
        "its default step (goal: encoded within 20 % of sampled).",
        "",
        "| direction | "
        + " | ".join(f"selectivity, {k}" for k in sets)
        + " | encoded SynthFaces / sampled |",
        "|---|" + "---|" * (len(sets) + 1),
    ]
    ratios = []
    for name, ref in selectivity["sampled"].items():
        ratio = selectivity["encoded SynthFaces"][name] / ref
        ratios.append(ratio)
        cells = " | ".join(f"{selectivity[k][name]:.1f}" for k in sets)
        lines.append(f"| `{name}` | {cells} | {ratio:.2f} |")
    lines.append(
        "| mean \\|w - w_avg\\| | " + " | ".join(f"{spread[k]:.1f}" for k in sets) + " | |"
    )
    within = sum(r >= 0.8 for r in ratios)
    lines += [
        "",
        f"Median encoded / sampled selectivity {statistics.median(ratios):.2f}; {within} of "
        f"{len(ratios)} directions are within 20 % of their sampled selectivity or above it.",
    ]
    return [(ENCODER_DOC, "encoder-edit", "\n".join(lines))]
