"""The worker's scheduling with the real runtime on the tiny model: priorities, latest-wins
renders, round robin between sessions, a full queue, and errors that do not stop it."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from stylelens.api.uploads import process_upload
from stylelens.jobs.session_model import Runtimes, SessionModel
from stylelens.jobs.worker import Busy, Worker
from stylelens.sessions.protocol import Cancelled, Done, EditParams, Error, Frame, Progress
from stylelens.sessions.storage import Storage
from tests.test_api import png_bytes, settings_for


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
def runtime(app_models: Path, tmp_path: Path) -> SessionModel:
    storage = Storage(tmp_path / "data")
    return SessionModel.load(settings_for(app_models, tmp_path / "data"), storage)


def session_with_upload(rt: SessionModel) -> str:
    sid = rt.storage.new_session(rt.model_id)
    process_upload(rt.storage, sid, png_bytes(), resolution=32, max_pixels=10**6)
    return sid


def dones(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(s, e) for s, e in items if isinstance(e, Done)]


def turns(w: Worker, n: int, again: Any = None) -> list[tuple[str, str]]:
    """Take ``n`` turns without running them, as the worker thread would: an inversion goes
    back to its line after each step (forever here), then ``again(job)`` may submit more."""
    taken = []
    for _ in range(n):
        job = w._next()
        assert job is not None
        taken.append((job.session, job.kind))
        with w._cond:
            w._running = None
            if job.kind == "inversion":
                w._requeue(job)
        if again is not None:
            again(job)
    return taken


def test_renders_first_within_a_session_latest_wins(runtime: SessionModel) -> None:
    rec = Recorder()
    w = Worker(
        Runtimes([runtime], runtime.storage), rec, queue_max=10, queue_per_session=5
    )  # not started: inspect the order it would take
    sid = session_with_upload(runtime)
    commit = w.submit_commit(sid, EditParams())  # type: ignore[arg-type]
    inversion = w.submit_inversion(sid, engine="adam", steps=3, upload=None)
    first = w.submit_render(sid, EditParams(scales={"smile": 1.0}))
    last = w.submit_render(sid, EditParams(scales={"smile": 2.0}))
    assert w.pending() == 3  # the second render replaced the first
    order = [w._next() for _ in range(3)]
    assert [j.id for j in order if j] == [last, commit, inversion]  # then first come first
    assert first not in [j.id for j in order if j]
    assert order[0] is not None and order[0].params.scales == {"smile": 2.0}


def test_a_slider_goes_before_its_own_inversion_but_never_freezes_it(
    runtime: SessionModel,
) -> None:
    w = Worker(Runtimes([runtime], runtime.storage), Recorder())
    sid = session_with_upload(runtime)
    w.submit_inversion(sid, engine="adam", steps=100, upload=None)
    assert turns(w, 2) == [(sid, "inversion")] * 2  # alone: step after step
    w.submit_render(sid, EditParams())  # a slider moved during the second step
    assert turns(w, 1) == [(sid, "render")]  # before the next step: no wait beyond the step

    def slider_without_pause(job: Any) -> None:
        w.submit_render(sid, EditParams())

    assert turns(w, 6, slider_without_pause) == [(sid, "inversion"), (sid, "render")] * 3


def test_every_session_gets_one_turn_per_round(runtime: SessionModel) -> None:
    """Sliders, an inversion, a burst of random faces and commits: none waits more than one
    turn of each other session, whatever the others send."""
    # One render per turn (batching off): this is the turn order itself.
    w = Worker(Runtimes([runtime], runtime.storage), Recorder(), render_batch=1)
    inv, rnd, com, *sliders = [runtime.storage.new_session() for _ in range(6)]
    w.submit_inversion(inv, engine="adam", steps=100, upload=None)
    for seed in range(w.queue_per_session):
        w.submit_random(rnd, seed)
    for _ in range(3):
        w.submit_commit(com, EditParams())  # type: ignore[arg-type]
    for sid in sliders:
        w.submit_render(sid, EditParams())

    def slider_client(job: Any) -> None:  # the next move as soon as the frame is out
        if job.kind == "render":
            w.submit_render(job.session, EditParams())

    taken = turns(w, 30, slider_client)
    first_round = [inv, rnd, com, *sliders]
    assert [s for s, _ in taken[:18]] == first_round * 3
    assert [s for s, _ in taken[18:23]] == [inv, rnd, *sliders]  # the commits are done
    assert taken.count((com, "commit")) == 3
    assert taken.count((rnd, "random")) == taken.count((inv, "inversion")) == 6
    assert all(taken.count((s, "render")) >= 5 for s in sliders)


def test_full_queues_are_busy(runtime: SessionModel) -> None:
    w = Worker(Runtimes([runtime], runtime.storage), Recorder(), queue_max=3, queue_per_session=2)
    a, b = runtime.storage.new_session(), runtime.storage.new_session()
    w.submit_random(a, 1)
    w.submit_random(a, 2)
    with pytest.raises(Busy, match="this session already has 2 jobs waiting"):
        w.submit_random(a, 3)
    with pytest.raises(Busy, match="this session"):  # a render that replaces nothing needs room
        w.submit_render(a, EditParams())
    w.submit_render(b, EditParams())
    w.submit_render(b, EditParams())  # replaces the first: no room needed
    with pytest.raises(Busy, match="the server is busy"):  # the safety net: all sessions' jobs
        w.submit_random(b, 4)
    assert w.pending() == 3
    with pytest.raises(ValueError, match="below queue_max"):
        Worker(Runtimes([runtime], runtime.storage), Recorder(), queue_max=8, queue_per_session=8)


def test_round_robin_between_sessions(runtime: SessionModel) -> None:
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
    runtime: SessionModel, monkeypatch: pytest.MonkeyPatch
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


def test_a_loader_runs_on_the_worker_thread(runtime: SessionModel) -> None:
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


def test_sliders_next_to_an_inversion_leave_it_its_share(runtime: SessionModel) -> None:
    """Issue 18: five clients that send the next ``render_edit`` as soon as their frame
    arrives must not starve another session's inversion; each session gets one turn per
    round, so the inversion's 8 steps finish within 9 rounds of the five renders."""
    n, steps, cap = 5, 8, 200
    sliders = [runtime.storage.new_session(runtime.model_id) for _ in range(n)]
    for i, sid in enumerate(sliders):
        runtime.random_face(sid, i)  # a latent to edit
    inverting = session_with_upload(runtime)
    lock = threading.Lock()
    drawn: list[str] = []

    def client(session: str, item: Any) -> None:  # on the worker thread, as the hub would
        rec(session, item)
        if session in sliders and isinstance(item, Frame) and item.kind == "edit":
            with lock:
                drawn.append(session)
                again = len(drawn) < cap
            if again:
                w.submit_render(session, EditParams(scales={"smile": len(drawn) % 3 - 1.0}))

    rec = Recorder()
    w = Worker(
        Runtimes([runtime], runtime.storage),
        client,
        progress_interval_s=0,
        preview_interval_s=0,
        render_batch=1,  # one frame per render turn, so that frames count turns
    )
    w.submit_inversion(inverting, engine="adam", steps=steps, upload=None)
    for sid in sliders:
        w.submit_render(sid, EditParams())
    w.start()
    try:
        rec.wait(lambda items: len(dones(items)) == 1)
    finally:
        w.stop()
    turns = [
        "render" if isinstance(e, Frame) else "done"
        for _, e in rec.items
        if (isinstance(e, Frame) and e.kind == "edit") or isinstance(e, Done)
    ]
    renders_before_done = turns.index("done")
    assert renders_before_done <= n * (steps + 1), f"{renders_before_done} renders went first"


def test_one_session_cannot_make_another_busy(runtime: SessionModel) -> None:
    """Issue 18: a burst of random faces from one session fills only its own queue."""
    w = Worker(Runtimes([runtime], runtime.storage), Recorder())  # the default bounds
    a, b = runtime.storage.new_session(), runtime.storage.new_session()
    refusals: list[str] = []
    for seed in range(3000):
        try:
            w.submit_random(a, seed)
        except Busy as e:
            refusals.append(str(e))
    for seed in range(5):  # the other session still has room
        w.submit_random(b, seed)
        w.submit_render(b, EditParams())
    w.submit_inversion(b, engine="adam", steps=3, upload=None)
    assert len(refusals) == 3000 - w.queue_per_session
    assert all("this session" in m for m in refusals), refusals[0]


def test_an_inversion_cancelled_or_replaced_between_steps_leaves_no_offer(
    runtime: SessionModel,
) -> None:
    w = Worker(Runtimes([runtime], runtime.storage), Recorder(), queue_max=10, queue_per_session=5)
    sid = session_with_upload(runtime)
    for end in ("cancel", "replace"):
        job_id = w.submit_inversion(sid, engine="adam", steps=50, upload=None)
        job = w._next()
        assert job is not None and job.id == job_id
        assert w._run(job)  # one step: it wants another turn
        runtime.checkpoint_inversion(sid, job.id, job.inversion, job.step)  # type: ignore[arg-type]
        with w._cond:
            w._running = None
            w._requeue(job)
        latent = runtime.storage.checkpoint(sid).latent  # type: ignore[union-attr]
        if end == "cancel":
            assert w.cancel(sid, job_id)
        else:
            w.submit_inversion(sid, engine="adam", steps=50, upload=None)
            w.cancel(sid, w._sessions[sid].jobs[0].id)
        assert runtime.storage.checkpoint(sid) is None  # nothing to offer after a restart
        assert runtime.storage.get(sid, latent) is None  # and its file is gone


def test_waiting_renders_of_several_sessions_are_drawn_in_one_turn(runtime: SessionModel) -> None:
    w = Worker(Runtimes([runtime], runtime.storage), Recorder(), render_batch=3)
    a, b, c, d = [runtime.storage.new_session(runtime.model_id) for _ in range(4)]
    for sid in (a, b, c, d):
        w.submit_render(sid, EditParams(scales={"smile": 1.0}))
    w.submit_commit(b, EditParams())  # type: ignore[arg-type]
    job = w._next()
    assert job is not None and job.kind == "render" and job.session == a
    assert [j.session for j in job.batch] == [b, c]  # up to 3 in all, in ring order
    # b keeps its commit (and its place); c is done; d's render waits for the next turn
    assert [j.kind for j in (w._next(), w._next())] == ["commit", "render"]  # type: ignore[union-attr]
    assert w.pending() == 0


def test_a_batched_render_draws_what_single_renders_draw(runtime: SessionModel) -> None:
    from io import BytesIO

    import numpy as np
    from PIL import Image

    from stylelens.errors import JobError
    from stylelens.latents import Latent

    sids = [runtime.storage.new_session(runtime.model_id) for _ in range(4)]
    runtime.random_face(sids[0], 1)
    runtime.random_face(sids[1], 2)
    # An inverted latent carries its own noise maps for some layers.
    g = torch.Generator().manual_seed(0)
    noise = {
        name: torch.randn(1, 1, layer.resolution, layer.resolution, generator=g)
        for name, layer in list(runtime.runtime.G.synthesis.noise_layers().items())[:3]
    }
    ws = runtime.runtime.G.mapping(torch.randn(1, runtime.runtime.G.z_dim, generator=g)).detach()
    runtime.files.save_latent(
        sids[2], Latent(ws, noise, {"model": runtime.model_id}), current=True, meta={}
    )
    # sids[3] has no latent yet: its request fails alone.
    params = [EditParams(scales={"smile": v}) for v in (1.0, -2.0, 0.5, 1.0)]
    batched = runtime.render_edits(list(zip(sids, params, strict=True)))
    assert isinstance(batched[3], JobError) and batched[3].code == "no_latent"
    for sid, p, got in zip(sids[:3], params[:3], batched[:3], strict=True):
        single = runtime.render_edit(sid, p)
        assert not isinstance(got, Exception)
        x = np.asarray(Image.open(BytesIO(got.data))).astype(int)
        y = np.asarray(Image.open(BytesIO(single.data))).astype(int)
        assert np.abs(x - y).max() <= 3, sid  # float order differs in a batch; JPEG re-quantises
    other = runtime.render_edit(sids[0], params[1])  # and the edits differ from each other
    x = np.asarray(Image.open(BytesIO(other.data))).astype(int)
    y = np.asarray(Image.open(BytesIO(batched[0].data))).astype(int)  # type: ignore[union-attr]
    assert np.abs(x - y).mean() > 1


def test_a_job_whose_end_is_out_cannot_be_cancelled_again(runtime: SessionModel) -> None:
    """The race a CI run hit: the second cancel of an inversion came after its `cancelled`
    event but before the worker let go of it, and was answered with nothing at all."""
    from stylelens.sessions.protocol import Cancelled

    w = Worker(Runtimes([runtime], runtime.storage), Recorder())
    sid = session_with_upload(runtime)
    job_id = w.submit_inversion(sid, engine="adam", steps=5, upload=None)
    job = w._next()  # running now
    assert job is not None and job.id == job_id
    assert w.cancel(sid, job_id) is True  # asked: its cancelled event will come
    w._emit(sid, Cancelled(job=job_id, step=1))  # it came; the worker still holds the job
    assert w.cancel(sid, job_id) is False  # so: unknown_job, an answer
    assert w.accept(sid, job_id) is False


@pytest.mark.parametrize("step_batch", [1, 3])
def test_inversions_of_several_sessions_step_together(
    runtime: SessionModel, monkeypatch: pytest.MonkeyPatch, step_batch: int
) -> None:
    """Three sessions' progressive inversions: with step_batch 3 their steps run as batched
    passes (each session's events and frames its own, every inversion done with its result);
    with 1 never."""
    import stylelens.inversion.progressive as progressive

    sizes: list[int] = []
    real = progressive.step_together

    def counting(items: list) -> list:
        sizes.append(len(items))
        return real(items)

    monkeypatch.setattr(progressive, "step_together", counting)
    rec = Recorder()
    w = Worker(
        Runtimes([runtime], runtime.storage),
        rec,
        progress_interval_s=0,
        preview_interval_s=0,
        step_batch=step_batch,
    )
    sids = [session_with_upload(runtime) for _ in range(3)]
    jobs = {w.submit_inversion(s, engine="progressive", steps=12, upload=None): s for s in sids}
    w.start()
    try:
        rec.wait(lambda items: len(dones(items)) == 3)
    finally:
        w.stop()
    for job, sid in jobs.items():
        mine = [e for s, e in rec.items if s == sid]
        assert all(getattr(e, "job", job) == job for e in mine)  # nothing of another session
        assert [e.step for e in mine if isinstance(e, Progress)] == list(range(1, 13))
        assert sum(isinstance(e, Frame) for e in mine) >= 12
        done = next(e for e in mine if isinstance(e, Done))
        assert done.metrics["psnr"] > 0 and runtime.storage.session_state(sid)[1] == done.latent
    if step_batch == 1:
        assert sizes == [1] * 36  # each step alone (ProgressiveEngine.step)
    else:
        assert max(sizes) == 3 and sum(sizes) == 36  # every step once, most of them together


def test_a_session_cancelled_inside_a_batch_of_steps_stops(runtime: SessionModel) -> None:
    rec = Recorder()
    w = Worker(Runtimes([runtime], runtime.storage), rec, step_batch=3)
    a, b = session_with_upload(runtime), session_with_upload(runtime)
    ja = w.submit_inversion(a, engine="progressive", steps=400, upload=None)
    jb = w.submit_inversion(b, engine="progressive", steps=400, upload=None)
    w.start()
    try:
        rec.wait(lambda items: sum(isinstance(e, Progress) and e.job == jb for _, e in items) > 3)
        assert w.cancel(b, jb)
        rec.wait(lambda items: any(isinstance(e, Cancelled) and e.job == jb for _, e in items))
        assert w.cancel(a, ja)
        rec.wait(lambda items: any(isinstance(e, Cancelled) and e.job == ja for _, e in items))
    finally:
        w.stop()
    assert not dones(rec.items) and w.pending() == 0
