"""What the web app needs from whatever runs the models: the typed interface between ``api/``
and a backend.

``jobs.worker.Worker`` (one thread in this process) implements it; the app holds a
:class:`Backend`, never a concrete worker, so another backend (a cluster of model replicas)
can drive the same routes and websocket. Requests are values (session ids, protocol
messages); results come back as events through the ``emit`` callback the backend was built
with.
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
    ModelInfo,
    RestoreParams,
    RunningInversion,
)

T = TypeVar("T")


class ServedModel(Protocol):
    """One model being served, as the app sees it (facts about it, not the networks)."""

    model_id: str
    model_name: str
    model_dir: Path

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
