"""The Ray Serve application of cluster mode, and ``stylelens serve --cluster``.

Two deployments: ``Models`` (``replica.ModelReplica``: one copy of the served models per
replica; one GPU each when ``replica_gpus`` is 1, CPUs otherwise; autoscaled on ongoing
requests, where a running inversion counts as one for its whole life) and ``StyleLens``, the
ingress: the same FastAPI app as ``stylelens serve`` with a ``cluster.backend.ClusterBackend``
over the ``Models`` handle. Serve's proxy carries HTTP and websockets to it. One ingress
replica: a session's sockets and its event stream meet there.

The app's factory (``api.app.create_app``) is handed in by the caller (``stylelens serve
--cluster`` in ``api/cli.py``) and travels to the ingress replica by reference: this package
sits below ``api/`` and never imports it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stylelens.cluster.backend import ClusterBackend
from stylelens.cluster.replica import ModelReplica
from stylelens.settings import Settings

log = logging.getLogger("stylelens.cluster")

APP_NAME = "stylelens"


@dataclass(frozen=True)
class ClusterOptions:
    """How the model deployment is sized (``stylelens serve --cluster`` flags)."""

    min_replicas: int = 1
    max_replicas: int = 1
    replica_cpus: float = 1.0
    replica_gpus: float | None = None  # None: 1 where the cluster has GPUs (device not cpu)
    target_ongoing_requests: float = 4.0  # per replica, before the autoscaler adds one
    max_ongoing_requests: int = 64  # per replica (renders + jobs + inversions)


# create_app(settings, backend=BackendFactory) -> the ASGI app
AppFactory = Callable[..., Any]


class Ingress:
    """The web app inside Serve (made an ingress deployment by :func:`application`)."""

    def __init__(self, settings: dict[str, Any], models: Any, make_app: AppFactory) -> None:
        self.settings = Settings(**settings)
        self.models = models
        self.make_app = make_app

    def __serve_build_asgi_app__(self) -> Any:
        backend = functools.partial(ClusterBackend, self.models)
        return self.make_app(self.settings, backend=backend)


def portable(settings: Settings) -> dict[str, Any]:
    """The settings as every process of the cluster gets them: directories made absolute
    (each node must see them at these paths: a shared volume)."""
    update: dict[str, Any] = {
        "models_dir": settings.models_dir.resolve(),
        "data_dir": settings.data_dir.resolve(),
    }
    if settings.frontend_dir is not None:
        update["frontend_dir"] = settings.frontend_dir.resolve()
    return settings.model_copy(update=update).model_dump(mode="json")


def models_deployment(options: ClusterOptions) -> Any:
    """The ``Models`` deployment (not bound)."""
    from ray import serve

    scaling: dict[str, Any]
    if options.max_replicas > options.min_replicas:
        scaling = {
            "autoscaling_config": {
                "min_replicas": options.min_replicas,
                "max_replicas": options.max_replicas,
                "target_ongoing_requests": options.target_ongoing_requests,
            }
        }
    else:
        scaling = {"num_replicas": options.min_replicas}
    return serve.deployment(
        ModelReplica,
        name="Models",
        ray_actor_options={
            "num_cpus": options.replica_cpus,
            "num_gpus": options.replica_gpus or 0.0,
        },
        max_ongoing_requests=options.max_ongoing_requests,
        health_check_period_s=2.0,
        health_check_timeout_s=30.0,
        graceful_shutdown_timeout_s=15.0,
        **scaling,
    )


def application(settings: Settings, options: ClusterOptions, make_app: AppFactory) -> Any:
    """The whole Serve application: the ingress (``make_app``'s app) bound to the model
    replicas."""
    from ray import serve

    config = portable(settings)
    ingress: Any = serve.deployment(
        serve.ingress()(Ingress),
        name="StyleLens",
        num_replicas=1,
        ray_actor_options={"num_cpus": 0},
        max_ongoing_requests=1000,  # websockets are long requests
    )
    return ingress.bind(config, models_deployment(options).bind(config), make_app)


def run(
    settings: Settings, options: ClusterOptions, address: str | None, make_app: AppFactory
) -> None:
    """Deploy on the Ray cluster at ``address`` (None: ``RAY_ADDRESS``, else a local Ray
    instance on this machine) and serve on ``settings.host:settings.port`` until Ctrl+C."""
    import ray
    from ray import serve

    ray.init(address=address, namespace="stylelens", log_to_driver=False)
    if options.replica_gpus is None:
        has_gpus = ray.cluster_resources().get("GPU", 0) > 0
        gpus = 1.0 if has_gpus and settings.device != "cpu" else 0.0
        options = dataclasses.replace(options, replica_gpus=gpus)
    serve.start(
        http_options={"host": settings.host, "port": settings.port},
        detached=False,
    )
    try:  # Ctrl+C while the application starts stops it as cleanly as once it runs
        serve.run(application(settings, options, make_app), name=APP_NAME, route_prefix="/")
        log.info(
            "StyleLens cluster application on http://%s:%d (Ray at %s)",
            settings.host,
            settings.port,
            ray.get_runtime_context().gcs_address,
        )
        print(f"serving on http://{settings.host}:{settings.port} (Ctrl+C stops)", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.delete(APP_NAME)
        serve.shutdown()
        ray.shutdown()
