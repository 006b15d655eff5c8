"""The app's backend in cluster mode: the ``sessions.backend.Backend`` protocol over the model
replicas' deployment handle (``replica.ModelReplica``).

What the in-process worker does for one machine, this does for the app's sessions, and the
replicas do the rest:

- **Renders** go to any replica (Serve picks the least busy); one per session is in flight and
  a newer one replaces the waiting one (latest wins, as in the worker), so a dragged slider
  never queues stale positions. A replica draws the renders of the sessions it has waiting in
  one generator call.
- **Random faces, commits, latents, region presets** run one after another per session, in the
  order sent, each on any replica.
- **An inversion** is one streaming call, pinned to the replica that took it for its life; its
  events and frames are published as they arrive. Cancel cancels the call (the replica stops at
  the next step). Accept is a signal in the shared storage. When a session's last socket closes
  the inversion runs on for ``reconnect_grace_s``, then it is abandoned (signal), keeping its
  checkpoint as 'disconnected'. A replica that dies mid-inversion ends the call with a Ray
  error: the session gets a ``replica_lost`` error event and its last checkpoint, kept as
  'restart', is offered like one a restart interrupted; the next request goes to a live replica.

Blocking calls on the handle run on a thread pool, never on the app's event loop (Serve refuses
synchronous calls from inside one).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from stylelens.cluster.models import ModelFacts, RemoteModels
from stylelens.errors import StyleLensError
from stylelens.jobs.worker import Busy
from stylelens.sessions.backend import Emit
from stylelens.sessions.protocol import (
    TERMINAL,
    Cancelled,
    Commit,
    EditParams,
    Error,
    Frame,
    JobKind,
    Progress,
    Queued,
    RestoreParams,
    RunningInversion,
    ServerEvent,
    Started,
)
from stylelens.sessions.storage import Storage
from stylelens.settings import Settings

log = logging.getLogger("stylelens.cluster")
T = TypeVar("T")
Item = ServerEvent | Frame
RETRIES = 1  # a render or job whose replica died is sent once more (to a live one)


@dataclass(eq=False)
class Stream:
    """A session's inversion: one streaming call to one replica."""

    job: str
    engine: str
    total: int
    step: int = 0
    replica: str | None = None
    call: Any = None  # the DeploymentResponseGenerator, once made
    cancel: bool = False
    ended: bool = False  # its last event is out


@dataclass(eq=False)
class SessionJobs:
    render: tuple[str, EditParams] | None = None  # the waiting render (latest wins)
    rendering: bool = False  # a render of the session is in flight
    jobs: deque[tuple[str, JobKind, Any]] = field(default_factory=deque)  # waiting, in order
    working: bool = False  # one of its jobs is in flight
    stream: Stream | None = None
    detached: float | None = None  # when its last socket closed

    def waiting(self) -> int:
        return len(self.jobs) + (self.render is not None)


class ClusterBackend:
    """``models``: a ``DeploymentHandle`` to the ``ModelReplica`` deployment."""

    def __init__(self, models: Any, settings: Settings, storage: Storage, emit: Emit) -> None:
        self._models = models
        self._storage = storage
        self._emit = emit
        self.queue_per_session = settings.queue_per_session
        self.queue_max = settings.queue_max
        self.reconnect_grace_s = settings.reconnect_grace_s
        self.ready: Future[RemoteModels] = Future()
        self._lock = threading.Lock()
        self._sessions: dict[str, SessionJobs] = {}
        # Blocking handle calls: a stream holds a thread for its life, a session's render and
        # its other jobs one each while in flight.
        self._pool = ThreadPoolExecutor(max_workers=256, thread_name_prefix="stylelens-cluster")
        self._stopping = threading.Event()
        self._started = False
        self.placements: OrderedDict[str, str] = OrderedDict()  # job -> replica (last 4096)

    # the Backend protocol --------------------------------------------------------------------

    @property
    def runtimes(self) -> RemoteModels:
        return self.ready.result()

    @property
    def alive(self) -> bool:
        return self._started and not self._stopping.is_set() and self.ready.done()

    def start(self) -> None:
        self._started = True
        self._pool.submit(self._describe)
        self._pool.submit(self._watch_detached)

    def stop(self, timeout: float = 10.0) -> None:
        """Running inversions are abandoned (their replicas keep their checkpoints as
        'disconnected'); renders and jobs in flight finish on their replicas."""
        self._stopping.set()
        with self._lock:
            streams = [(sid, s.stream) for sid, s in self._sessions.items() if s.stream]
        for sid, st in streams:
            self._signal(sid, st.job, "abandon")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(not st.ended for _, st in streams):
            time.sleep(0.05)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def pending(self) -> int:
        with self._lock:
            return sum(s.waiting() for s in self._sessions.values())

    def call(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` where the models run: not possible here (they run in the replicas)."""
        future: Future[T] = Future()
        future.set_exception(
            StyleLensError(
                "in cluster mode the replicas load the models when they start: install a model "
                "into the shared models directory (stylelens fetch) and restart the cluster "
                "application (stylelens serve --cluster) to serve it"
            )
        )
        return future

    def submit_render(self, session: str, params: EditParams) -> str:
        job = _new_id()
        with self._lock:
            s = self._session(session)
            if s.render is None:
                self._check_room(s)
            s.render = (job, params)  # latest wins; the replaced one is dropped silently
            start = not s.rendering
            s.rendering = True
        if start:
            self._pool.submit(self._render_loop, session)
        return job

    def submit_random(self, session: str, seed: int) -> str:
        return self._enqueue(session, "random", seed)

    def submit_commit(self, session: str, params: Commit) -> str:
        return self._enqueue(session, "commit", params)

    def submit_use_latent(self, session: str, latent: str) -> str:
        return self._enqueue(session, "use_latent", latent)

    def submit_region(self, session: str, preset: str) -> str:
        return self._enqueue(session, "region", preset)

    def submit_inversion(
        self,
        session: str,
        *,
        engine: str,
        steps: int,
        upload: str | None,
        init_latent: str | None = None,
        restore: RestoreParams | None = None,
    ) -> str:
        """Start an inversion on a replica; the session's running one is cancelled."""
        job = _new_id()
        stream = Stream(job=job, engine=engine, total=steps)
        with self._lock:
            s = self._session(session)
            old = s.stream
            if old is None:
                self._check_room(s)
            s.stream = stream
        if old is not None:
            self._cancel_stream(old)
        self._emit(session, Queued(job=job, kind="inversion", position=0))
        request = (session, job, engine, steps, upload, init_latent, restore)
        self._pool.submit(self._stream, session, stream, request)
        return job

    def cancel(self, session: str, job_id: str) -> bool:
        with self._lock:
            s = self._sessions.get(session)
            if s is None:
                return False
            if s.render is not None and s.render[0] == job_id:
                s.render = None
                cancelled = True
            else:
                waiting = [j for j in s.jobs if j[0] == job_id]
                for j in waiting:
                    s.jobs.remove(j)
                cancelled = bool(waiting)
            stream = s.stream if s.stream and s.stream.job == job_id else None
        if cancelled:
            self._emit(session, Cancelled(job=job_id))
            return True
        if stream is not None and not stream.ended:
            self._cancel_stream(stream)
            return True
        return False

    def accept(self, session: str, job_id: str) -> bool:
        with self._lock:
            s = self._sessions.get(session)
            stream = s.stream if s and s.stream and s.stream.job == job_id else None
        if stream is None or stream.ended or stream.cancel:
            return False
        self._signal(session, job_id, "accept")
        return True

    def detach(self, session: str) -> None:
        with self._lock:
            s = self._sessions.get(session)
            if s is None:
                return
            s.detached = time.monotonic()
            s.render = None
            for j in [j for j in s.jobs if j[1] == "random"]:
                s.jobs.remove(j)

    def attach(self, session: str) -> RunningInversion | None:
        with self._lock:
            s = self._sessions.get(session)
            if s is None:
                return None
            s.detached = None
            st = s.stream
            if st is None or st.ended or st.cancel:
                return None
            return RunningInversion(job=st.job, engine=st.engine, step=st.step, total=st.total)

    # the threads -----------------------------------------------------------------------------

    def _describe(self) -> None:
        try:
            facts: list[ModelFacts] = self._models.describe.remote().result()
            self.ready.set_result(RemoteModels(facts, self._storage))
        except BaseException as e:
            log.exception("the model replicas could not be reached")
            self.ready.set_exception(e)

    def _render_loop(self, session: str) -> None:
        while True:
            with self._lock:
                s = self._session(session)
                if s.render is None or self._stopping.is_set():
                    s.rendering = False
                    self._drop_if_idle(session)
                    return
                (job, params), s.render = s.render, None
            self._publish(session, job, "render", (session, job, params))

    def _jobs_loop(self, session: str) -> None:
        while True:
            with self._lock:
                s = self._session(session)
                if not s.jobs or self._stopping.is_set():
                    s.working = False
                    self._drop_if_idle(session)
                    return
                job, kind, arg = s.jobs.popleft()
            self._publish(session, job, "run", (kind, session, job, arg))

    def _publish(self, session: str, job: str, method: str, args: tuple[Any, ...]) -> None:
        """Call a replica's ``method`` (once more if its replica died); publish what it
        gives."""
        from ray.exceptions import RayActorError

        for attempt in range(RETRIES + 1):
            try:
                replica, items = getattr(self._models, method).remote(*args).result()
            except RayActorError as e:
                if attempt < RETRIES:
                    continue
                self._emit(session, _lost(job, e))
                return
            except Exception as e:
                log.exception("job %s failed in the cluster", job)
                self._emit(
                    session, Error(job=job, code="internal", message=f"{type(e).__name__}: {e}")
                )
                return
            self._place(job, replica)
            for item in items:
                self._emit(session, item)
            return

    def _stream(self, session: str, st: Stream, request: tuple[Any, ...]) -> None:
        from ray.exceptions import RayActorError, TaskCancelledError

        try:
            with self._lock:
                if not st.cancel:
                    st.call = self._models.options(stream=True).invert.remote(*request)
            if st.call is None:
                raise TaskCancelledError()
            for replica, item in st.call:
                if st.replica is None:
                    st.replica = replica
                    self._place(st.job, replica)
                if isinstance(item, Progress):
                    st.step = item.step
                elif isinstance(item, Started):
                    st.total = item.total
                elif isinstance(item, Cancelled) and st.cancel:
                    continue  # said below, once
                if isinstance(item, TERMINAL):
                    st.ended = True
                self._emit(session, item)
                if st.ended:
                    return
            raise RuntimeError("the replica ended the inversion without a last event")
        except BaseException as e:
            if st.cancel or _is_cancel(e):
                st.ended = True
                self._emit(session, Cancelled(job=st.job, step=st.step))
            elif isinstance(e, RayActorError):
                st.ended = True
                kept = self._storage.interrupt_job(session, st.job)
                log.warning("replica %s died running inversion %s", st.replica, st.job)
                self._emit(session, _lost(st.job, e, step=st.step, kept=kept))
            else:
                st.ended = True
                log.exception("inversion %s failed in the cluster", st.job)
                self._emit(
                    session,
                    Error(job=st.job, code="internal", message=f"{type(e).__name__}: {e}"),
                )
        finally:
            st.ended = True
            with self._lock:
                s = self._sessions.get(session)
                if s is not None and s.stream is st:
                    s.stream = None
                    self._drop_if_idle(session)

    def _watch_detached(self) -> None:
        """Inversions of sessions gone longer than the grace period are abandoned."""
        while not self._stopping.wait(0.1):
            now = time.monotonic()
            with self._lock:
                gone = [
                    (sid, s.stream)
                    for sid, s in self._sessions.items()
                    if s.detached is not None
                    and now - s.detached >= self.reconnect_grace_s
                    and s.stream is not None
                ]
                for sid, _ in gone:
                    self._sessions[sid].detached = None
            for sid, st in gone:
                if st is not None and not st.ended:
                    self._signal(sid, st.job, "abandon")

    # helpers ---------------------------------------------------------------------------------

    def _session(self, session: str) -> SessionJobs:
        s = self._sessions.get(session)
        if s is None:
            s = self._sessions[session] = SessionJobs()
        return s

    def _drop_if_idle(self, session: str) -> None:
        s = self._sessions.get(session)
        if s and not (s.waiting() or s.rendering or s.working or s.stream or s.detached):
            del self._sessions[session]

    def _check_room(self, s: SessionJobs) -> None:
        mine = s.waiting()
        if mine >= self.queue_per_session:
            raise Busy(
                f"this session already has {mine} jobs waiting (at most "
                f"{self.queue_per_session}); wait for one to finish, or cancel one"
            )
        n = sum(x.waiting() for x in self._sessions.values())
        if n >= self.queue_max:
            raise Busy(
                f"the server is busy ({n} jobs of all sessions waiting); try again in a moment"
            )

    def _enqueue(self, session: str, kind: JobKind, arg: Any) -> str:
        job = _new_id()
        with self._lock:
            s = self._session(session)
            self._check_room(s)
            position = len(s.jobs)
            s.jobs.append((job, kind, arg))
            start = not s.working
            s.working = True
        self._emit(session, Queued(job=job, kind=kind, position=position))
        if start:
            self._pool.submit(self._jobs_loop, session)
        return job

    def _cancel_stream(self, st: Stream) -> None:
        with self._lock:
            st.cancel = True
            call = st.call
        if call is not None:
            call.cancel()

    def _signal(self, session: str, job: str, name: str) -> None:
        try:
            self._storage.signal(session, job, name)
        except OSError:
            log.exception("could not signal %s to inversion %s", name, job)

    def _place(self, job: str, replica: str) -> None:
        with self._lock:
            self.placements[job] = replica
            while len(self.placements) > 4096:
                self.placements.popitem(last=False)


def _new_id() -> str:
    return secrets.token_hex(8)  # 16 characters: the frame header's job field


def _is_cancel(e: BaseException) -> bool:
    """A cancelled call (Serve's RequestCancelledError is a TaskCancelledError)."""
    import asyncio
    from concurrent.futures import CancelledError

    from ray.exceptions import TaskCancelledError

    return isinstance(e, (TaskCancelledError, CancelledError, asyncio.CancelledError))


def _lost(job: str, e: BaseException, *, step: int | None = None, kept: bool = False) -> Error:
    where = f" at step {step}" if step is not None else ""
    after = (
        "; its last saved latent is kept: resume from it, or start again"
        if kept
        else "; start it again"
    )
    return Error(
        job=job,
        code="replica_lost",
        message=f"the model replica running this job stopped{where} ({type(e).__name__}){after}",
    )
