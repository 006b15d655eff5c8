"""Promises of docs/reliability.md that need a real server: refusals as close codes a browser
can read, secrets kept out of the access log, inversions surviving a crash."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from stylelens.api.app import create_app
from tests.live import live_server
from tests.test_api import app_models, settings_for  # noqa: F401  (the fixture is reused)


def close_code(url: str, **headers: str) -> int:
    """The close code a refused websocket ends with (the handshake itself must succeed)."""
    with (
        connect(url, additional_headers=headers, open_timeout=10) as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


def test_refusals_are_close_codes_not_http_403(app_models: Path, tmp_path: Path) -> None:  # noqa: F811
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
    app_models: Path,  # noqa: F811
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
