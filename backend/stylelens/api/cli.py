"""``stylelens serve``: run the web app with uvicorn."""

from __future__ import annotations

import argparse
from pathlib import Path

from stylelens.cli_args import Commands, add_device, add_model, add_models_dir
from stylelens.errors import StyleLensError
from stylelens.settings import Settings

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def running_in_container(root: Path = Path("/")) -> bool:
    """Whether this process runs in a container: Docker's ``/.dockerenv``, Podman's
    ``/run/.containerenv``, or a container runtime named in PID 1's cgroup (cgroup v1)."""
    if (root / ".dockerenv").exists() or (root / "run" / ".containerenv").exists():
        return True
    try:
        cgroup = (root / "proc" / "1" / "cgroup").read_text()
    except OSError:
        return False
    return any(k in cgroup for k in ("docker", "containerd", "kubepods", "libpod", "lxc"))


def check_exposure(host: str, settings: Settings, *, in_container: bool | None = None) -> None:
    """Refuse to serve beyond loopback without an access token.

    The one exception is ``STYLELENS_IN_CONTAINER`` (set by our Docker image) in a real
    container: there 0.0.0.0 is the container's own interface and the published port decides
    who can reach it. Outside a container the setting is refused, not obeyed.

    Raises:
        StyleLensError: the host is not loopback and no token is set.
    """
    if host in LOOPBACK or settings.auth_token:
        return
    if settings.in_container:
        if running_in_container() if in_container is None else in_container:
            return
        raise StyleLensError(
            f"--host {host} with STYLELENS_IN_CONTAINER set, but this is not a container "
            "(no /.dockerenv, /run/.containerenv or container cgroup): set "
            "STYLELENS_AUTH_TOKEN to expose the app, or unset STYLELENS_IN_CONTAINER"
        )
    raise StyleLensError(
        f"--host {host} exposes the app to the network: set STYLELENS_AUTH_TOKEN first"
    )


def register(commands: Commands, settings: Settings) -> None:
    p = commands.add("serve", "use", help="run the web app (http://127.0.0.1:8000 by default)")
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
    add_device(p, settings)
    p.set_defaults(func=cmd_serve, settings=settings)


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from stylelens.api.app import create_app
    from stylelens.api.logs import log_config

    base: Settings = args.settings
    check_exposure(args.host, base)
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
        log_config=log_config(),  # tokens and session ids redacted in every line
    )
