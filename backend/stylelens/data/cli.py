"""``stylelens synthfaces`` and ``align``: the procedural training faces, and faces cropped
the way a model's were."""

from __future__ import annotations

import argparse
from pathlib import Path

from stylelens.cli_args import Commands, UsageError, check_writable
from stylelens.data import align_cli
from stylelens.settings import Settings


def register(commands: Commands, settings: Settings) -> None:
    p = commands.add(
        "synthfaces", "training", help="render procedural faces with attribute labels into a folder"
    )
    p.add_argument("--n", type=int, required=True, help="number of faces")
    p.add_argument("--res", type=int, default=256, help="resolution, 64-512 (default: %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="output folder (PNGs + labels.jsonl)")
    p.add_argument("--first-seed", type=int, default=0, help="seed of the first face (default: 0)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.set_defaults(func=cmd_synthfaces)

    align_cli.register(commands, settings)


def cmd_synthfaces(args: argparse.Namespace) -> None:
    from stylelens.data.synthfaces import write_folder

    if args.first_seed < 0:
        raise UsageError("--first-seed must be >= 0")
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    check_writable(args.out)
    try:
        labels = write_folder(
            args.out,
            n=args.n,
            resolution=args.res,
            first_seed=args.first_seed,
            workers=args.workers,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(f"wrote {args.n} faces ({args.res}px) and {labels}")
