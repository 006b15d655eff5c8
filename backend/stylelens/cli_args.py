"""What every area's ``cli.py`` uses to add its ``stylelens`` commands: :class:`Commands` (the
registry the root assembles, with the group each command is listed under) and the arguments
several commands share, with their defaults from ``Settings``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from stylelens.errors import StyleLensError
from stylelens.settings import Settings

# ``stylelens --help`` lists the commands in these groups, in this order.
GROUPS: dict[str, str] = {
    "use": "edit faces",
    "models": "models and their parts",
    "training": "training",
    "measurement": "measurement",
}


class UsageError(StyleLensError):
    """A command-line mistake: one line on stderr, exit status 2."""


class Commands:
    """The sub-commands an area's ``register(commands, settings)`` adds: argparse's subparsers,
    plus the group and one-line help of each for the grouped ``stylelens --help``."""

    def __init__(self, subparsers: Any) -> None:
        self._subparsers = subparsers
        self.listed: list[tuple[str, str, str]] = []  # (group, name, help)

    def add(self, name: str, group: str, help: str, **kwargs: Any) -> argparse.ArgumentParser:
        """A new command ``name`` under ``group`` (one of :data:`GROUPS`); ``help`` is its line
        in ``stylelens --help`` and the description of ``stylelens NAME --help``."""
        if group not in GROUPS:
            raise ValueError(f"command {name}: unknown group {group!r}")
        self.listed.append((group, name, help))
        kwargs.setdefault("description", help)
        parser: argparse.ArgumentParser = self._subparsers.add_parser(name, **kwargs)
        return parser

    def epilog(self) -> str:
        width = max(len(name) for _, name, _ in self.listed) + 2
        blocks = []
        for group, title in GROUPS.items():
            rows = [f"  {n:<{width}}{h}" for g, n, h in self.listed if g == group]
            if rows:
                blocks.append(f"{title}:\n" + "\n".join(rows))
        return "\n\n".join(blocks) + "\n\nstylelens COMMAND --help says more about each."


def check_writable(directory: Path) -> None:
    """Make ``directory`` and check a file can be written there (UsageError if not)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".stylelens-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write to {directory}: {exc.strerror or exc}") from exc


def save_image(image: Any, path: Path) -> None:
    """``image.save(path)``; an unwritable path is a UsageError."""
    try:
        image.save(path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc


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
