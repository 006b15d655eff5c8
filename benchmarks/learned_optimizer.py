"""Seed 001's learned optimizer against Adam, SGD and today's best (progressive L-BFGS).

Targets no training saw: model samples (seeds 10,000+, psi 0.7, as ``benchmarks/inversion.py``;
the trainer draws its z from a torch.Generator stream and tests on seeds 7,000,000+) and
held-out SynthFaces (the seed range FAD holds out). One process, every method on every target
one after another, so the ratios are fair on this noisy machine.

* ``iterations`` (the paper's table): from the encoder's guess and from a random latent (the
  w of another z, in every layer), the loss ``MSE + lambda * perceptual`` (the objective every
  engine minimises) after each iteration for Adam (lr 0.01, seed 001's baseline), SGD (its
  learning rate picked from a grid on two other model samples) and the learned optimizer, all
  at full resolution. Per target: the iterations each needs to reach Adam's loss after 100
  (interpolated between iterations; capped, "never" beyond the cap); the reduction against
  Adam and SGD. Goal: at least the paper's 35 % (encoder) and 49 % (random) fewer than Adam.
* ``wall``: wall time to Adam's 200-step perceptual distance (the goal of
  ``benchmarks/inversion.py``) for progressive (L-BFGS, today's default), learned and
  progressive-learned, from the encoder's guess and from ``w_avg``, as a ratio of Adam's own
  time; the error is evaluated at full resolution every ``--eval-every`` steps outside the timed
  region, and an engine stops once it reaches the goal.
* ``training``: the trainer's test-set curve from the model card, as a plot.

    OMP_NUM_THREADS=2 python benchmarks/learned_optimizer.py --write-docs    # ~25 min, 2 cores
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
from PIL import Image, ImageDraw

from stylelens.checkpoints import load_generator, model_dir_for
from stylelens.checkpoints.native import load_card
from stylelens.checkpoints.preview_heads import load_preview_heads
from stylelens.encoders.encode import encode
from stylelens.encoders.store import load_encoder
from stylelens.inversion import make_engine
from stylelens.inversion.common import full_metrics, perceptual_weight
from stylelens.inversion.learned import image_loss
from stylelens.inversion.optimizer_store import load_optimizer
from stylelens.losses import select_perceptual
from stylelens.render import to_uint8, z_from_seed

DOC = ROOT / "docs" / "inversion.md"
PERF = ROOT / "docs" / "performance.md"
IMAGES = ROOT / "docs" / "images"
SGD_GRID = (10.0, 30.0, 100.0, 300.0, 1e3, 3e3, 1e4)
SHEET_STEPS = (10, 30)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="synthfaces-256")
    p.add_argument("--models-dir", type=Path, default=ROOT / "models")
    p.add_argument("--targets-model", type=int, default=6)
    p.add_argument("--targets-real", type=int, default=6)
    p.add_argument("--adam-steps", type=int, default=100, help="the paper's reference (100)")
    p.add_argument("--cap", type=int, default=200, help="iterations at most for the others")
    p.add_argument("--wall-targets", type=int, default=4, help="per kind, for the wall part")
    p.add_argument("--wall-baseline", type=int, default=200, help="Adam steps of the wall goal")
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--part", action="append", choices=("iterations", "wall", "training"))
    p.add_argument("--write-docs", action="store_true")
    return p.parse_args()


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.model_dir = model_dir_for(args.models_dir, args.model)
        self.G, self.card = load_generator(self.model_dir)
        self.G.requires_grad_(False)
        self.encoder = load_encoder(self.model_dir)
        self.learned = load_optimizer(self.model_dir)
        if self.encoder is None or self.learned is None:
            raise SystemExit(f"{args.model} needs an encoder and a learned optimizer")
        self.heads = load_preview_heads(self.model_dir, self.G)
        self.perceptual = select_perceptual(models_dir=args.models_dir, model_dir=self.model_dir)
        self.weight = perceptual_weight(self.perceptual, None)

    def start(self, kind: str, target: torch.Tensor, i: int) -> torch.Tensor | None:
        if kind == "encoder":
            assert self.encoder is not None
            return encode(self.encoder, target)
        if kind == "random":  # another random face's w, in every layer
            with torch.no_grad():
                return self.G.mapping(z_from_seed(30_000 + i, self.G.z_dim).float())
        return None  # w_avg

    def engine_losses(
        self, name: str, target, init, iterations: int, goal: float = -math.inf
    ) -> list[float]:
        """Loss at w_0 ... w_iterations (a step's report holds the loss before its update),
        or until it is <= ``goal``."""
        engine, config = make_engine(
            name,
            self.G,
            steps=iterations + 1,
            perceptual=self.perceptual,
            heads=self.heads,
            learned=self.learned,
        )
        state = engine.start(target, config, init)
        out: list[float] = []
        while not state.done and (not out or out[-1] > goal):
            out.append(engine.step(state).losses["total"])
        return out

    def sgd_losses(
        self, target, init, lr: float, iterations: int, goal: float = -math.inf
    ) -> list[float]:
        ws = (init if init is not None else self.G.mapping.w_avg.view(1, 1, -1)).clone()
        ws = ws.expand(1, self.G.num_ws, -1).clone()
        out = []
        for _ in range(iterations + 1):
            leaf = ws.requires_grad_(True)
            loss, _, _ = image_loss(self.G.synthesis(leaf), target, self.perceptual, self.weight)
            (grad,) = torch.autograd.grad(loss.sum(), leaf)
            out.append(float(loss[0].detach()))
            if not math.isfinite(out[-1]) or out[-1] <= goal:
                return out
            ws = (leaf - lr * grad).detach()
        return out


def iterations_to(losses: list[float], goal: float) -> float:
    """First (fractional) iteration k with loss(w_k) <= goal; inf if never."""
    for k, v in enumerate(losses):
        if v <= goal:
            if k == 0:
                return 0.0
            prev = losses[k - 1]
            return k - 1 + (prev - goal) / max(prev - v, 1e-12)
    return math.inf


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def fmt_it(x: float, cap: int) -> str:
    return f"> {cap}" if math.isinf(x) else f"{x:.0f}"


def part_iterations(b: Bench, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    G = b.G
    with torch.no_grad():  # SGD's tuning faces (seeds the measurement does not use)
        tune = [
            G.synthesis(G.mapping(z_from_seed(s, G.z_dim).float(), truncation_psi=0.7))
            for s in (20_000, 20_001)
        ]
    best_lr, best = SGD_GRID[0], math.inf
    for lr in SGD_GRID:
        score = sum(math.log(b.sgd_losses(t, None, lr, 40)[-1]) for t in tune)
        print(f"SGD lr {lr:g}: tuning score {score:.3f}", flush=True)
        if score < best:
            best_lr, best = lr, score
    rows: list[dict[str, Any]] = []
    sheet: list[list[Image.Image]] = []
    for t in targets(G, args.targets_model, args.targets_real):
        for kind in ("encoder", "random"):
            init = b.start(kind, t["image"], len(rows))
            t0 = time.perf_counter()
            adam = b.engine_losses("adam", t["image"], init, args.adam_steps)
            goal = adam[args.adam_steps]
            learned = b.engine_losses("learned", t["image"], init, args.cap, goal)
            sgd = b.sgd_losses(t["image"], init, best_lr, args.cap, goal)
            r = {
                "target": t["name"], "kind": t["kind"], "init": kind,
                "adam": iterations_to(adam, goal), "sgd": iterations_to(sgd, goal),
                "learned": iterations_to(learned, goal), "goal": goal,
            }  # fmt: skip
            rows.append(r)
            took = time.perf_counter() - t0
            print(f"{t['name']:>11} {kind:>7}: adam {r['adam']:.1f}, sgd {r['sgd']:.1f}, "
                  f"learned {r['learned']:.1f} ({took:.0f} s)", flush=True)  # fmt: skip
            if kind == "encoder" and t["kind"] == "held-out" and len(sheet) < 3:
                sheet.append(sheet_row(b, t["image"], init))
    if sheet:
        draw_sheet(sheet, IMAGES / "learned-optimizer.jpg")
    loss = f"MSE + {b.weight:g} x {b.perceptual.name}"
    return table_iterations(rows, best_lr, args, loss), {"rows": rows}


@torch.no_grad()
def _render(b: Bench, ws: torch.Tensor) -> Image.Image:
    return Image.fromarray(to_uint8(b.G.synthesis(ws))[0])


def sheet_row(b: Bench, target: torch.Tensor, init: torch.Tensor | None) -> list[Image.Image]:
    """target, start, Adam and learned after each of SHEET_STEPS iterations."""
    row = [Image.fromarray(to_uint8(target)[0]), _render(b, init)]
    for name in ("adam", "learned"):
        engine, config = make_engine(name, b.G, steps=max(SHEET_STEPS), perceptual=b.perceptual,
                                     learned=b.learned)  # fmt: skip
        state = engine.start(target, config, init)
        while not state.done:
            engine.step(state)
            if state.step in SHEET_STEPS:
                row.append(_render(b, engine.current_ws(state).detach()))
    a, l_ = row[2:2 + len(SHEET_STEPS)], row[2 + len(SHEET_STEPS):]  # fmt: skip
    return row[:2] + [x for pair in zip(a, l_, strict=True) for x in pair]


def draw_sheet(rows: list[list[Image.Image]], path: Path) -> None:
    names = ["target", "encoder's guess"]
    for s in SHEET_STEPS:
        names += [f"Adam, {s} it.", f"learned, {s} it."]
    size, top = 160, 22
    sheet = Image.new("RGB", (size * len(names), top + size * len(rows)), "white")
    d = ImageDraw.Draw(sheet)
    for j, n in enumerate(names):
        d.text((j * size + 4, 5), n, fill="black")
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            sheet.paste(
                im.resize((size, size), Image.Resampling.LANCZOS), (j * size, top + i * size)
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, quality=88)


def table_iterations(
    rows: list[dict[str, Any]], sgd_lr: float, args: argparse.Namespace, loss: str
) -> str:
    cap = args.cap
    lines = [
        "| start | targets | Adam (iterations) | SGD | learned | learned vs Adam | learned vs SGD "
        "| learned reached | SGD reached |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for init in ("encoder", "random"):
        for kind, label in (("model", "model samples"), ("held-out", "held-out SynthFaces"),
                            (None, "all")):  # fmt: skip
            sel = [r for r in rows if r["init"] == init and (kind is None or r["kind"] == kind)]
            if not sel:
                continue
            red_a = [1 - r["learned"] / r["adam"] for r in sel]
            red_s = [1 - r["learned"] / r["sgd"] if math.isfinite(r["sgd"]) else 1.0 for r in sel]
            reach_l = sum(math.isfinite(r["learned"]) for r in sel)
            reach_s = sum(math.isfinite(r["sgd"]) for r in sel)
            bold = "**" if kind is None else ""
            lines.append(
                f"| {init} | {label} | {fmt_it(med([r['adam'] for r in sel]), cap)} "
                f"| {fmt_it(med([r['sgd'] for r in sel]), cap)} "
                f"| {fmt_it(med([r['learned'] for r in sel]), cap)} "
                f"| {bold}{100 * med(red_a):.0f} % fewer{bold} | {100 * med(red_s):.0f} % fewer "
                f"| {reach_l}/{len(sel)} | {reach_s}/{len(sel)} |"
            )
    per = ", ".join(f"{r['target']}/{r['init']} {100 * (1 - r['learned'] / r['adam']):.0f}"
                    for r in rows)  # fmt: skip
    return (
        "Iterations to reach the loss Adam (lr 0.01) has after "
        f"{args.adam_steps} iterations, medians per group; 'fewer' is the median over targets "
        f"of 1 - learned/Adam (1 - learned/SGD; a target SGD never reaches within {cap} counts "
        f"as 100 %). SGD's learning rate {sgd_lr:g} is the best of {list(SGD_GRID)} on two "
        f"other model samples (40 iterations). Loss: {loss}.\n\n"
        + "\n".join(lines)
        + f"\n\nPer target (% fewer iterations than Adam): {per}\n"
    )


def part_wall(b: Bench, args: argparse.Namespace) -> str:
    G = b.G
    ts = targets(G, args.wall_targets, args.wall_targets)
    engines = ("progressive", "learned", "progressive-learned")
    rows: list[dict[str, Any]] = []
    for t in ts:
        for init_kind in ("encoder", "average"):
            init = b.start(init_kind, t["image"], 0)
            base = curve(b, "adam", t["image"], init, args.wall_baseline, args.eval_every, None)
            goal = base[-1]["perceptual"]
            t_base = time_to_reach(base, "perceptual", goal)
            r = {"target": t["name"], "init": init_kind, "adam": t_base}
            for e in engines:
                c = curve(b, e, t["image"], init, args.wall_baseline, args.eval_every, goal)
                r[e] = time_to_reach(c, "perceptual", goal) / t_base
            rows.append(r)
            print(f"{t['name']:>11} {init_kind:>8}: adam {t_base:.1f} s, "
                  + ", ".join(f"{e} {r[e]:.2f}x" for e in engines), flush=True)  # fmt: skip
    lines = [
        "| start | Adam's time (s, median) | " + " | ".join(engines) + " |",
        "|---|---|" + "---|" * len(engines),
    ]
    for init_kind in ("encoder", "average"):
        sel = [r for r in rows if r["init"] == init_kind]
        cells = []
        for e in engines:
            vals = [r[e] for r in sel]
            reached = sum(math.isfinite(v) for v in vals)
            cells.append(f"{med(vals):.2f}x ({reached}/{len(vals)} reached)")
        label = "encoder's guess" if init_kind == "encoder" else "w_avg"
        lines.append(
            f"| {label} | {med([r['adam'] for r in sel]):.1f} | " + " | ".join(cells) + " |"
        )
    return (
        f"Wall time to the perceptual distance Adam reaches in {args.wall_baseline} steps, as a "
        f"ratio of Adam's time (median over {len(ts)} targets: {args.wall_targets} model samples, "
        f"{args.wall_targets} held-out SynthFaces; each engine stops at the goal or after "
        f"{args.wall_baseline} steps).\n\n" + "\n".join(lines) + "\n"
    )


def curve(b: Bench, name: str, target, init, steps: int, every: int, goal: float | None):
    engine, config = make_engine(name, b.G, steps=steps, perceptual=b.perceptual, heads=b.heads,
                                 learned=b.learned)  # fmt: skip
    state = engine.start(target, config, init)
    rows = []
    while not state.done:
        report = engine.step(state)
        if report.step % every == 0 or state.done:
            m = full_metrics(b.G, engine.current_ws(state).detach(), target,
                             perceptual=b.perceptual)  # fmt: skip
            rows.append({"step": report.step, "elapsed": report.elapsed, **m})
            if goal is not None and m["perceptual"] <= goal:
                break
    return rows


def part_training(b: Bench) -> str:
    entry = (load_card(b.model_dir).model_extra or {})["optimizer"]
    curve_pts = entry["curve"]
    path = IMAGES / "learned-optimizer-training.png"
    plot_curve(curve_pts, path)
    m = entry["machine"]
    return (
        f"Trained with `stylelens train-optimizer` on {'; '.join(m)}: {entry['images']} target "
        f"images ({entry['iterations']} iterations of {entry['training']['batch']} inversions, "
        f"{entry['training']['trajectory']} steps each), {entry['seconds'] / 60:.0f} min; "
        f"{'stopped early' if entry['stopped_early'] else 'stopped at --images'}. Test score "
        f"(mean log loss of {entry['training']['eval_targets']} test inversions after "
        f"{entry['training']['trajectory']} steps): untrained (= Adam lr 0.01) "
        f"{entry['untrained_test_log_loss']:.3f}, best {entry['best']['test_log_loss']:.3f} at "
        f"{entry['best']['images']} images.\n\n![test loss over training](images/{path.name})\n"
    )


def plot_curve(points: list[list[float]], path: Path) -> None:
    W, H, pad = 640, 320, 56
    im = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(im)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x1, y0, y1 = max(max(xs), 1), min(ys), max(ys)
    y0, y1 = y0 - 0.05 * (y1 - y0 + 1e-9), y1 + 0.05 * (y1 - y0 + 1e-9)

    def xy(x: float, y: float) -> tuple[float, float]:
        return pad + x / x1 * (W - 2 * pad), H - pad - (y - y0) / (y1 - y0) * (H - 2 * pad)

    d.rectangle([pad, pad, W - pad, H - pad], outline="black")
    d.line([xy(x, y) for x, y in zip(xs, ys, strict=True)], fill="#1f77b4", width=2)
    for x, y in zip(xs, ys, strict=True):
        cx, cy = xy(x, y)
        d.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill="#1f77b4")
    _, ya = xy(0, ys[0])
    d.line([pad, ya, W - pad, ya], fill="#d62728")
    d.text((W - pad - 150, ya - 14), "untrained = Adam lr 0.01", fill="#d62728")
    for j in range(5):
        y = y0 + (y1 - y0) * j / 4
        d.text((4, xy(0, y)[1] - 6), f"{y:.2f}", fill="black")
        x = x1 * j / 4
        d.text((xy(x, y0)[0] - 10, H - pad + 6), f"{x:.0f}", fill="black")
    d.text((W // 2 - 60, H - 22), "training images", fill="black")
    d.text((pad, 20), "test score: mean log loss after the trajectory's steps", fill="black")
    im.save(path)


def main() -> None:
    args = parse()
    parts = args.part or ["training", "iterations", "wall"]
    b = Bench(args)
    t0 = time.perf_counter()
    head = (
        f"Measured {datetime.date.today()} on {machine()} with `python "
        f"benchmarks/learned_optimizer.py` ({{minutes:.0f}} min), model `{args.model}`.\n\n"
    )
    sections = []
    if "training" in parts:
        sections.append(("learned-optimizer-training", part_training(b)))
    if "iterations" in parts:
        body, _ = part_iterations(b, args)
        sections.append(("learned-optimizer-iterations", body))
    if "wall" in parts:
        sections.append(("learned-optimizer-wall", part_wall(b, args)))
    minutes = (time.perf_counter() - t0) / 60
    for name, body in sections:
        text = head.format(minutes=minutes) + body
        print(f"\n## {name}\n{text}")
        if args.write_docs:
            write_docs(name, text, DOC)
            write_docs(name, text, PERF)


if __name__ == "__main__":
    main()
