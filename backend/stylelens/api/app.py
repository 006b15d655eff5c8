"""The web app: ``create_app()`` builds it (routes, websocket, static page), ``lifespan``
loads the models and starts the backend.

The pieces: ``deps.py`` (dependencies, token), ``routes.py`` (HTTP), ``websocket.py``,
``uploads.py`` (photos, masks, checkpoints), ``views.py`` (what a page is told),
``hub.py`` (per-connection event queues), ``installs.py`` (the Models dialog).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import (
    FastAPI,
    HTTPException,
    Request,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from stylelens import __version__
from stylelens.api.hub import Hub
from stylelens.api.installs import Installer
from stylelens.api.routes import build_router
from stylelens.api.websocket import websocket_endpoint
from stylelens.jobs.worker import local_backend
from stylelens.sessions.backend import BackendFactory, ServedModels
from stylelens.sessions.storage import Storage
from stylelens.settings import Settings

log = logging.getLogger("stylelens.api")


REPO_FRONTEND = Path(__file__).resolve().parents[3] / "frontend"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    make_backend: BackendFactory = app.state.backend_factory
    storage = await asyncio.to_thread(Storage, settings.data_dir)
    expired = await asyncio.to_thread(storage.expire, settings.session_ttl_hours * 3600)
    if expired:
        log.info("removed %d expired sessions", len(expired))
    interrupted = await asyncio.to_thread(storage.interrupt_running)
    if interrupted:  # the previous server died with these running: offered to their sessions
        log.info(
            "%d inversions were interrupted by a crash; their last latents are kept", interrupted
        )

    hub = Hub(asyncio.get_running_loop(), settings.preview_interval_ms / 1000)
    # what the routes and the websocket see (sessions/backend.py)
    backend = await asyncio.to_thread(make_backend, settings, storage, hub.publish)
    backend.start()
    runtimes: ServedModels = await asyncio.wrap_future(backend.ready)
    from stylelens.data.align import warm_up as warm_up_alignment

    await asyncio.to_thread(warm_up_alignment)  # the first upload need not load its models
    installer = await asyncio.to_thread(
        Installer, settings, worker=backend, storage=storage, broadcast=hub.broadcast
    )
    app.state.storage, app.state.runtimes, app.state.hub, app.state.worker = (
        storage,
        runtimes,
        hub,
        backend,
    )
    app.state.installer = installer
    janitor = asyncio.create_task(_expire_periodically(storage, settings.session_ttl_hours))
    try:
        yield
    finally:
        janitor.cancel()
        await asyncio.to_thread(installer.stop)  # a download stops; its .part is kept
        await asyncio.to_thread(backend.stop)
        storage.close()


async def _expire_periodically(storage: Storage, ttl_hours: float) -> None:
    interval = min(3600.0, max(60.0, ttl_hours * 360))  # a tenth of the TTL, 1 min to 1 h
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(storage.expire, ttl_hours * 3600)


def _printable(value: object) -> str | int:
    if isinstance(value, int):
        return value
    return str(value).encode("utf-8", "replace").decode("utf-8")[:200]


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 that names where and what, without echoing the input: FastAPI's own echoes it,
    and an input JSON cannot hold (bytes that are not UTF-8, NaN) turned the 422 into a 500."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {
            "loc": [_printable(x) for x in e.get("loc", ())],
            "msg": _printable(e.get("msg", "")),
            "type": _printable(e.get("type", "")),
        }
        for e in errors
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def create_app(
    settings: Settings | None = None, backend: BackendFactory = local_backend
) -> FastAPI:
    """The StyleLens web app. Nothing is loaded until the app starts (``lifespan``), when
    ``backend`` makes what runs the models: the in-process worker by default, model replicas
    on a Ray cluster in cluster mode (``stylelens.cluster``)."""
    settings = settings or Settings()
    app = FastAPI(
        title="StyleLens",
        version=__version__,
        description="StyleGAN2 face editing. The websocket protocol is in docs/protocol.md.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.backend_factory = backend
    app.add_exception_handler(RequestValidationError, _validation_error)

    @app.get("/healthz", include_in_schema=False)
    def healthz(request: Request) -> dict[str, Any]:
        worker = getattr(request.app.state, "worker", None)
        if worker is None or not worker.alive:
            raise HTTPException(503, "the worker is not running")
        return {"status": "ok", "pending": worker.pending()}

    if not settings.auth_token:
        # A page on another site could otherwise reach a loopback server by rebinding its own
        # DNS name to 127.0.0.1 (the Origin check alone does not stop that).
        hosts = [f"[{h}]" if ":" in h else h for h in settings.allowed_hosts]
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    app.include_router(build_router(settings))
    app.add_api_websocket_route("/api/ws", websocket_endpoint)
    frontend = settings.frontend_dir or REPO_FRONTEND
    if frontend.is_dir():
        app.mount("/", StaticFiles(directory=frontend, html=True), name="frontend")
    return app
