"""Promises of docs/reliability.md that need a real server: refusals as close codes a browser
can read, secrets kept out of the access log, inversions surviving a crash."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from stylelens.api.app import create_app
from tests.live import live_server, server_process
from tests.test_api import settings_for


def close_code(url: str, **headers: str) -> int:
    """The close code a refused websocket ends with (the handshake itself must succeed)."""
    with (
        connect(url, additional_headers=headers, open_timeout=10) as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


def test_refusals_are_close_codes_not_http_403(app_models: Path, tmp_path: Path) -> None:
    app = create_app(settings_for(app_models, tmp_path / "d", auth_token="s3cret"))
    with live_server(app) as base:
        r = httpx.post(f"{base}/api/sessions", headers={"Authorization": "Bearer s3cret"})
        sid = r.json()["id"]
        ws = base.replace("http", "ws") + "/api/ws"
        assert close_code(f"{ws}?session={sid}") == 4401
        assert close_code(f"{ws}?session={sid}&token=wrong") == 4401
        assert close_code(f"{ws}?session={sid}&token=s3cret", Origin="http://evil.example") == 4403
        assert close_code(f"{ws}?session=unknown-session-id-0000&token=s3cret") == 4404
        with connect(f"{ws}?session={sid}&token=s3cret") as ok:
            assert '"hello"' in str(ok.recv(timeout=10))


def test_access_log_has_no_tokens_or_session_ids(
    app_models: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from stylelens.api.logs import log_config

    app = create_app(settings_for(app_models, tmp_path / "d", auth_token="s3cret-token"))
    with live_server(app, log_config=log_config(), log_level="info") as base:
        auth = {"Authorization": "Bearer s3cret-token"}
        sid = httpx.post(f"{base}/api/sessions", headers=auth).json()["id"]
        assert httpx.get(f"{base}/api/sessions/{sid}?token=s3cret-token").status_code == 200
        httpx.get(f"{base}/api/sessions/{sid}/files/AAAAAAAAAAAAAAAAAAAAAA?token=s3cret-token")
        ws = base.replace("http", "ws")
        with connect(f"{ws}/api/ws?session={sid}&token=s3cret-token") as sock:
            sock.recv(timeout=10)
    out, err = capfd.readouterr()
    log = out + err
    assert f"/api/sessions/{sid[:6]}…" in log and "token=***" in log  # the lines are there
    assert "WebSocket /api/ws?session=" in log
    assert sid not in log and "s3cret-token" not in log


def test_redact_keeps_the_rest_of_the_line() -> None:
    from stylelens.api.logs import redact

    sid = "AbCdEf" + "x" * 26
    line = f'1.2.3.4 - "GET /api/sessions/{sid}/files/abc?token=t0k&x=1 HTTP/1.1" 200'
    assert (
        redact(line) == '1.2.3.4 - "GET /api/sessions/AbCdEf…/files/abc?token=***&x=1 HTTP/1.1" 200'
    )
    assert redact(f"/api/ws?token=a&session={sid}") == "/api/ws?token=***&session=AbCdEf…"
    assert redact(f"FileNotFoundError: data/sessions/{sid}/i.png") == (
        "FileNotFoundError: data/sessions/AbCdEf…/i.png"
    )


def _events_until(ws: object, want: str, limit: int = 5000) -> list[dict]:
    events = []
    for _ in range(limit):
        msg = ws.recv(timeout=60)  # type: ignore[attr-defined]
        if isinstance(msg, bytes):
            continue
        event = json.loads(msg)
        events.append(event)
        if event["type"] == want:
            return events
    raise AssertionError(f"no {want!r} in {limit} messages: {events[-3:]}")


def test_kill_9_keeps_results_and_offers_the_interrupted_inversion(
    app_models: Path,
    tmp_path: Path,
) -> None:
    from stylelens.latents import load_latent
    from tests.test_api import png_bytes

    env = {
        "STYLELENS_MODELS_DIR": str(app_models),
        "STYLELENS_DEFAULT_MODEL": "tiny",
        "STYLELENS_DATA_DIR": str(tmp_path / "data"),
        "STYLELENS_DEVICE": "cpu",
        "STYLELENS_PERCEPTUAL": "ms-ssim",
        "STYLELENS_CHECKPOINT_INTERVAL_S": "0.2",
        "OMP_NUM_THREADS": "1",
    }
    with server_process(env) as (base, proc):
        sid = httpx.post(f"{base}/api/sessions").json()["id"]
        files = {"file": ("face.png", png_bytes(), "image/png")}
        assert httpx.post(f"{base}/api/sessions/{sid}/uploads", files=files).status_code == 200
        with connect(f"{base.replace('http', 'ws')}/api/ws?session={sid}") as ws:
            ws.recv(timeout=30)
            ws.send(json.dumps({"type": "random_face", "seed": 5}))
            _events_until(ws, "done")
            ws.send(json.dumps({"type": "commit", "truncation": 0.7}))
            committed = _events_until(ws, "done")[-1]
            kept = {u: httpx.get(base + committed[u]).content for u in ("result_url", "latent_url")}
            ws.send(json.dumps({"type": "start_inversion", "engine": "adam", "steps": 1000}))
            steps = [_events_until(ws, "progress")[-1]["step"]]
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 1.5:  # several checkpoints' worth of steps
                steps.append(_events_until(ws, "progress")[-1]["step"])
            proc.kill()  # type: ignore[attr-defined]  # SIGKILL: no shutdown code runs
            proc.wait(10)  # type: ignore[attr-defined]
    with server_process(env) as (base, _):
        for url, data in kept.items():
            assert httpx.get(base + committed[url]).content == data, url  # byte-identical
        with connect(f"{base.replace('http', 'ws')}/api/ws?session={sid}") as ws:
            hello = json.loads(ws.recv(timeout=30))
            gone = hello["interrupted"]
            assert gone is not None and gone["reason"] == "restart", hello
            assert 0 < gone["step"] <= max(steps) and gone["total"] == 1000
            assert [r["url"] for r in hello["session"]["results"]] == [committed["result_url"]]
            path = tmp_path / "checkpoint.safetensors"
            path.write_bytes(httpx.get(base + gone["latent_url"]).content)
            assert load_latent(path).model == "tiny"
            ws.send(json.dumps({"type": "use_latent", "latent": gone["latent"]}))
            assert _events_until(ws, "done")[-1]["kind"] == "use_latent"
            ws.send(json.dumps({"type": "render_edit"}))
            while not isinstance(frame := ws.recv(timeout=30), bytes):
                assert json.loads(frame)["type"] != "error", frame
        assert httpx.get(f"{base}/healthz").status_code == 200
