"""The ``stylelens`` command: assembles the commands every area's ``cli.py`` registers.

User mistakes (unknown model, malformed seeds, unwritable output, bad checkpoint) print one
clear line to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from stylelens import __version__
from stylelens.api import cli as serve_cli
from stylelens.checkpoints import cli as checkpoints_cli
from stylelens.cli_args import Commands, UsageError
from stylelens.data import cli as data_cli
from stylelens.directions import cli as directions_cli
from stylelens.editing import cli as editing_cli
from stylelens.errors import StyleLensError
from stylelens.evaluation import cli as evaluation_cli
from stylelens.fetch import cli as fetch_cli
from stylelens.inversion import cli as inversion_cli
from stylelens.networks import cli as networks_cli
from stylelens.restoration import cli as restoration_cli
from stylelens.settings import Settings
from stylelens.training import cli as training_cli

EXIT_USAGE = 2
# Each area registers its own commands (``register(commands, settings)``); the order here is
# only the order argparse lists them in errors, ``--help`` groups them (cli_args.GROUPS).
AREAS = (
    serve_cli,  # serve
    networks_cli,  # render
    inversion_cli,  # invert, encode, fit-preview-heads
    restoration_cli,  # restore
    editing_cli,  # edit
    data_cli,  # align, synthfaces
    checkpoints_cli,  # models, convert, convert-encoder
    fetch_cli,  # fetch
    directions_cli,  # directions compute|import|list|delete|sheet|measure
    training_cli,  # train, export, grow, train-encoder, train-optimizer
    evaluation_cli,  # eval-model, train-attributes
)

__all__ = ["EXIT_USAGE", "UsageError", "build_parser", "main"]


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stylelens",
        description="StyleLens: StyleGAN2 face editing from the command line.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"stylelens {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="one of the commands below"
    )
    commands = Commands(sub)
    for area in AREAS:
        area.register(commands, settings)
    parser.epilog = commands.epilog()
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    settings = Settings()
    parser = build_parser(settings)
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        func(args)
    except StyleLensError as exc:
        print(f"stylelens {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
