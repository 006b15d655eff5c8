"""Arguments several ``stylelens`` subcommands share, with their defaults from ``Settings``."""

from __future__ import annotations

import argparse
from pathlib import Path

from stylelens.settings import Settings


def add_models_dir(p: argparse.ArgumentParser, settings: Settings) -> None:
    p.add_argument(
        "--models-dir",
        type=Path,
        default=settings.models_dir,
        help="one folder per model (default: %(default)s, env STYLELENS_MODELS_DIR)",
    )


def add_model(p: argparse.ArgumentParser, settings: Settings) -> None:
    p.add_argument(
        "--model", default=settings.default_model, help="model id (default: %(default)s)"
    )
