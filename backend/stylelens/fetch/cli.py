"""``stylelens fetch``: argparse wiring for :mod:`stylelens.fetch`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from stylelens.cli_args import Commands, add_models_dir
from stylelens.settings import Settings


def register(commands: Commands, settings: Settings) -> None:
    p = commands.add(
        "fetch",
        "models",
        help="download official weights (FFHQ StyleGAN2, LPIPS, e4e directions) as native models",
        description=(
            "Download, verify and convert official weights into native model directories. "
            "Generators get SeFa directions computed; ffhq-1024 also gets e4e's age, smile and "
            "pose directions. Interrupted downloads resume when the command is run again."
        ),
    )
    p.add_argument("name", nargs="?", help="registry entry, e.g. ffhq-256 (see --list)")
    p.add_argument("--list", action="store_true", help="list what can be fetched and exit")
    add_models_dir(p, settings)
    p.add_argument(
        "--registry",
        type=Path,
        default=None,
        help="registry file (default: MODELS_DIR/registry.json, else the repository's)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="downloads and staging (default: MODELS_DIR/.downloads)",
    )
    p.add_argument(
        "--from-file",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="use a file you already downloaded instead of downloading it (repeatable; "
        "matched to the registry's file names, or the entry's only file)",
    )
    p.add_argument("--overwrite", action="store_true", help="reinstall an installed model")
    p.add_argument(
        "--keep-downloads", action="store_true", help="keep the original files after converting"
    )
    p.add_argument(
        "--sefa-top", type=int, default=10, help="SeFa directions to compute (default: 10)"
    )
    p.add_argument(
        "--fit-preview-heads",
        action="store_true",
        help="also fit the preview heads (minutes on a GPU, long on a CPU for 1024 px)",
    )
    p.add_argument(
        "--heads-steps", type=int, default=600, help="preview-head fit steps (default: 600)"
    )
    p.add_argument(
        "--device",
        default=settings.device,
        help="for SeFa and preview heads (default: %(default)s)",
    )
    p.add_argument("--retries", type=int, default=5, help="resumed attempts per file (default: 5)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_fetch)


def _local_files(entry: Any, paths: list[Path]) -> dict[str, Path]:
    from stylelens.fetch.registry import FetchError

    names = [f.file for f in entry.files]
    out: dict[str, Path] = {}
    for path in paths:
        if path.name in names:
            out[path.name] = path
        elif len(names) == 1:
            out[names[0]] = path
        else:
            raise FetchError(
                f"--from-file {path}: name it like one of {', '.join(names)} so it is clear "
                "which file it replaces"
            )
    return out


def cmd_fetch(args: argparse.Namespace) -> None:
    from stylelens.fetch import DownloadConfig, FetchError, FetchOptions, fetch, load_registry
    from stylelens.fetch.registry import registry_for
    from stylelens.networks.preview import FitConfig

    registry = load_registry(
        registry_for(Path(args.models_dir), Path(args.registry) if args.registry else None)
    )
    if args.list or args.name is None:
        if args.name is None and not args.list:
            print("give a NAME to fetch; the registry has:", file=sys.stderr)
        for name, entry in registry.entries.items():
            size = entry.total_size()
            shown = f"{size / 1e6:.0f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
            print(f"{name:<14} {entry.kind:<11} {shown:>8}  {entry.title}")
        if args.name is None and not args.list:
            raise FetchError("nothing fetched: give a NAME")
        return
    if args.retries < 0 or args.sefa_top < 0 or args.heads_steps < 1:
        raise FetchError("--retries and --sefa-top must be >= 0, --heads-steps >= 1")
    entry = registry.get(args.name)
    options = FetchOptions(
        models_dir=Path(args.models_dir),
        cache_dir=args.cache_dir or Path(args.models_dir) / ".downloads",
        overwrite=args.overwrite,
        keep_downloads=args.keep_downloads,
        sefa_top=args.sefa_top,
        preview_heads=FitConfig(steps=args.heads_steps) if args.fit_preview_heads else None,
        device=args.device,
        download=DownloadConfig(retries=args.retries, progress=not args.quiet),
        local_files=_local_files(entry, args.from_file),
    )
    if entry.license:
        print(f"licence: {entry.license}")
    fetch(registry, args.name, options)
