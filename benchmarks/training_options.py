"""Training speed options, phase by phase, side by side in one run.

A training minibatch is a sequence of phases (``stylelens.training.loop.train_step``): G main,
the supervised phase (``--supervise``), path length (every ``pl_interval``), D main, R1 (every
``r1_interval``), the G_ema update. This script times each phase on its own for every variant
(precision, channels-last memory format, ``torch.compile``, batch size), interleaving the
variants round by round so that they share the machine's noise, and reports the median
milliseconds of each phase. The images per second of a whole schedule then follow from the
phase medians: batch / (G main + supervised + D main + EMA + path length / pl_interval +
R1 / r1_interval), which is how the regulariser schedules are compared without training each.

The networks are a real model's (``--model``, default the embedded synthfaces-256) with its
training settings; the images are random (no data loading is timed).

    python benchmarks/training_options.py                       # every variant, 5 rounds
    python benchmarks/training_options.py --variants float32,bfloat16 --rounds 3
    python benchmarks/training_options.py --write-docs

``torch.compile`` applies to G main and D main only: R1 and path length differentiate a
gradient (double backward), which compiled graphs do not support, so they stay eager.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from common import ROOT, machine, write_docs

from stylelens.checkpoints.native import load_card, model_dir_for
from stylelens.data.synthfaces.latent import PARAM_DIMS
from stylelens.training.config import TrainConfig, architecture_of
from stylelens.training.loop import _d_main, _d_reg, _g_main, _g_reg, _g_supervised
from stylelens.training.loss import ema_beta
from stylelens.training.state import TrainingState, start_state, update_ema

PHASES = ("g_main", "g_sup", "g_pl", "d_main", "d_r1", "ema")


@dataclass(frozen=True)
class Variant:
    name: str
    precision: str = "bfloat16"
    channels_last: bool = False  # TrainConfig.channels_last
    compile: bool = False  # TrainConfig.compile
    batch: int = 8


VARIANTS = {
    v.name: v
    for v in (
        Variant("float32", precision="float32"),
        Variant("bfloat16"),
        Variant("bfloat16+channels-last", channels_last=True),
        Variant("bfloat16+compile", compile=True),
        Variant("bfloat16+channels-last+compile", channels_last=True, compile=True),
        Variant("float32+channels-last", precision="float32", channels_last=True),
        Variant("bfloat16 batch 4", batch=4),
        Variant("bfloat16 batch 16", batch=16),
    )
}
# (name, pl_interval or None for off, r1_interval, supervised phase on)
SCHEDULES = (
    ("as trained (supervised; path length /4, R1 /16)", 4, 16, True),
    ("no supervised phase", 4, 16, False),
    ("path length /8, R1 /32", 8, 32, True),
    ("path length off, R1 /16", None, 16, True),
    ("path length off, R1 /32", None, 32, True),
)


class Bench:
    """One variant's training state, real images and timed phases."""

    def __init__(self, variant: Variant, model: str) -> None:
        self.v = variant
        model_dir = model_dir_for(ROOT / "models", model)
        card = load_card(model_dir)
        config = TrainConfig(
            **architecture_of(card.generator, card.discriminator), init=str(model_dir),
            batch=variant.batch, precision=variant.precision, channels_last=variant.channels_last,
            compile=variant.compile,
            supervise=5, supervise_res=64, mapping_lr_factor=20,  # the second generation's
        ).resolved()  # fmt: skip
        self.state: TrainingState = start_state(config, torch.device("cpu"))[0]
        g = torch.Generator().manual_seed(0)
        r = config.resolution
        real = torch.randint(0, 256, (variant.batch, 3, r, r), generator=g, dtype=torch.uint8)
        self.x = real.float() / 127.5 - 1
        self.param_z = torch.randn(variant.batch, PARAM_DIMS, generator=g)

    def phase(self, name: str) -> Callable[[], object]:
        s, p, x = self.state, self.v.precision, self.x
        b = self.v.batch

        def ema() -> None:
            beta = ema_beta(batch=b, cur_nimg=10**6, ema_kimg=s.config.ema_kimg or 1,
                            ema_rampup=None)  # fmt: skip
            update_ema(s.G_ema, s.G, beta)

        return {
            "g_main": lambda: _g_main(s, b, p),
            "g_sup": lambda: _g_supervised(s, x, self.param_z, p),
            "g_pl": lambda: _g_reg(s, b, p),
            "d_main": lambda: _d_main(s, x, p),
            "d_r1": lambda: _d_reg(s, x, p),
            "ema": ema,
        }[name]


def img_per_s(ms: dict[str, float], batch: int, pl: int | None, r1: int, sup: bool) -> float:
    total = ms["g_main"] + ms["d_main"] + ms["ema"] + ms["d_r1"] / r1
    total += ms["g_sup"] if sup else 0
    total += ms["g_pl"] / pl if pl else 0
    return batch / (total / 1000)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="synthfaces-256")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma list of: {', '.join(VARIANTS)}")  # fmt: skip
    p.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    p.add_argument("--write-docs", action="store_true", help="update docs/performance.md")
    args = p.parse_args()
    if args.rounds < 1 or args.warmup < 0:
        p.error("--rounds must be at least 1 and --warmup at least 0")
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    benches = [Bench(VARIANTS[n], args.model) for n in names]
    times: dict[str, dict[str, list[float]]] = {n: {ph: [] for ph in PHASES} for n in names}
    compile_s: dict[str, float] = {}
    for rnd in range(args.warmup + args.rounds):
        for bench in benches:
            for ph in PHASES:
                fn = bench.phase(ph)
                t0 = time.perf_counter()
                fn()
                dt = (time.perf_counter() - t0) * 1000
                if rnd == 0 and bench.v.compile and ph in ("g_main", "d_main"):
                    compile_s[ph] = dt / 1000
                if rnd >= args.warmup:
                    times[bench.v.name][ph].append(dt)
        print(f"round {rnd + 1}/{args.warmup + args.rounds}", flush=True)
    med = {n: {ph: statistics.median(t) for ph, t in times[n].items()} for n in names}

    lines = [
        "| variant | batch | " + " | ".join(PHASES) + " | img/s as trained | vs bfloat16 |",
        "|---|---|" + "---|" * len(PHASES) + "---|---|",
    ]
    base = med.get("bfloat16")
    base_rate = img_per_s(base, 8, 4, 16, True) if base else None
    for bench in benches:
        m, v = med[bench.v.name], bench.v
        rate = img_per_s(m, v.batch, 4, 16, True)
        ratio = f"{rate / base_rate:.2f}x" if base_rate else "-"
        lines.append(f"| {v.name} | {v.batch} | " + " | ".join(f"{m[ph]:.0f}" for ph in PHASES)
                     + f" | {rate:.2f} | {ratio} |")  # fmt: skip
    if base:
        lines += ["", "| schedule (bfloat16, batch 8) | img/s | vs as trained |", "|---|---|---|"]
        for label, pl, r1, sup in SCHEDULES:
            rate = img_per_s(base, 8, pl, r1, sup)
            lines.append(f"| {label} | {rate:.2f} | {rate / base_rate:.2f}x |")  # type: ignore[operator]
    note = ""
    if compile_s:
        g_s, d_s = compile_s.get("g_main", 0), compile_s.get("d_main", 0)
        note = f" Compiling took {g_s:.0f} s (G main) and {d_s:.0f} s (D main) on first call."
    body = (
        f"Measured {datetime.date.today().isoformat()} on {machine()} with "
        f"`python benchmarks/training_options.py --rounds {args.rounds}`: model "
        f"{args.model}, median ms per phase over {args.rounds} interleaved rounds after "
        f"{args.warmup} warm-up rounds; img/s of a whole minibatch computed from the phase "
        f"medians.{note}\n\n" + "\n".join(lines)
    )
    print("\n" + body)
    if args.write_docs:
        write_docs("training-options", body)
        print("\nwrote docs/performance.md")


if __name__ == "__main__":
    main()
