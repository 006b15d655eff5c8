"""What the web app needs from whatever runs the models: the typed interface between ``api/``
and a backend.

``jobs.worker.Worker`` (one thread in this process) implements it, and so does
``cluster.backend.ClusterBackend`` (model replicas on a Ray cluster); the app holds a
:class:`Backend`, never a concrete one, and is handed a :data:`BackendFactory` that makes it
(``api.app.create_app``), so both drive the same routes and websocket. Requests are values
(session ids, protocol messages); results come back as events through the ``emit`` callback
the backend was built with.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol, TypeVar

from stylelens.sessions.protocol import (
    Commit,
    DirectionInfo,
    EditParams,
    Frame,
    ModelInfo,
    RestoreParams,
    RunningInversion,
    ServerEvent,
)
from stylelens.sessions.storage import Storage
from stylelens.settings import Settings

T = TypeVar("T")


class ServedModel(Protocol):
    """One model being served, as the app sees it (facts about it, not the networks)."""

    @property
    def model_id(self) -> str: ...

    @property
    def model_name(self) -> str: ...

    @property
    def model_dir(self) -> Path: ...

    @property
    def resolution(self) -> int: ...

    def model_info(self) -> ModelInfo: ...

    def direction_infos(self) -> list[DirectionInfo]: ...


class ServedModels(Protocol):
    """The models a backend serves and which one each session uses."""

    @property
    def by_id(self) -> Mapping[str, ServedModel]: ...

    @property
    def default(self) -> ServedModel: ...

    def for_session(self, session: str) -> ServedModel: ...

    def forget(self, session: str) -> None: ...


class Backend(Protocol):
    """Runs the sessions' jobs: renders, commits, random faces, inversions, region presets."""

    ready: Future[Any]  # done when the models are loaded (its result: the served models)

    @property
    def runtimes(self) -> ServedModels: ...

    @property
    def alive(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 10.0) -> None: ...

    def pending(self) -> int: ...

    def call(self, fn: Callable[[], T]) -> Future[T]: ...

    def submit_render(self, session: str, params: EditParams) -> str: ...

    def submit_commit(self, session: str, params: Commit) -> str: ...

    def submit_random(self, session: str, seed: int) -> str: ...

    def submit_use_latent(self, session: str, latent: str) -> str: ...

    def submit_region(self, session: str, preset: str) -> str: ...

    def submit_inversion(
        self,
        session: str,
        *,
        engine: str,
        steps: int,
        upload: str | None,
        init_latent: str | None = None,
        restore: RestoreParams | None = None,
    ) -> str: ...

    def cancel(self, session: str, job_id: str) -> bool: ...

    def accept(self, session: str, job_id: str) -> bool: ...

    def detach(self, session: str) -> None: ...

    def attach(self, session: str) -> RunningInversion | None: ...


# Where a backend sends what its jobs produce: (session, event or frame); called from any thread.
Emit = Callable[[str, "ServerEvent | Frame"], None]
# Makes the app's backend when the app starts (``api.app.lifespan``): not started yet.
BackendFactory = Callable[[Settings, Storage, Emit], Backend]
