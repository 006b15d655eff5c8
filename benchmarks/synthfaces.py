"""SynthFaces rendering speed: images per second at each resolution.

For each resolution, side by side in one run: one process rendering (``render_face`` in a
loop, the cost of one face), ``--workers`` processes rendering into memory (what a training
data loader gets), and ``stylelens synthfaces``' folder writer (PNG encoding included).
Medians over ``--repeats`` runs.

    python benchmarks/synthfaces.py                 # 64,128,256,512
    python benchmarks/synthfaces.py --write-docs
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import DOC, machine, write_docs

from stylelens.data.synthfaces import render_face, write_folder
from stylelens.data.synthfaces.dataset import render_arrays


def rate(fn, n: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


def bench(res: int, n: int, workers: int, repeats: int, tmp: Path) -> tuple[float, ...]:
    """(1 process, ``workers`` processes into memory, ``workers`` processes to PNG) img/s."""
    render_face(0, res)  # warm-up

    def single() -> None:
        for s in range(n):
            render_face(s, res)

    def pool() -> None:
        render_arrays(first_seed=0, n=4 * n, resolution=res, workers=workers, progress=False)

    def folder() -> None:
        shutil.rmtree(tmp / "out", ignore_errors=True)
        write_folder(tmp / "out", n=4 * n, resolution=res, workers=workers, progress=False)

    return rate(single, n, repeats), rate(pool, 4 * n, repeats), rate(folder, 4 * n, repeats)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="64,128,256,512")
    p.add_argument("--n", type=int, default=400, help="faces per timed run at 256 (scaled)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--write-docs", action="store_true", help="update docs/performance.md")
    args = p.parse_args()
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="synthfaces-bench-"))
    try:
        for res in [int(s) for s in args.sizes.split(",")]:
            n = max(32, int(args.n * (256 / res) ** 2 / 2))
            single, pool, written = bench(res, n, args.workers, args.repeats, tmp)
            rows.append((res, single, pool, written))
            print(f"{res}px: {single:.0f} / {pool:.0f} / {written:.0f} img/s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [
        f"Measured {datetime.date.today()} on {machine()}. Medians of {args.repeats} runs; "
        f"the multi-process figures include starting the {args.workers} worker processes.",
        "",
        f"| resolution | 1 process | {args.workers} processes, into memory "
        f"| {args.workers} processes, PNG folder (`stylelens synthfaces`) |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r} | {a:.0f} img/s | {b:.0f} img/s | {c:.0f} img/s |" for r, a, b, c in rows]
    body = "\n".join(lines)
    print(body)
    if args.write_docs:
        write_docs("synthfaces", body)
        print(f"\nwrote {DOC}")


if __name__ == "__main__":
    main()
