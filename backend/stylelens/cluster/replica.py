"""A model replica: one copy of the served models, a deployment replica of the Ray Serve
application (``serve.py`` makes it a deployment; Ray runs one per process, with a GPU each on
GPU nodes).

Inside, it is the single-process server's engine: a ``jobs.worker.Worker`` (one thread that
runs the models, round robin over sessions, renders of several sessions batched in one
generator call, inversion checkpoints). The methods are the app's requests as values; what the
worker emits for a job is routed back to the call that asked for it, with the job renamed to
the app's id. An inversion is one streaming call (:meth:`ModelReplica.invert`) that yields its
events and frames for its whole life, so it stays on this replica; cancelling the call cancels
the job at its next step. What the app says to a running inversion besides cancel (accept,
abandon) comes as a signal file in the shared session storage (``Storage.signal``), read every
``SIGNAL_POLL_S``.

Every reply is ``(replica, item)``: the replica's name travels with it (the app logs it, the
tests read it).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from stylelens.cluster.models import ModelFacts
from stylelens.errors import StyleLensError
from stylelens.jobs.worker import Busy, Worker, local_backend
from stylelens.sessions.protocol import (
    TERMINAL,
    Commit,
    EditParams,
    Error,
    Frame,
    Queued,
    RestoreParams,
    ServerEvent,
)
from stylelens.sessions.storage import Storage
from stylelens.settings import Settings

log = logging.getLogger("stylelens.cluster")

SIGNAL_POLL_S = 0.1  # how often a running inversion looks for the app's accept / abandon
REPLY_TIMEOUT_S = 600.0  # a render or commit that gets no answer in this long is an error
Item = ServerEvent | Frame
Reply = tuple[str, list[Item]]


def _job_of(item: Item) -> str | None:
    return item.job if isinstance(item, Frame) else getattr(item, "job", None)


def _render_ends(item: Item) -> bool:
    return isinstance(item, (Frame, *TERMINAL))


def _job_ends(item: Item) -> bool:
    return isinstance(item, TERMINAL)


class ModelReplica:
    """``settings``: ``Settings.model_dump(mode="json")`` of the app (the same models and data
    directories, which every node must see at the same paths)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        # The app's reconnect grace is the app's business: here an inversion is abandoned the
        # moment the app says so (detach).
        self.settings = Settings(**{**settings, "reconnect_grace_s": 0.0})
        _use_reserved_cpus()
        self.storage = Storage(self.settings.data_dir)
        self.name = _replica_name()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: dict[str, asyncio.Queue[Item]] = {}  # the worker's job id -> its items
        # Jobs whose caller left (their late items are dropped): a set to look up on every item,
        # the deque to forget the oldest.
        self._closed: set[str] = set()
        self._closed_order: deque[str] = deque()
        self.worker: Worker = local_backend(self.settings, self.storage, self._route)
        self.worker.start()
        self.worker.ready.result()  # loaded and warmed up before Serve sends a request
        log.info("replica %s serves %s", self.name, ", ".join(self.worker.runtimes.by_id))

    def __del__(self) -> None:  # Serve shuts the replica down: inversions keep checkpoints
        worker = getattr(self, "worker", None)
        if worker is not None:
            worker.stop()

    # requests --------------------------------------------------------------------------------

    async def describe(self) -> list[ModelFacts]:
        """The served models' facts (the app asks once, at its start)."""
        return [
            ModelFacts(
                model_id=rt.model_id,
                model_name=rt.model_name,
                model_dir=rt.model_dir,
                resolution=rt.resolution,
                info=rt.model_info(),
                directions=tuple(rt.direction_infos()),
            )
            for rt in self.worker.runtimes.by_id.values()
        ]

    async def render(self, session: str, job: str, params: EditParams) -> Reply:
        """One slider render; waiting renders of other sessions on this replica are drawn in
        the same generator call (the worker's batching)."""
        return await self._unary(
            job, lambda: self.worker.submit_render(session, params, job), _render_ends
        )

    async def run(self, kind: str, session: str, job: str, arg: Any) -> Reply:
        """A random face (``arg`` the seed), a commit (``Commit``), a latent to use (its id) or
        a region preset (its name): every event it gives, ``Queued`` aside."""
        jobs: dict[str, Callable[[str, Any, str], str]] = {
            "random": self.worker.submit_random,
            "commit": self.worker.submit_commit,
            "use_latent": self.worker.submit_use_latent,
            "region": self.worker.submit_region,
        }
        submit = jobs.get(kind)
        if submit is None:
            raise ValueError(f"unknown job kind {kind!r}")
        if kind == "commit" and not isinstance(arg, Commit):
            raise TypeError("a commit takes a Commit")
        call = submit
        return await self._unary(job, lambda: call(session, arg, job), _job_ends)

    async def invert(
        self,
        session: str,
        job: str,
        engine: str,
        steps: int,
        upload: str | None,
        init_latent: str | None,
        restore: RestoreParams | None,
    ) -> AsyncIterator[tuple[str, Item]]:
        """An inversion from start to end: its events and frames as they come. Closing the
        stream (the app cancels the call) cancels the job."""
        self._loop = asyncio.get_running_loop()
        try:
            self.worker.submit_inversion(
                session,
                engine=engine,
                steps=steps,
                upload=upload,
                init_latent=init_latent,
                restore=restore,
                job_id=job,
            )
        except Busy as e:
            yield self.name, Error(job=job, code="busy", message=str(e))
            return
        queue = self._queue(job)
        asked: set[str] = set()
        last_poll = time.perf_counter()
        finished = False
        try:
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), SIGNAL_POLL_S)
                except TimeoutError:
                    item = None
                if time.perf_counter() - last_poll >= SIGNAL_POLL_S:
                    last_poll = time.perf_counter()
                    for signal in self.storage.signals(session, job) - asked:
                        asked.add(signal)
                        if signal == "accept":
                            self.worker.accept(session, job)
                        else:  # abandon: stop at the next step, keep the checkpoint
                            self.worker.detach(session)
                if item is None or isinstance(item, Queued):
                    continue
                finished = isinstance(item, TERMINAL)
                yield self.name, item
                if finished:
                    return
        finally:
            if not finished:  # the app went away or cancelled the call
                self.worker.cancel(session, job)
            self._forget(job)
            self.storage.clear_signals(session, job)

    # routing ---------------------------------------------------------------------------------

    async def _unary(
        self, job: str, submit: Callable[[], str], ends: Callable[[Item], bool]
    ) -> Reply:
        self._loop = asyncio.get_running_loop()
        try:
            rid = submit()
        except Busy as e:
            return self.name, [Error(job=job, code="busy", message=str(e))]
        except (StyleLensError, ValueError) as e:
            return self.name, [Error(job=job, code="bad_request", message=str(e))]
        queue = self._queue(rid)
        items: list[Item] = []
        try:
            async with asyncio.timeout(REPLY_TIMEOUT_S):
                while True:
                    item = await queue.get()
                    if isinstance(item, Queued):
                        continue
                    items.append(item)
                    if ends(item):
                        return self.name, items
        except TimeoutError:
            items.append(Error(job=job, code="internal", message="the replica did not answer"))
            return self.name, items
        finally:
            self._forget(rid)

    def _queue(self, rid: str) -> asyncio.Queue[Item]:
        with self._lock:
            return self._queues.setdefault(rid, asyncio.Queue())

    def _forget(self, rid: str) -> None:
        with self._lock:
            self._queues.pop(rid, None)
            self._closed.add(rid)
            self._closed_order.append(rid)
            if len(self._closed_order) > 4096:
                self._closed.discard(self._closed_order.popleft())

    def _route(self, session: str, item: Item) -> None:
        """The worker's emit (worker thread): to the queue of the call waiting for the job (an
        item that comes before its call looks makes the queue; one after the call ended is
        dropped)."""
        rid = _job_of(item)
        loop = self._loop
        if rid is None or loop is None:
            return
        with self._lock:
            if rid in self._closed:
                return
            queue = self._queues.setdefault(rid, asyncio.Queue())
        loop.call_soon_threadsafe(queue.put_nowait, item)


def _use_reserved_cpus() -> None:
    """PyTorch's threads = the CPUs Ray reserved for this replica. Ray sets OMP_NUM_THREADS
    only where it is unset, so a replica would otherwise inherit the launching shell's and two
    replicas on one machine oversubscribe its cores (measured on 2 cores, 2 replicas with 2
    threads each: a quarter of one replica's throughput)."""
    try:
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # built outside Ray
        return
    if cpus:
        import torch

        torch.set_num_threads(max(1, int(cpus)))


def _replica_name() -> str:
    """The replica's Ray actor name (``ray.get_actor(name, namespace="serve")`` finds it)."""
    try:
        from ray import serve

        return str(serve.get_replica_context().replica_id.to_full_id_str())
    except Exception:  # built outside Serve (a test driving it directly)
        return f"local-{id(object()):x}"
