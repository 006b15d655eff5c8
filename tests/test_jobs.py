"""The worker's scheduling with the real runtime on the tiny model: priorities, latest-wins
renders, round robin between sessions, a full queue, and errors that do not stop it."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from stylelens.api.app import process_upload
from stylelens.api.protocol import Done, EditParams, Error, Frame, Progress
from stylelens.api.storage import Storage
from stylelens.jobs.runtime import ModelRuntime, Runtimes
from stylelens.jobs.worker import Busy, Worker
from tests.test_api import app_models, png_bytes, settings_for  # noqa: F401


class Recorder:
    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, session: str, item: Any) -> None:
        with self.lock:
            self.items.append((session, item))

    def wait(self, pred: Any, timeout: float = 60) -> None:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            with self.lock:
                if pred(self.items):
                    return
            time.sleep(0.01)
        raise AssertionError(f"timed out; last items {self.items[-5:]}")


@pytest.fixture()
def runtime(app_models: Path, tmp_path: Path) -> ModelRuntime:  # noqa: F811
    storage = Storage(tmp_path / "data")
    return ModelRuntime.load(settings_for(app_models, tmp_path / "data"), storage)


def session_with_upload(rt: ModelRuntime) -> str:
    sid = rt.storage.new_session(rt.model_id)
    process_upload(rt.storage, sid, png_bytes(), resolution=32, max_pixels=10**6)
    return sid


def dones(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(s, e) for s, e in items if isinstance(e, Done)]


def test_priorities_and_latest_wins_renders(runtime: ModelRuntime) -> None:
    rec = Recorder()
    w = Worker(
        Runtimes([runtime], runtime.storage), rec, queue_max=10
    )  # not started: inspect the order it would take
    sid = session_with_upload(runtime)
    commit = w.submit_commit(sid, EditParams())  # type: ignore[arg-type]
    inversion = w.submit_inversion(sid, engine="adam", steps=3, upload=None)
    first = w.submit_render(sid, EditParams(scales={"smile": 1.0}))
    last = w.submit_render(sid, EditParams(scales={"smile": 2.0}))
    assert w.pending() == 3  # the second render replaced the first
    order = [w._next() for _ in range(3)]
    assert [j.id for j in order if j] == [last, inversion, commit]
    assert first not in [j.id for j in order if j]
    assert order[0] is not None and order[0].params.scales == {"smile": 2.0}


def test_full_queue_is_busy(runtime: ModelRuntime) -> None:
    w = Worker(Runtimes([runtime], runtime.storage), Recorder(), queue_max=2)
    sid = runtime.storage.new_session()
    w.submit_random(sid, 1)
    w.submit_random(sid, 2)
    with pytest.raises(Busy):
        w.submit_random(sid, 3)
    with pytest.raises(Busy):  # a render that replaces nothing needs room too
        w.submit_render(sid, EditParams())
    assert w.pending() == 2


def test_round_robin_between_sessions(runtime: ModelRuntime) -> None:
    rec = Recorder()
    w = Worker(
        Runtimes([runtime], runtime.storage), rec, progress_interval_s=0, preview_interval_s=0
    )
    a, b = session_with_upload(runtime), session_with_upload(runtime)
    w.submit_inversion(a, engine="adam", steps=10, upload=None)
    w.submit_inversion(b, engine="adam", steps=10, upload=None)
    w.start()
    try:
        rec.wait(lambda items: len(dones(items)) == 2)
    finally:
        w.stop()
    steps = [(s, e.step) for s, e in rec.items if isinstance(e, Progress)]
    assert [s for s, _ in steps] == [a, b] * 10  # one step each, in turn
    frames = [s for s, e in rec.items if isinstance(e, Frame)]
    assert frames.count(a) == 10 and frames.count(b) == 10


def test_errors_become_events_and_the_worker_lives_on(
    runtime: ModelRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = Recorder()
    w = Worker(Runtimes([runtime], runtime.storage), rec)
    sid = session_with_upload(runtime)
    calls = {"n": 0}
    real_step = runtime.step

    def failing_step(inv: Any) -> Any:  # fault injection: the first step runs out of memory
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        if calls["n"] == 2:
            raise RuntimeError("engine exploded (injected)")
        return real_step(inv)

    monkeypatch.setattr(runtime, "step", failing_step)
    w.start()
    try:
        w.submit_inversion(sid, engine="adam", steps=3, upload=None)
        rec.wait(lambda items: any(isinstance(e, Error) for _, e in items))
        w.submit_inversion(sid, engine="adam", steps=3, upload=None)
        rec.wait(lambda items: sum(isinstance(e, Error) for _, e in items) == 2)
        w.submit_inversion(sid, engine="adam", steps=3, upload=None)
        rec.wait(lambda items: len(dones(items)) == 1)
    finally:
        w.stop()
    codes = [e.code for _, e in rec.items if isinstance(e, Error)]
    assert codes == ["oom", "internal"]
    assert w.alive is False  # stopped by us, not by the errors


def test_a_loader_runs_on_the_worker_thread(runtime: ModelRuntime) -> None:
    """The models are loaded (and warmed up) by the thread that will run them."""
    seen: list[threading.Thread] = []

    def load() -> Runtimes:
        seen.append(threading.current_thread())
        return Runtimes([runtime], runtime.storage)

    rec = Recorder()
    w = Worker(load, rec)
    assert not w.ready.done()
    w.start()
    try:
        assert w.ready.result(timeout=30) is w.runtimes
        assert seen == [w._thread]
        sid = runtime.storage.new_session()
        w.submit_random(sid, 3)
        rec.wait(lambda items: len(dones(items)) == 1)
    finally:
        w.stop()


def test_a_failing_loader_surfaces_through_ready() -> None:
    def load() -> Runtimes:
        raise ValueError("no such model (injected)")

    w = Worker(load, Recorder())
    w.start()
    with pytest.raises(ValueError, match="injected"):
        w.ready.result(timeout=30)
    w._thread.join(5)
    assert not w.alive
