"""Does rendering several sessions' edits in one generator call pay on this machine?

The worker renders one session's edit per turn. If renders of sessions waiting at the same
time ran as one batched synthesis, each would cost ``time(batch) / batch``. This measures that
for batch 1, 2, 4 and 8 with the embedded model (fresh latents per call, the latents' own
noise maps as a session's edit uses them), medians of interleaved repeats, and says which
batch sizes pay (goal: per-render time at least 20 % below batch 1's, enough to be worth the
scheduling it needs).

    OMP_NUM_THREADS=2 python benchmarks/batching.py --write-docs      # ~2 min, 2 cores
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time

import torch
from common import ROOT, machine, write_docs

from stylelens.checkpoints import load_generator, model_dir_for
from stylelens.render import z_from_seed

BATCHES = (1, 2, 4, 8)
PAYS = 0.8  # a batch pays when each render costs at most this share of a single render


@torch.no_grad()
def measure(model: str, repeats: int) -> dict[int, float]:
    G, _ = load_generator(model_dir_for(ROOT / "models", model))
    G.eval().requires_grad_(False)
    ws_all = torch.cat([G.mapping(z_from_seed(s, G.z_dim).float()) for s in range(max(BATCHES))])
    for b in BATCHES:  # warm-up, every shape once
        G.synthesis(ws_all[:b])
    times: dict[int, list[float]] = {b: [] for b in BATCHES}
    for r in range(repeats):
        for b in BATCHES if r % 2 == 0 else BATCHES[::-1]:
            ws = ws_all[:b] + 0.01 * r  # a new edit each call
            t0 = time.perf_counter()
            G.synthesis(ws)
            times[b].append((time.perf_counter() - t0) / b)
    return {b: statistics.median(t) * 1000 for b, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="synthfaces-256")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    per = measure(args.model, args.repeats)
    rows = [
        f"| {b} | {per[b]:.1f} ms | {per[b] / per[1]:.2f}x | "
        f"{'yes' if per[b] <= PAYS * per[1] else 'no'} |"
        for b in BATCHES
    ]
    body = (
        f"Measured {datetime.date.today()} on {machine()}, model {args.model}, "
        f"`python benchmarks/batching.py --write-docs` (medians of {args.repeats} interleaved "
        "repeats).\n\n| batch | time per render | vs batch 1 | pays (<= 0.8x) |\n"
        "|---|---|---|---|\n" + "\n".join(rows)
    )
    print(body)
    if args.write_docs:
        write_docs("batching", body)


if __name__ == "__main__":
    main()
