"""``stylelens serve``: run the web app with uvicorn, or (``--cluster``) as a Ray Serve
application over model replicas (``stylelens.cluster``)."""

from __future__ import annotations

import argparse
import math
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
    c = p.add_argument_group(
        "cluster mode", "serve on a Ray cluster (pip install -e '.[cluster]'; docs/cluster.md)"
    )
    c.add_argument(
        "--cluster",
        action="store_true",
        help="run the app as a Ray Serve application: the app as the ingress, the models as "
        "a deployment of replicas",
    )
    c.add_argument(
        "--address",
        default=None,
        help="the Ray cluster to join (default: env RAY_ADDRESS, else a Ray instance started "
        "on this machine)",
    )
    c.add_argument(
        "--replicas", type=int, default=1, help="model replicas to start with (default: 1)"
    )
    c.add_argument(
        "--max-replicas",
        type=int,
        default=None,
        help="autoscale up to this many on ongoing requests (default: --replicas, no scaling)",
    )
    c.add_argument(
        "--replica-cpus",
        type=float,
        default=1.0,
        help="CPUs Ray reserves per replica (default: %(default)s)",
    )
    c.add_argument(
        "--replica-gpus",
        type=float,
        default=None,
        help="GPUs per replica (default: 1 when the cluster has GPUs and --device is not "
        "cpu, else 0)",
    )
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
    if args.cluster:
        serve_cluster(settings, args)
        return
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


def serve_cluster(settings: Settings, args: argparse.Namespace) -> None:
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError:
        raise StyleLensError(
            "cluster mode needs Ray Serve: pip install -e '.[cluster]' (see docs/cluster.md)"
        ) from None
    from stylelens.api.app import create_app
    from stylelens.cluster.serve import ClusterOptions, run

    if args.replicas < 1:
        raise StyleLensError("--replicas must be at least 1")
    if not (math.isfinite(args.replica_cpus) and args.replica_cpus > 0):
        raise StyleLensError(f"--replica-cpus must be a positive number, got {args.replica_cpus}")
    gpus = args.replica_gpus
    if gpus is not None and not (math.isfinite(gpus) and gpus >= 0):
        raise StyleLensError(f"--replica-gpus must be 0 or more, got {gpus}")
    most = args.max_replicas if args.max_replicas is not None else args.replicas
    if most < args.replicas:
        raise StyleLensError(f"--max-replicas {most} is below --replicas {args.replicas}")
    options = ClusterOptions(
        min_replicas=args.replicas,
        max_replicas=most,
        replica_cpus=args.replica_cpus,
        replica_gpus=args.replica_gpus,
    )
    run(settings, options, args.address, create_app)
