"""A real uvicorn server in a thread, for tests that need what TestClient does not give: the
websocket handshake as a browser sees it, uvicorn's access log."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(app: FastAPI, **config: object) -> Iterator[str]:
    """Serve ``app`` on a free loopback port; yields ``http://127.0.0.1:PORT``."""
    import uvicorn

    port = free_port()
    kw: dict = {"log_level": "warning", **config}
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **kw))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(600):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)


@contextmanager
def server_process(env: dict[str, str], *, port: int | None = None) -> Iterator[tuple[str, object]]:
    """``stylelens serve`` in a child process (so a test can ``kill -9`` it); yields its base
    URL and the ``Popen``. Settings come from ``env`` (``STYLELENS_*``)."""
    import os
    import subprocess
    import sys

    import httpx

    port = port or free_port()
    cmd = [sys.executable, "-m", "stylelens.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(
        cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise AssertionError(f"the server exited ({proc.returncode}): {err[-2000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        else:
            raise AssertionError("the server did not answer /healthz")
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
