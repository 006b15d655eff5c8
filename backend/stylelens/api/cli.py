"""``stylelens serve``: run the web app with uvicorn."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from stylelens.cli_args import add_model, add_models_dir
from stylelens.errors import StyleLensError
from stylelens.settings import Settings

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(subparsers: Any, settings: Settings) -> None:
    p = subparsers.add_parser("serve", help="run the web app (http://127.0.0.1:8000 by default)")
    p.add_argument("--host", default=settings.host, help="bind address (default: %(default)s)")
    p.add_argument("--port", type=int, default=settings.port, help="port (default: %(default)s)")
    add_models_dir(p, settings)
    add_model(p, settings)
    p.add_argument(
        "--data-dir",
        type=Path,
        default=settings.data_dir,
        help="sessions' files and index (default: %(default)s, env STYLELENS_DATA_DIR)",
    )
    p.add_argument(
        "--device", default=settings.device, help="auto, cpu, cuda, cuda:N (default: %(default)s)"
    )
    p.set_defaults(func=cmd_serve, settings=settings)


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from stylelens.api.app import create_app

    base: Settings = args.settings
    if args.host not in LOOPBACK and not base.auth_token and not base.in_container:
        raise StyleLensError(
            f"--host {args.host} exposes the app to the network: set STYLELENS_AUTH_TOKEN first"
        )
    settings = base.model_copy(
        update={
            "host": args.host,
            "port": args.port,
            "models_dir": args.models_dir,
            "default_model": args.model,
            "data_dir": args.data_dir,
            "device": args.device,
        }
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        ws_per_message_deflate=False,  # JPEG frames do not compress; deflate costs memory
        timeout_graceful_shutdown=5,  # open websockets would otherwise block shutdown
        ws_max_size=1 << 20,  # client messages are small JSON; refuse anything near 16 MiB
        log_level="info",
    )
