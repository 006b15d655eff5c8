"""The websocket ``/api/ws``: the handshake's checks, the hello, and each client message
turned into backend jobs (the protocol is :mod:`stylelens.sessions.protocol`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from fastapi import (
    WebSocket,
)

from stylelens.api.deps import token_ok
from stylelens.api.hub import Connection, Hub
from stylelens.api.views import interrupted_inversion, model_choices, session_info
from stylelens.sessions import protocol as p
from stylelens.sessions.backend import Backend, ServedModels
from stylelens.sessions.storage import Storage
from stylelens.settings import Settings

log = logging.getLogger("stylelens.api")


def _origin_ok(ws: WebSocket, settings: Settings) -> bool:
    origin = ws.headers.get("origin")
    if origin is None:  # not a browser (tests, tools): the token (if any) is the guard
        return True
    if origin in settings.allowed_origins:
        return True
    try:
        return urlsplit(origin).netloc == ws.headers.get("host")
    except ValueError:  # not a URL (``http://[::1``): not an origin we allow
        return False


async def websocket_endpoint(ws: WebSocket) -> None:
    """``/api/ws?session=ID``: protocol v1 (see ``docs/protocol.md``)."""
    app = ws.app
    settings: Settings = app.state.settings
    storage: Storage = app.state.storage
    hub: Hub = app.state.hub
    worker: Backend = app.state.worker
    runtimes: ServedModels = app.state.runtimes
    sid = ws.query_params.get("session", "")
    refusal = None
    if not token_ok(settings, ws.headers.get("authorization"), ws.query_params.get("token")):
        refusal = (4401, "access token needed")
    elif not _origin_ok(ws, settings):
        refusal = (4403, "origin not allowed")
    elif not storage.has_session(sid):
        refusal = (4404, "no such session")
    # Accept, then close with the code: a close before the handshake reaches a browser as an
    # HTTP 403 (close code 1006), which a client cannot tell from a network failure.
    await ws.accept()
    if refusal is not None:
        await ws.close(code=refusal[0], reason=refusal[1])
        return
    storage.touch(sid)
    runtime = runtimes.for_session(sid)
    touched = time.monotonic()
    conn = hub.connect(sid, ws)
    running = worker.attach(sid)  # an inversion of this session streams on to this socket
    conn.push(
        p.Hello(
            session=session_info(storage, sid),
            limits=p.Limits(
                max_upload_bytes=settings.max_upload_bytes,
                max_pixels=settings.max_pixels,
                max_steps=settings.max_steps,
                preview_interval_ms=settings.preview_interval_ms,
                preview_size=settings.preview_size,
                default_engine=settings.default_engine,
                default_steps=settings.default_steps,
            ),
            model=runtime.model_info(),
            models=model_choices(runtimes),
            directions=runtime.direction_infos(),
            running=running,
            interrupted=interrupted_inversion(storage, sid),
        )
    )
    sender = asyncio.create_task(conn.run_sender())
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            if time.monotonic() - touched > 60:  # an open tab keeps its session alive
                touched = time.monotonic()
                await asyncio.to_thread(storage.touch, sid)
            text = msg.get("text")
            if text is None:
                conn.push(p.Error(code="malformed", message="send JSON text frames, not binary"))
                continue
            try:
                handle_message(conn, p.parse_client_message(text), worker, settings)
            except p.ProtocolError as e:
                conn.push(p.Error(code=e.code, message=e.message))  # type: ignore[arg-type]
            except Exception as e:  # a bug of ours: say so, keep the socket
                log.exception("message of %s failed", sid[:6])
                conn.push(p.Error(code="internal", message=f"{type(e).__name__}"))
    except Exception as e:  # a broken socket; the session's jobs are dropped below
        log.debug("websocket of %s ended: %s", sid[:6], e)
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
        if hub.disconnect(conn):
            worker.detach(sid)  # its inversion runs on for a reconnect (reconnect_grace_s)
            runtimes.forget(sid)  # its latent is read from disk again if it comes back


def handle_message(conn: Connection, msg: Any, worker: Backend, settings: Settings) -> None:
    """Turn one client message into worker jobs; problems become error events."""
    from stylelens.jobs.worker import Busy

    sid = conn.session
    try:
        if isinstance(msg, p.StartInversion):
            engines = worker.runtimes.for_session(sid).model_info().engines
            if msg.engine not in engines:
                raise p.ProtocolError("invalid", f"engine {msg.engine!r}: choose from {engines}")
            total = msg.steps + (msg.restore.handoff_steps if msg.restore else 0)
            if total > settings.max_steps:
                raise p.ProtocolError(
                    "invalid",
                    f"steps: at most {settings.max_steps} on this server"
                    + (" (a restoration's hand-off steps count too)" if msg.restore else ""),
                )
            worker.submit_inversion(
                sid,
                engine=msg.engine,
                steps=msg.steps,
                upload=msg.upload,
                init_latent=msg.init_latent,
                restore=msg.restore,
            )
        elif isinstance(msg, p.Cancel):
            if not worker.cancel(sid, msg.job):
                conn.push(p.Error(code="unknown_job", job=msg.job, message="no such job to cancel"))
        elif isinstance(msg, p.Accept):
            if not worker.accept(sid, msg.job):
                conn.push(p.Error(code="unknown_job", job=msg.job, message="no such inversion"))
        elif isinstance(msg, p.RenderEdit):
            msg.check_scales(_sliders(worker, sid))
            job = worker.submit_render(sid, msg)
            conn.push(p.Queued(job=job, kind="render", position=0))
        elif isinstance(msg, p.Commit):
            msg.check_scales(_sliders(worker, sid))
            worker.submit_commit(sid, msg)
        elif isinstance(msg, p.RandomFace):
            worker.submit_random(sid, msg.seed)
        elif isinstance(msg, p.UseLatent):
            worker.submit_use_latent(sid, msg.latent)
        elif isinstance(msg, p.RegionPreset):
            worker.submit_region(sid, msg.preset)
    except Busy as e:
        conn.push(p.Error(code="busy", message=str(e)))


def _sliders(worker: Backend, sid: str) -> dict[str, tuple[float, float]]:
    return {d.name: d.slider for d in worker.runtimes.for_session(sid).direction_infos()}
