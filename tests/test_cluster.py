"""Cluster mode on a local Ray instance (2 CPUs, two replicas of the tiny model; tests/cluster.py):
sessions spread over replicas and keep to their own sockets, a dead replica ends only its own
session's inversion, a page that went away abandons its inversion, and the whole Serve
application (ingress deployment behind Serve's proxy) serves the page and the websocket.
tests/test_api.py runs its websocket and HTTP tests on this backend too."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from stylelens.sessions.protocol import Frame
from tests.test_api import new_session, png_bytes, receive_until, receive_until_frame, upload

pytest.importorskip("ray.serve", reason="the cluster extra is not installed")
pytestmark = pytest.mark.slow


def wait_for_replicas(cluster: Any, n: int = 2, timeout_s: float = 120) -> list[str]:
    """The live Models replicas once there are ``n`` (Serve replaces a killed one)."""
    from ray import serve

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        status = serve.status().applications["models"].deployments["Models"]
        running = status.replica_states.get("RUNNING", 0)
        if status.status == "HEALTHY" and running >= n:
            return cluster.replicas()
        time.sleep(0.5)
    raise AssertionError(f"the Models deployment did not get back to {n} replicas")


def invert(c: TestClient, sid: str, steps: int, out: dict[str, Any]) -> None:
    """One session's inversion from start to done on its own socket (a thread's work)."""
    with c.websocket_connect(f"/api/ws?session={sid}") as ws:
        ws.receive_json()
        ws.send_json({"type": "start_inversion", "engine": "adam", "steps": steps})
        events, frames = receive_until(ws, "done")
        ws.send_json({"type": "render_edit", "scales": {"smile": 1.0}})
        more, edits = receive_until_frame(ws)
    out[sid] = (events + more, frames + edits)


def test_eight_sessions_spread_over_replicas_and_keep_to_their_sockets(ray_cluster: Any) -> None:
    replicas = wait_for_replicas(ray_cluster)
    with TestClient(ray_cluster.app()) as c:
        sids = [new_session(c) for _ in range(8)]
        for sid in sids:
            assert upload(c, sid, png_bytes(colour=(30 * len(sid) % 255, 90, 160))).is_success
        out: dict[str, Any] = {}
        threads = [threading.Thread(target=invert, args=(c, sid, 20, out)) for sid in sids]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert sorted(out) == sorted(sids)
        backend = c.app.state.worker  # type: ignore[attr-defined]
        placed: dict[str, str] = {}
        misrouted = 0
        for sid, (events, frames) in out.items():
            jobs = {e["job"] for e in events if e.get("job")}
            assert [e for e in events if e["type"] == "done"], events[-3:]
            misrouted += sum(f.job not in jobs for f in frames)
            inversion = events[0]["job"]
            placed[sid] = backend.placements[inversion]
            assert len([f for f in frames if f.job == inversion]) >= 2
        assert misrouted == 0
        assert set(placed.values()) <= {n for n in replicas}
        assert len(set(placed.values())) == 2, placed  # both replicas took inversions


def test_a_dead_replica_ends_its_sessions_inversion_and_no_other(ray_cluster: Any) -> None:
    import ray

    wait_for_replicas(ray_cluster)
    with TestClient(ray_cluster.app()) as c:
        backend = c.app.state.worker  # type: ignore[attr-defined]
        storage = c.app.state.storage  # type: ignore[attr-defined]
        # Long inversions until two run on different replicas (Serve picks where).
        sockets: list[tuple[str, Any, str]] = []
        stack: list[Any] = []
        try:
            for _ in range(6):
                sid = new_session(c)
                upload(c, sid)
                ws = c.websocket_connect(f"/api/ws?session={sid}").__enter__()
                stack.append(ws)
                ws.receive_json()
                ws.send_json({"type": "start_inversion", "engine": "adam", "steps": 1000})
                job = receive_until(ws, "progress")[0][0]["job"]
                sockets.append((sid, ws, job))
                if len({backend.placements[j] for _, _, j in sockets}) == 2:
                    break
            (sid_a, ws_a, job_a), (sid_b, ws_b, job_b) = (
                sockets[0],
                next(s for s in sockets if backend.placements[s[2]] != backend.placements[
                    sockets[0][2]]),
            )  # fmt: skip
            victim = backend.placements[job_a]
            time.sleep(0.5)  # a checkpoint or two (every 0.2 s)
            ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=False)

            events, _ = receive_until(ws_a, "error")
            lost = events[-1]
            assert lost["code"] == "replica_lost" and lost["job"] == job_a
            assert "last saved latent is kept" in lost["message"]
            kept = storage.checkpoint(sid_a)
            assert kept is not None and kept.status == "restart" and kept.step > 0
            # The other replica's inversion runs on.
            before = receive_until(ws_b, "progress")[0][-1]["step"]
            after = receive_until(ws_b, "progress")[0][-1]["step"]
            assert after > before
            ws_b.send_json({"type": "cancel", "job": job_b})
            assert receive_until(ws_b, "cancelled")[0][-1]["job"] == job_b
            # The session whose replica died goes on, on a live replica.
            ws_a.send_json({"type": "random_face", "seed": 3})
            done = receive_until(ws_a, "done")[0][-1]
            assert done["kind"] == "random"
            assert backend.placements[done["job"]] != victim
            for sid, ws, job in sockets[1:]:
                if sid != sid_b:
                    ws.send_json({"type": "cancel", "job": job})
        finally:
            for ws in stack:
                ws.__exit__(None, None, None)
        with c.websocket_connect(f"/api/ws?session={sid_a}") as ws:
            hello = ws.receive_json()
            assert hello["interrupted"]["reason"] == "restart"
            assert hello["interrupted"]["job"] == job_a


def test_a_page_that_went_away_abandons_its_inversion(ray_cluster: Any) -> None:
    wait_for_replicas(ray_cluster)
    with TestClient(ray_cluster.app(reconnect_grace_s=0.3)) as c:
        backend = c.app.state.worker  # type: ignore[attr-defined]
        storage = c.app.state.storage  # type: ignore[attr-defined]
        sid = new_session(c)
        upload(c, sid)
        with c.websocket_connect(f"/api/ws?session={sid}") as ws:
            ws.receive_json()
            ws.send_json({"type": "start_inversion", "engine": "adam", "steps": 1000})
            for _ in range(3):
                step = receive_until(ws, "progress")[0][-1]["step"]
        gone = time.monotonic()
        while (s := backend._sessions.get(sid)) is not None and s.stream is not None:
            assert time.monotonic() - gone < 30, "the inversion did not stop"
            time.sleep(0.05)
        stopped = time.monotonic() - gone
        assert stopped < 0.3 + 2.0  # the grace, then one step and a signal poll (with slack)
        kept = storage.checkpoint(sid)
        assert kept is not None and kept.status == "disconnected"
        assert step <= kept.step < 1000
        with c.websocket_connect(f"/api/ws?session={sid}") as ws:
            hello = ws.receive_json()
            assert hello["running"] is None and hello["interrupted"]["reason"] == "disconnected"


def test_the_serve_application_serves_the_page_and_the_websocket(ray_cluster: Any) -> None:
    """The whole application as `stylelens serve --cluster` deploys it: the app as the ingress
    deployment behind Serve's HTTP proxy, over its own Models replica."""
    from ray import serve
    from websockets.sync.client import connect

    from stylelens.api.app import create_app
    from stylelens.cluster.serve import ClusterOptions, application

    settings = ray_cluster.settings
    app = application(settings, ClusterOptions(min_replicas=1, replica_cpus=0.5), create_app)
    serve.run(app, name="stylelens", route_prefix="/")
    try:
        base = f"http://127.0.0.1:{ray_cluster.port}"
        assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
        assert "StyleLens" in httpx.get(f"{base}/").text
        sid = httpx.post(f"{base}/api/sessions").json()["id"]
        url = f"ws://127.0.0.1:{ray_cluster.port}/api/ws?session={sid}"
        with connect(url, origin=f"http://127.0.0.1:{ray_cluster.port}") as ws:  # type: ignore[arg-type]
            hello = json.loads(ws.recv())
            assert hello["type"] == "hello" and hello["model"]["id"] == "tiny"
            ws.send(json.dumps({"type": "random_face", "seed": 5}))
            frames, events = [], []
            while not events or events[-1]["type"] != "done":
                msg = ws.recv(timeout=60)
                if isinstance(msg, bytes):
                    frames.append(Frame.decode(msg))
                else:
                    events.append(json.loads(msg))
            assert frames and frames[0].kind == "edit" and frames[0].job == events[-1]["job"]
            png = httpx.get(f"{base}{events[-1]['latent_url']}")
            assert png.status_code == 200
    finally:
        serve.delete("stylelens")
