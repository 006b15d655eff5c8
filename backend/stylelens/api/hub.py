"""Routes the worker's events to the websockets of the session they belong to.

The worker thread calls :meth:`Hub.publish`, which hops onto the event loop with
``call_soon_threadsafe``; each connection keeps a bounded queue of JSON events and a single
image slot that a newer frame overwrites (latest frame wins), and sends at most one frame per
``frame_interval_s``. A client that falls ``MAX_EVENTS`` events behind is disconnected rather
than buffered without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

from fastapi import WebSocket

from stylelens.sessions.protocol import TERMINAL, Frame, ServerEvent, event_json

log = logging.getLogger("stylelens.hub")
MAX_EVENTS = 256


class Connection:
    def __init__(self, session: str, ws: WebSocket, frame_interval_s: float) -> None:
        self.session = session
        self.ws = ws
        self.frame_interval_s = frame_interval_s
        self.events: deque[ServerEvent] = deque()
        self.frame: Frame | None = None
        self.wake = asyncio.Event()
        self.last_frame = 0.0
        self.closed = False
        self.frames_sent = 0

    def push(self, item: ServerEvent | Frame) -> None:
        if self.closed:
            return
        if isinstance(item, Frame):
            self.frame = item  # latest wins
        else:
            if len(self.events) >= MAX_EVENTS:
                log.warning("session %s: client too slow, closing its socket", self.session[:6])
                self.closed = True
            self.events.append(item)
        self.wake.set()

    async def _send_frame(self) -> None:
        frame, self.frame = self.frame, None
        if frame is not None:
            await self.ws.send_bytes(frame.encode())
            self.last_frame = time.perf_counter()
            self.frames_sent += 1

    async def run_sender(self) -> None:
        """Send queued events promptly and frames at most every ``frame_interval_s``."""
        while not self.closed:
            await self.wake.wait()
            self.wake.clear()
            while (self.events or self.frame is not None) and not self.closed:
                if self.events:
                    event = self.events.popleft()
                    # A job's last frame goes out before the event that ends the job.
                    pending = self.frame
                    job = getattr(event, "job", None) if isinstance(event, TERMINAL) else None
                    if pending is not None and job is not None and pending.job == job:
                        await self._send_frame()
                    try:
                        text = event_json(event)
                    except ValueError:  # a string JSON cannot carry: drop it, keep sending
                        log.exception("session %s: event not encodable", self.session[:6])
                        continue
                    await self.ws.send_text(text)
                    continue
                wait = self.last_frame + self.frame_interval_s - time.perf_counter()
                if wait > 0:
                    self.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), wait)
                    continue
                await self._send_frame()
        with contextlib.suppress(Exception):
            await self.ws.close(code=1008, reason="client too slow")


class Hub:
    def __init__(self, loop: asyncio.AbstractEventLoop, frame_interval_s: float) -> None:
        self.loop = loop
        self.frame_interval_s = frame_interval_s
        self._sessions: dict[str, set[Connection]] = {}

    def connect(self, session: str, ws: WebSocket) -> Connection:
        conn = Connection(session, ws, self.frame_interval_s)
        self._sessions.setdefault(session, set()).add(conn)
        return conn

    def disconnect(self, conn: Connection) -> bool:
        """Forget ``conn``; True if it was its session's last connection."""
        conn.closed = True
        conns = self._sessions.get(conn.session, set())
        conns.discard(conn)
        if not conns:
            self._sessions.pop(conn.session, None)
            return True
        return False

    def connected(self, session: str) -> bool:
        return bool(self._sessions.get(session))

    def publish(self, session: str, item: ServerEvent | Frame) -> None:
        """Thread-safe: deliver to every socket of ``session`` (and nobody else)."""
        if self.loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is shutting down
            self.loop.call_soon_threadsafe(self._deliver, session, item)

    def _deliver(self, session: str, item: ServerEvent | Frame) -> None:
        for conn in list(self._sessions.get(session, ())):
            conn.push(item)

    def broadcast(self, event: ServerEvent) -> None:
        """Thread-safe: deliver to every socket of every session (an install's progress: the
        models directory is the whole server's, whichever page started it)."""
        if self.loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is shutting down
            self.loop.call_soon_threadsafe(self._deliver_all, event)

    def _deliver_all(self, event: ServerEvent) -> None:
        for conns in list(self._sessions.values()):
            for conn in list(conns):
                conn.push(event)
