"""Encoder speed: CPU time per image of one forward pass, float32 and bfloat16 autocast.

One section per encoder family (``--part``), each a function ``args -> (docs section, body)``
with an ``add_arguments`` for its options:

* ``psp``: pSp and e4e with random weights at the official size (IR-SE50, 18 ws of 512, 256 px
  input); batch-1 forward passes, median of ``--runs`` after one warm-up call in float32 and of
  ``--bf16-runs`` under bfloat16 autocast (no warm-up: on CPUs without native bfloat16, such
  as AVX2-only ones, one pass takes many minutes); GFLOP (convolutions and matmuls, 2 FLOP per
  MAC, ``torch.utils.flop_counter``) and the bfloat16 error against float32 (relative L2 of ws).
* ``init``: the model's encoder as the start of inversion, against ``w_avg`` and Adam
  (``benchmarks/encoder_quality.py``);
* ``edit``: directions measured on encoded faces against sampled ones (the same file).

``--write-docs`` puts each part's tables into their sections of ``docs/encoder.md`` and
``docs/performance.md``.

    python benchmarks/encoder.py --part psp --precision float32     # a couple of minutes
    python benchmarks/encoder.py --part psp --write-docs
    OMP_NUM_THREADS=2 python benchmarks/encoder.py --part init --part edit \
        --sheet docs/images/encoder-light.jpg --write-docs                  # about 15 minutes
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from common import ROOT, machine, write_docs
from torch.utils.flop_counter import FlopCounterMode

from stylelens.encoders.psp import E4EEncoder, PSPEncoder
from stylelens.networks.runtime import autocast

DOC = ROOT / "docs" / "encoder.md"
PRECISIONS = ("float32", "bfloat16")


def add_psp_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", type=int, default=5, help="timed float32 runs (default: 5)")
    p.add_argument("--bf16-runs", type=int, default=1, help="timed bfloat16 runs (default: 1)")
    p.add_argument(
        "--precision", choices=PRECISIONS, action="append", help="default: both (repeatable)"
    )
    p.add_argument(
        "--bf16-encoders",
        default="psp",
        help="comma-separated, of psp,e4e: which to time in bfloat16 (default: psp; e4e runs "
        "the same network)",
    )


@torch.no_grad()
def measure(
    encoder: torch.nn.Module, *, runs: dict[str, int], on_row: Callable[[dict[str, Any]], None]
) -> None:
    """Per precision in ``runs`` (precision -> timed runs): seconds per image (median; the first
    call apart in float32), GFLOP, GFLOP/s and the error against float32."""
    r = int(encoder.input_resolution)  # type: ignore[arg-type]
    img = torch.rand(1, 3, r, r, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with FlopCounterMode(display=False) as counter:
        reference = encoder(img)
    gflop = counter.get_total_flops() / 1e9
    for precision, n in runs.items():
        warm_up = precision == "float32"  # the first call (allocations) is reported apart
        times = []
        for _ in range(n + warm_up):
            t0 = time.perf_counter()
            with autocast(torch.device("cpu"), precision):
                ws = encoder(img)
            times.append(time.perf_counter() - t0)
        median = statistics.median(times[1:] if warm_up else times)
        err = ((ws.float() - reference).norm() / reference.norm()).item()
        on_row(
            {
                "precision": precision,
                "runs": n,
                "median_s": median,
                "first_s": times[0] if warm_up else None,
                "gflop": gflop,
                "gflops": gflop / median,
                "rel_err": err,
            }
        )


def part_psp(args: argparse.Namespace) -> list[tuple[Path, str, str]]:
    """pSp's GradualStyleEncoder and e4e's Encoder4Editing for an 18-w (1024 px) generator."""
    lines = [
        "| encoder | parameters | precision | runs | median s/image | first call s | GFLOP "
        "| GFLOP/s | rel. error vs float32 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    makers: dict[str, tuple[str, Callable[[], torch.nn.Module]]] = {
        "psp": ("pSp (GradualStyleEncoder)", lambda: PSPEncoder(num_ws=18)),
        "e4e": ("e4e (Encoder4Editing)", lambda: E4EEncoder(num_ws=18)),
    }
    precisions = args.precision or list(PRECISIONS)
    bf16_for = set(args.bf16_encoders.split(","))
    for key, (name, make) in makers.items():
        torch.manual_seed(0)
        encoder = make().eval()
        params = sum(p.numel() for p in encoder.parameters())
        runs = {"float32": args.runs, "bfloat16": args.bf16_runs}
        runs = {k: v for k, v in runs.items() if k in precisions and v > 0}
        if key not in bf16_for:
            runs.pop("bfloat16", None)

        def row(r: dict[str, Any], name: str = name, params: int = params) -> None:
            first = "" if r["first_s"] is None else f"{r['first_s']:.2f}"
            lines.append(
                f"| {name} | {params / 1e6:.0f} M | {r['precision']} | {r['runs']} "
                f"| {r['median_s']:.2f} | {first} | {r['gflop']:.1f} | {r['gflops']:.1f} "
                f"| {r['rel_err']:.1e} |"
            )
            print(lines[-1], flush=True)

        measure(encoder, runs=runs, on_row=row)
        del encoder
    header = (
        f"Measured {datetime.date.today().isoformat()} with `python benchmarks/encoder.py --part "
        f"psp --runs {args.runs} --bf16-runs {args.bf16_runs}` on {machine()}: batch 1, "
        "256 x 256 input, random weights at the official size (IR-SE50, 18 ws of 512); "
        "float32: median of the runs after one warm-up call; bfloat16 autocast: median of "
        "its runs, no warm-up."
    )
    return [(DOC, "encoder-psp", header + "\n\n" + "\n".join(lines))]


def part_init(args: argparse.Namespace) -> list[tuple[Path, str, str]]:
    import encoder_quality  # imported only when asked for: it loads the inversion stack

    torch.set_grad_enabled(True)  # inversion steps need gradients
    return encoder_quality.part_init(args)


def part_edit(args: argparse.Namespace) -> list[tuple[Path, str, str]]:
    import encoder_quality

    return encoder_quality.part_edit(args)


def add_quality_arguments(p: argparse.ArgumentParser) -> None:
    import encoder_quality

    encoder_quality.add_arguments(p)


Part = Callable[[argparse.Namespace], list[tuple[Path, str, str]]]
# part name -> (run: args -> [(doc, section, body)], add its options)
PARTS: dict[str, tuple[Part, Callable[[argparse.ArgumentParser], None] | None]] = {
    "psp": (part_psp, add_psp_arguments),
    "init": (part_init, add_quality_arguments),
    "edit": (part_edit, None),  # shares init's options
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=sorted(PARTS), action="append", help="default: all")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument(
        "--write-docs", action="store_true", help="update docs/encoder.md and docs/performance.md"
    )
    for _, add_arguments in PARTS.values():
        if add_arguments is not None:
            add_arguments(p)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for part in args.part or sorted(PARTS):
        for doc, section, body in PARTS[part][0](args):
            print(body)
            if args.write_docs:
                write_docs(section, body, doc=doc)
                print(f"wrote the {section} section of {doc.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
