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


def add_device(p: argparse.ArgumentParser, settings: Settings) -> None:
    p.add_argument(
        "--device", default=settings.device, help="auto, cpu, cuda, cuda:N (default: %(default)s)"
    )


def add_training_run(p: argparse.ArgumentParser, settings: Settings, state_default: str) -> None:
    """--out-state, --resume, --progress and --device of a resumable training command;
    ``state_default`` is what the help names as the default state file."""
    p.add_argument(
        "--out-state",
        type=Path,
        default=None,
        help=f"training state file (default: {state_default})",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out-state")
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm bar"
    )
    add_device(p, settings)
