"""One worker thread per device: the only place the model runs.

Scheduling: round robin over sessions. Every session with waiting jobs stands in one ring;
each turn takes one job of the session at the front and sends that session to the back, so with
N busy sessions each gets every N-th turn, whatever it sends. A turn is one render, one random
face, one commit or one inversion step, so a slider dragged by ten clients leaves another
session's inversion one step in eleven, and a burst of random faces or commits from one session
delays the others by one job per round, not by the burst. Inside a session's turn:

1. its slider render first: one pending render per session, a newer one replaces it (latest
   wins: intermediate slider positions are never drawn), so a lone slider user waits for at
   most the job that is running; but never two renders of a session in a row while its other
   jobs wait, so a slider that sends without pause cannot freeze its own inversion or commit;
2. then its other jobs, first come first served: random faces, commits and its inversion (one
   per session: a new one cancels the old), whose steps go back to the end of the session's
   line after each step.

Each session may have ``queue_per_session`` jobs waiting (its render included; the running one
not); beyond that its submits raise :class:`Busy` that names the session's own queue, so one
session cannot make another busy. ``queue_max`` bounds all sessions' waiting jobs together, a
safety net that needs more than ``queue_max / queue_per_session`` sessions at their bound.

Every outcome (queued, started, progress, frames, done, cancelled, error) goes out through
``emit(session, event_or_frame)``, which must be thread-safe; an exception inside a job becomes
an error event and the worker moves on to the next job.

Inversions outlive their page for a while and the server for good: every
``checkpoint_interval_s`` a running inversion's latest latent is saved (``Storage`` checkpoint);
when a session's last socket closes (:meth:`Worker.detach`) its renders and random faces are
dropped but its inversion and commits go on, so a reload within ``reconnect_grace_s`` finds the
inversion still streaming; after that the inversion stops and its checkpoint is kept as
``disconnected``. :meth:`Worker.stop` keeps every unfinished inversion's as ``restart``, and a
server that died without stopping has its 'running' checkpoints marked so at the next start.

The worker's thread is the only thread that runs the model, loading and warm-up included
(pass a loader instead of loaded :class:`Runtimes`): PyTorch's OpenMP thread pool belongs to
the thread that first runs parallel work, and a second thread running the model gets a second
pool competing for the same cores (measured on a 2-core CPU: an inversion step took 1.5x as
long in a thread other than the one that loaded and warmed up the model). A model installed
while the server runs is loaded the same way: :meth:`Worker.call` runs a function on this
thread between two jobs.
"""

from __future__ import annotations

import functools
import gc
import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from stylelens.errors import JobError, StyleLensError
from stylelens.inversion.protocol import StepReport
from stylelens.jobs.runtime import Inversion
from stylelens.jobs.session_model import Runtimes
from stylelens.sessions.backend import Emit
from stylelens.sessions.files import Saved
from stylelens.sessions.frames import Image8
from stylelens.sessions.protocol import (
    Cancelled,
    Commit,
    Done,
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

log = logging.getLogger("stylelens.worker")

T = TypeVar("T")


class Busy(StyleLensError):
    """A session's queue (or, as a safety net, the whole server's) is full; try again soon."""


@dataclass(eq=False)
class Job:
    id: str
    session: str
    kind: JobKind
    params: Any  # EditParams, (engine, steps, upload, init_latent), a seed or a latent id
    cancel: bool = False
    accept: bool = False
    abandon: bool = False  # an inversion whose page did not come back: stop, keep checkpoint
    last_checkpoint: float = field(default_factory=time.perf_counter)
    inversion: Inversion | None = None
    step: int = 0
    last_progress: float = 0.0
    last_frame: float = 0.0
    batch: list[Job] = field(default_factory=list)  # other sessions' renders drawn with this one
    ended: bool = False  # its done or cancelled event is out (it may still be the running job)
    submitted: float = field(default_factory=time.perf_counter)


@dataclass(eq=False)
class Call:
    """A function to run on the worker thread between two jobs (:meth:`Worker.call`)."""

    fn: Callable[[], Any]
    future: Future[Any] = field(default_factory=Future)


@dataclass(eq=False)
class SessionQueue:
    """One session's waiting jobs: its latest render and its other jobs in arrival order."""

    render: Job | None = None
    jobs: deque[Job] = field(default_factory=deque)  # random, commit, inversion (between steps)
    rendered_last: bool = False  # the session's previous turn drew a render

    def __len__(self) -> int:
        return len(self.jobs) + (self.render is not None)

    def take(self) -> Job:
        """The job for this session's turn (the queue must not be empty)."""
        if self.render is not None and not (self.rendered_last and self.jobs):
            job, self.render = self.render, None
            self.rendered_last = True
            return job
        self.rendered_last = False
        return self.jobs.popleft()


class Worker:
    def __init__(
        self,
        runtimes: Runtimes | Callable[[], Runtimes],
        emit: Emit,
        *,
        queue_max: int = 64,
        queue_per_session: int = 8,
        preview_interval_s: float = 0.1,
        progress_interval_s: float = 0.1,
        checkpoint_interval_s: float = 5.0,
        reconnect_grace_s: float = 60.0,
        render_batch: int = 4,
        step_batch: int = 4,
    ) -> None:
        if not 1 <= queue_per_session < queue_max:
            raise ValueError(
                f"queue_per_session={queue_per_session} with queue_max={queue_max}: it must be "
                "at least 1 and below queue_max, or one session could fill the whole queue"
            )
        # Loaded models, or a loader the worker thread calls first; ``ready`` resolves to the
        # loaded models (or the loader's exception).
        self._load = runtimes
        self.ready: Future[Runtimes] = Future()
        if isinstance(runtimes, Runtimes):
            self.runtimes = runtimes
            self.ready.set_result(runtimes)
        self._publish = emit
        self.queue_max = queue_max
        self.queue_per_session = queue_per_session
        self.preview_interval_s = preview_interval_s
        self.progress_interval_s = progress_interval_s
        self.checkpoint_interval_s = checkpoint_interval_s
        self.reconnect_grace_s = reconnect_grace_s
        # A render's turn also draws up to this many renders in all, of other sessions of the
        # same model waiting at that moment, in one synthesis (benchmarks/batching.py).
        self.render_batch = max(1, render_batch)
        # An inversion step's turn also takes the next steps of other sessions' inversions that
        # can run with it (same model, progressive engine, same stage resolution), up to this
        # many in all, as one batched forward/backward (benchmarks/batching.py --part steps).
        self.step_batch = max(1, step_batch)
        self._detached: dict[str, float] = {}  # session -> when its last socket closed
        self._cond = threading.Condition()
        # The ring: sessions with waiting jobs, the next turn's first. A session leaves it when
        # its queue empties (also while its only job, an inversion step, runs) and comes back
        # at the end.
        self._sessions: OrderedDict[str, SessionQueue] = OrderedDict()
        self._calls: deque[Call] = deque()  # run before the next job, in order
        self._running: Job | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="stylelens-worker", daemon=True)

    # control (any thread) ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True  # the running job finishes its turn (one step at most)
            self._cond.notify_all()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def pending(self) -> int:
        """Jobs waiting, of all sessions (the running one not counted)."""
        with self._cond:
            return self._pending()

    def _pending(self) -> int:
        return sum(len(q) for q in self._sessions.values())

    def call(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` on the worker thread before the next job; its result (or exception) comes
        in the returned future. For what must touch the models on the one thread that runs
        them, e.g. loading a model installed while the server runs. A stopping worker fails
        the future with StyleLensError."""
        call = Call(fn)
        with self._cond:
            if self._stopping or not self._thread.is_alive():
                call.future.set_exception(StyleLensError("the server is stopping"))
            else:
                self._calls.append(call)
                self._cond.notify()
        return call.future

    # ``job``: the id to give the job (a cluster replica runs the app's job under the app's id);
    # None: a fresh one.

    def submit_render(self, session: str, params: EditParams, job_id: str | None = None) -> str:
        job = self._new(session, "render", params, job_id)
        with self._cond:
            q = self._sessions.get(session)
            if q is None or q.render is None:
                self._check_room(session)
            self._queue(session).render = job  # latest wins; the replaced one is dropped silently
            self._cond.notify()
        return job.id

    def submit_random(self, session: str, seed: int, job_id: str | None = None) -> str:
        return self._enqueue(self._new(session, "random", seed, job_id))

    def submit_commit(self, session: str, params: Commit, job_id: str | None = None) -> str:
        return self._enqueue(self._new(session, "commit", params, job_id))

    def submit_use_latent(self, session: str, latent: str, job_id: str | None = None) -> str:
        return self._enqueue(self._new(session, "use_latent", latent, job_id))

    def submit_region(self, session: str, preset: str, job_id: str | None = None) -> str:
        return self._enqueue(self._new(session, "region", preset, job_id))

    def submit_inversion(
        self,
        session: str,
        *,
        engine: str,
        steps: int,
        upload: str | None,
        init_latent: str | None = None,
        restore: RestoreParams | None = None,
        job_id: str | None = None,
    ) -> str:
        """Queue an inversion (or, with ``restore``, a restoration); the session's running or
        queued inversion is cancelled."""
        params = (engine, steps, upload, init_latent, restore)
        job = self._new(session, "inversion", params, job_id)
        with self._cond:
            q = self._sessions.get(session)
            replaced = [j for j in q.jobs if j.kind == "inversion"] if q else []
            if not replaced:  # refuse before cancelling anything (a replaced one makes room)
                self._check_room(session)
            for old in replaced:
                self._remove(old)
                self._emit(session, Cancelled(job=old.id, step=old.step))
                self._drop_checkpoint(old)
            for running in self._in_flight():
                if running.session == session and running.kind == "inversion":
                    running.cancel = True
            return self._enqueue(job)

    def cancel(self, session: str, job_id: str) -> bool:
        """Cancel a job of ``session``; False if it has none of that id (or it finished)."""
        with self._cond:
            q = self._sessions.get(session)
            for j in q.jobs if q else ():
                if j.id == job_id:
                    self._remove(j)
                    self._emit(session, Cancelled(job=j.id, step=j.step))
                    self._drop_checkpoint(j)
                    return True
            if q is not None and q.render is not None and q.render.id == job_id:
                q.render = None
                self._forget_if_empty(session)
                self._emit(session, Cancelled(job=job_id))
                return True
            for running in self._in_flight():
                if running.id == job_id and running.session == session and not running.ended:
                    running.cancel = True
                    return True
        return False

    def accept(self, session: str, job_id: str) -> bool:
        """Finish an inversion now with the latent it has reached."""
        with self._cond:
            q = self._sessions.get(session)
            jobs = [*(q.jobs if q else ()), *self._in_flight()]
            for j in jobs:
                mine = j.id == job_id and j.session == session
                if mine and j.kind == "inversion" and not j.ended:
                    j.accept = True
                    return True
        return False

    def detach(self, session: str) -> None:
        """The session's last websocket closed: drop its renders and random faces (nobody
        sees them); its commits finish and its inversion runs on for ``reconnect_grace_s``."""
        with self._cond:
            self._detached[session] = time.perf_counter()
            q = self._sessions.get(session)
            if q is not None:
                q.render = None
                for j in [j for j in q.jobs if j.kind in ("random", "render")]:
                    q.jobs.remove(j)
                self._forget_if_empty(session)

    def attach(self, session: str) -> RunningInversion | None:
        """A websocket of the session opened: its inversion (if any) streams to it again.
        Returns that inversion."""
        with self._cond:
            self._detached.pop(session, None)
            q = self._sessions.get(session)
            candidates = [*(q.jobs if q else ()), *self._in_flight()]
            for j in candidates:
                if j.session == session and j.kind == "inversion" and not j.cancel:
                    j.abandon = False  # back before the worker stopped it: it runs on
                    inv = j.inversion
                    engine = inv.engine_name if inv else j.params[0]
                    total = inv.total if inv else j.params[1]
                    return RunningInversion(job=j.id, engine=engine, step=j.step, total=total)
        return None

    def _new(self, session: str, kind: JobKind, params: Any, job_id: str | None = None) -> Job:
        return Job(id=job_id or secrets.token_hex(8), session=session, kind=kind, params=params)

    def _queue(self, session: str) -> SessionQueue:
        """The session's queue; a session new to the ring joins at its end."""
        q = self._sessions.get(session)
        if q is None:
            q = self._sessions[session] = SessionQueue()
        return q

    def _remove(self, job: Job) -> None:
        self._sessions[job.session].jobs.remove(job)
        self._forget_if_empty(job.session)

    def _forget_if_empty(self, session: str) -> None:
        q = self._sessions.get(session)
        if q is not None and not q:
            del self._sessions[session]

    def _check_room(self, session: str) -> None:
        q = self._sessions.get(session)
        mine = len(q) if q is not None else 0
        if mine >= self.queue_per_session:
            raise Busy(
                f"this session already has {mine} jobs waiting (at most "
                f"{self.queue_per_session}); wait for one to finish, or cancel one"
            )
        n = self._pending()
        if n >= self.queue_max:
            raise Busy(
                f"the server is busy ({n} jobs of all sessions waiting); try again in a moment"
            )

    def _enqueue(self, job: Job) -> str:
        with self._cond:
            self._check_room(job.session)
            q = self._queue(job.session)
            position = len(q.jobs)  # this session's jobs ahead of it (its render aside)
            q.jobs.append(job)
            self._emit(job.session, Queued(job=job.id, kind=job.kind, position=position))
            self._cond.notify()
        return job.id

    # the worker thread ---------------------------------------------------------------------

    def _next(self) -> Job | Call | None:
        with self._cond:
            while not self._stopping:
                if self._calls:
                    return self._calls.popleft()
                self._abandon_detached()
                if self._sessions:
                    session, q = next(iter(self._sessions.items()))
                    job = q.take()
                    if q:
                        self._sessions.move_to_end(session)  # its next turn after the others'
                    else:
                        del self._sessions[session]
                    if job.kind == "render":
                        self._gather_renders(job)
                    elif job.kind == "inversion":
                        self._gather_steps(job)
                    self._running = job
                    return job
                self._cond.wait()
            return None

    def _emit(self, session: str, item: ServerEvent | Frame) -> None:
        """Publish an event or frame. The running job's ``done`` or ``cancelled`` marks it
        ended first, so that a cancel or accept arriving before the worker lets go of it is
        answered as for a finished job (``unknown_job``) instead of waiting for nothing."""
        if isinstance(item, (Done, Cancelled)):
            for running in self._in_flight():
                if item.job == running.id:
                    running.ended = True
        self._publish(session, item)

    def _in_flight(self) -> list[Job]:
        """The running job and the jobs drawn with it (a batch of renders or of steps)."""
        running = self._running
        return [running, *running.batch] if running is not None else []

    def _gather_renders(self, job: Job) -> None:
        """Add to ``job`` the waiting renders of other sessions of its model, up to
        ``render_batch`` in all (with the lock held). A render is the latest of its session, so
        drawing it early is never stale, and it costs its session nothing but a turn's wait."""
        runtimes: Runtimes | None = getattr(self, "runtimes", None)  # set once loaded
        if self.render_batch < 2 or runtimes is None:
            return
        model = runtimes.for_session(job.session)
        for session, q in list(self._sessions.items()):
            if len(job.batch) + 1 >= self.render_batch:
                return
            other = q.render
            if other is None or runtimes.for_session(session) is not model:
                continue
            job.batch.append(other)
            q.render, q.rendered_last = None, True
            if not q:
                del self._sessions[session]

    def _gather_steps(self, job: Job) -> None:
        """Add to ``job`` (an inversion about to step) the inversions of other sessions whose
        turn would also be a step that can run with it, up to ``step_batch`` in all (with the
        lock held). Each takes its session's turn, as a render drawn early does."""
        from stylelens.inversion.progressive import ProgressiveEngine, can_step_together

        runtimes: Runtimes | None = getattr(self, "runtimes", None)
        if self.step_batch < 2 or runtimes is None or not _plain_step(job):
            return
        assert job.inversion is not None
        lead = job.inversion
        if not isinstance(lead.engine, ProgressiveEngine):
            return
        model = runtimes.for_session(job.session)
        for session, q in list(self._sessions.items()):
            if len(job.batch) + 1 >= self.step_batch:
                return
            if session == job.session or q.render is not None or not q.jobs:
                continue
            other = q.jobs[0]
            inv = other.inversion
            if (
                other.kind != "inversion"
                or inv is None
                or not isinstance(inv.engine, ProgressiveEngine)
                or not _plain_step(other)
                or runtimes.for_session(session) is not model
                or not can_step_together((lead.engine, lead.state), (inv.engine, inv.state))
            ):
                continue
            q.jobs.popleft()
            q.rendered_last = False
            job.batch.append(other)
            if not q:
                del self._sessions[session]

    def _abandon_detached(self) -> None:
        """Inversions of sessions gone longer than the grace period stop at their next turn."""
        now = time.perf_counter()
        for session, since in list(self._detached.items()):
            if now - since < self.reconnect_grace_s:
                continue
            del self._detached[session]
            q = self._sessions.get(session)
            for j in q.jobs if q else ():
                if j.kind == "inversion":
                    j.abandon = True
            for running in self._in_flight():
                if running.session == session:
                    running.abandon = True

    def _requeue(self, job: Job) -> None:
        """An inversion that wants another step: to the end of its session's line (and its
        session, when it had left the ring, to the end of the ring)."""
        self._queue(job.session).jobs.append(job)
        self._cond.notify()

    def _loop(self) -> None:
        if not self.ready.done():
            assert not isinstance(self._load, Runtimes)
            try:
                self.runtimes = self._load()
            except BaseException as e:
                self.ready.set_exception(e)
                return
            self.ready.set_result(self.runtimes)
        while (job := self._next()) is not None:
            if isinstance(job, Call):
                self._call(job)
                continue
            if job.kind == "inversion" and job.batch:
                outcomes = self._invert_together([job, *job.batch])
            else:
                outcomes = [(job, *self._guarded(job, functools.partial(self._run, job)))]
            for j, _, failed in outcomes:
                if failed:  # an inversion that failed is not offered after a restart
                    self._drop_checkpoint(j)
            with self._cond:
                self._running = None
                for j, requeue, _ in outcomes:
                    if not requeue:
                        continue
                    if j.cancel:
                        self._emit(j.session, Cancelled(job=j.id, step=j.step))
                        self._drop_checkpoint(j)
                    else:
                        j.batch = []
                        self._requeue(j)
        self._keep_unfinished()
        with self._cond:
            calls, self._calls = list(self._calls), deque()
        for call in calls:
            call.future.set_exception(StyleLensError("the server is stopping"))

    def _guarded(self, job: Job, turn: Callable[[], bool]) -> tuple[bool, bool]:
        """Run ``turn`` (one turn of ``job``); an exception becomes the job's error event and
        the worker goes on. Returns (the job wants another turn, it failed)."""
        try:
            return turn(), False
        except torch.cuda.OutOfMemoryError:
            self._drop_checkpoint(job)
            job.inversion = None
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self._emit(
                job.session,
                Error(
                    job=job.id,
                    code="oom",
                    message="the GPU ran out of memory; try fewer steps or wait for "
                    "other sessions to finish",
                ),
            )
        except (StyleLensError, ValueError) as e:
            self._emit(job.session, _error(job, e))
        except Exception as e:
            log.exception("job %s (%s) failed", job.id, job.kind)
            self._emit(
                job.session,
                Error(job=job.id, code="internal", message=f"{type(e).__name__}: {e}"),
            )
        return False, True

    def _invert_together(self, jobs: list[Job]) -> list[tuple[Job, bool, bool]]:
        """One step of each of several sessions' inversions as one batched pass
        (:func:`~stylelens.inversion.progressive.step_together`), then each one's events. If
        the batched step fails, each inversion steps on its own (so one session's failure
        stays its own)."""
        from stylelens.inversion.progressive import ProgressiveEngine, step_together

        try:
            items = []
            for j in jobs:
                assert j.inversion is not None and isinstance(j.inversion.engine, ProgressiveEngine)
                items.append((j.inversion.engine, j.inversion.state))
            reports = step_together(items)
        except Exception:
            log.exception("a batched inversion step failed; its inversions step one by one")
            return [(j, *self._guarded(j, functools.partial(self._invert_turn, j))) for j in jobs]
        return [
            (j, *self._guarded(j, functools.partial(self._invert_after, j, r)))
            for j, r in zip(jobs, reports, strict=True)
        ]

    def _call(self, call: Call) -> None:
        if not call.future.set_running_or_notify_cancel():
            return
        try:
            call.future.set_result(call.fn())
        except Exception as e:
            log.exception("a call on the worker thread failed")
            call.future.set_exception(e)

    def _keep_unfinished(self) -> None:
        """On stop (worker thread): every inversion still under way keeps a fresh checkpoint,
        offered to its session after the restart."""
        with self._cond:
            jobs = [j for q in self._sessions.values() for j in q.jobs if j.kind == "inversion"]
        for job in jobs:
            if job.inversion is None or job.cancel:
                continue
            try:
                rt = self.runtimes.for_session(job.session)
                rt.checkpoint_inversion(
                    job.session, job.id, job.inversion, job.step, status="restart"
                )
            except Exception:
                log.exception("could not keep the checkpoint of inversion %s", job.id)

    def _drop_checkpoint(self, job: Job) -> None:
        """Forget a cancelled or failed inversion's checkpoint (storage only, so any thread
        may call it: an inversion cancelled between steps never reaches the worker again)."""
        if job.kind == "inversion" and job.inversion is not None:
            try:
                self.runtimes.for_session(job.session).drop_checkpoint(job.session, job.id)
            except Exception:
                log.exception("could not drop the checkpoint of inversion %s", job.id)

    def _frame(self, job: Job, kind: str, image: Image8) -> Frame:
        return Frame(
            kind=kind,
            job=job.id,
            step=job.step,
            width=image.width,
            height=image.height,
            mime=image.mime,
            data=image.data,
        )

    def _run(self, job: Job) -> bool:
        """Do one unit of ``job``; True if it is an inversion that wants another turn."""
        rt = self.runtimes.for_session(job.session)
        if job.cancel:
            self._emit(job.session, Cancelled(job=job.id, step=job.step))
            self._drop_checkpoint(job)
            return False
        if job.kind == "use_latent":
            self._emit(job.session, _done(job, rt.use_latent(job.session, job.params)))
            return False
        if job.kind == "region":
            found = rt.region_preset(job.session, job.params)
            self._emit(
                job.session,
                Done(
                    job=job.id,
                    kind="region",
                    mask=found.mask,
                    mask_url=found.mask_url,
                    metrics={"area": found.area},
                ),
            )
            return False
        if job.kind == "render":
            jobs = [job, *job.batch]
            images = rt.render_edits([(j.session, j.params) for j in jobs])
            for j, image in zip(jobs, images, strict=True):
                if isinstance(image, StyleLensError):
                    self._emit(j.session, _error(j, image))
                else:
                    self._emit(j.session, self._frame(j, "edit", image))
            return False
        if job.kind == "random":
            self._emit(job.session, Started(job=job.id, kind="random", total=1))
            saved, image = rt.random_face(job.session, job.params)
            self._emit(job.session, self._frame(job, "edit", image))
            self._emit(job.session, _done(job, saved))
            return False
        if job.kind == "commit":
            self._emit(job.session, Started(job=job.id, kind="commit", total=1))
            self._emit(job.session, _done(job, rt.commit(job.session, job.params)))
            return False
        return self._invert_turn(job)

    def _invert_turn(self, job: Job) -> bool:
        """One turn of an inversion: start it (first turn), then one step, or its end."""
        if not self._invert_begin(job):
            return False
        inv = job.inversion
        assert inv is not None
        if job.accept:
            return self._invert_end(job)
        return self._invert_after(job, self.runtimes.for_session(job.session).step(inv))

    def _invert_begin(self, job: Job) -> bool:
        """Start the inversion on its first turn; False if it stops here (abandoned)."""
        rt = self.runtimes.for_session(job.session)
        if job.inversion is None:
            engine, steps, upload, init_latent, restore = job.params
            job.inversion = rt.start_inversion(
                job.session,
                engine=engine,
                steps=steps,
                upload=upload,
                init_latent=init_latent,
                restore=restore,
            )
            inv = job.inversion
            self._emit(
                job.session,
                Started(
                    job=job.id, kind="inversion", total=inv.total, init=inv.init, note=inv.note
                ),
            )
            if inv.first_preview is not None:  # the encoder's guess, before any step
                self._emit(
                    job.session, self._frame(job, "inversion", rt.encode_preview(inv.first_preview))
                )
        inv = job.inversion
        if job.abandon:  # its page went away: keep where it got to, stop using the worker
            rt.checkpoint_inversion(job.session, job.id, inv, job.step, status="disconnected")
            job.inversion = None
            self._emit(job.session, Cancelled(job=job.id, step=job.step))
            return False
        return True

    def _invert_after(self, job: Job, report: StepReport) -> bool:
        """A step is done: its progress, its preview (at most every half preview interval)
        and, every ``checkpoint_interval_s``, a checkpoint. True if it wants another step."""
        rt = self.runtimes.for_session(job.session)
        inv = job.inversion
        assert inv is not None
        job.step = report.step
        last = inv.state.done
        now = time.perf_counter()
        if last or now - job.last_progress >= self.progress_interval_s:
            job.last_progress = now
            self._emit(
                job.session,
                Progress(
                    job=job.id,
                    step=report.step,
                    total=report.total,
                    losses={k: float(v) for k, v in report.losses.items()},
                    resolution=report.resolution,
                    elapsed=report.elapsed,
                ),
            )
        # Half the interval here: the hub enforces the interval itself (latest frame wins), and
        # gating on the full interval would drop every other frame of steps that take just
        # under it (98 ms steps would stream at 5 frames/s, not 10).
        if last or now - job.last_frame >= self.preview_interval_s / 2:
            job.last_frame = now
            self._emit(
                job.session, self._frame(job, "inversion", rt.encode_preview(report.preview))
            )
        if not last:
            if now - job.last_checkpoint >= self.checkpoint_interval_s:
                job.last_checkpoint = now
                rt.checkpoint_inversion(job.session, job.id, inv, job.step)
            return True
        return self._invert_end(job)

    def _invert_end(self, job: Job) -> bool:
        """The inversion's end: cancelled, or finished (all steps, or accepted) with its
        latent saved and ``done`` out."""
        rt = self.runtimes.for_session(job.session)
        inv = job.inversion
        assert inv is not None
        if job.cancel:
            self._emit(job.session, Cancelled(job=job.id, step=job.step))
            self._drop_checkpoint(job)
            return False
        saved = rt.finish_inversion(job.session, inv)
        job.inversion = None
        self._emit(job.session, _done(job, saved))
        return False


def _done(job: Job, saved: Saved) -> Done:
    """The ``done`` event of a job that left ``saved`` in its session."""
    return Done(
        job=job.id,
        kind=job.kind,
        latent=saved.latent,
        latent_url=saved.latent_url,
        result_url=saved.result_url,
        metrics=saved.metrics,
    )


def _error(job: Job, e: Exception) -> Error:
    """The error event of a job refused for what was asked of it (``JobError`` carries its
    protocol code; any other StyleLensError or ValueError is ``bad_request``)."""
    code = e.code if isinstance(e, JobError) else "bad_request"
    return Error(job=job.id, code=code, message=str(e))  # type: ignore[arg-type]


def _plain_step(job: Job) -> bool:
    """Whether the job's next turn is just a step of its running inversion (no start, end,
    cancel, accept or abandon to handle)."""
    inv = job.inversion
    return (
        inv is not None
        and not (job.cancel or job.accept or job.abandon)
        and not getattr(inv.state, "done", True)
    )


def local_backend(settings: Settings, storage: Storage, emit: Emit) -> Worker:
    """The default backend (a ``sessions.backend.BackendFactory``): one worker thread in this
    process loads and runs every served model."""

    def load() -> Runtimes:  # on the worker's thread: the only thread that runs the model
        runtimes = Runtimes.load(settings, storage)
        for rt in runtimes.by_id.values():
            rt.warm_up()
        return runtimes

    return Worker(
        load,
        emit,
        queue_max=settings.queue_max,
        queue_per_session=settings.queue_per_session,
        preview_interval_s=settings.preview_interval_ms / 1000,
        checkpoint_interval_s=settings.checkpoint_interval_s,
        reconnect_grace_s=settings.reconnect_grace_s,
        render_batch=settings.render_batch,
        step_batch=settings.step_batch,
    )
