"""The tests' Ray cluster: a local Ray instance with 2 CPUs, two replicas of the tiny models
(``cluster.serve.models_deployment``), and apps whose backend is a ``ClusterBackend`` over them.
"""

from __future__ import annotations

import functools
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from stylelens.settings import Settings

REPLICAS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cluster_settings(models: Path, data: Path, **kw: Any) -> Settings:
    """The settings of the tests' cluster (as tests/test_api.py's, on the cluster's data)."""
    defaults: dict[str, Any] = {
        "models_dir": models,
        "default_model": "tiny",
        "serve_models": ["tiny-b"],
        "data_dir": data,
        "device": "cpu",
        "perceptual": "ms-ssim",
        "preview_interval_ms": 20,
        "allowed_hosts": ["testserver", "127.0.0.1"],
        "checkpoint_interval_s": 0.2,
    }
    return Settings(**{**defaults, **kw})


@dataclass
class Cluster:
    settings: Settings
    models: Any  # the Models deployment's handle
    port: int  # Serve's HTTP proxy

    def app(self, **kw: Any) -> FastAPI:
        """An app on this cluster's replicas (``kw``: settings the app alone uses, such as
        ``reconnect_grace_s``)."""
        from stylelens.api.app import create_app
        from stylelens.cluster.backend import ClusterBackend

        settings = self.settings.model_copy(update=kw)
        return create_app(settings, backend=functools.partial(ClusterBackend, self.models))

    def replicas(self) -> list[str]:
        """The names of the live Models replicas (Ray actor names, namespace "serve")."""
        import ray

        return sorted(
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith("SERVE_REPLICA::models#Models#")
        )

    def shutdown(self) -> None:
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()


def start_cluster(models: Path, data: Path) -> Cluster:
    import ray
    from ray import serve

    from stylelens.cluster.serve import ClusterOptions, models_deployment, portable

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        namespace="stylelens-tests",
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}},
    )
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    settings = cluster_settings(models, data)
    options = ClusterOptions(min_replicas=REPLICAS, max_replicas=REPLICAS, replica_cpus=0.5)
    handle = serve.run(
        models_deployment(options).bind(portable(settings)), name="models", route_prefix=None
    )
    return Cluster(settings, handle, port)
