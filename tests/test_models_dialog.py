"""The Models dialog's server side (``/api/models``, ``install_*`` events): listing, installs
from a registry served by a local HTTP server (the fixture checkpoint in NVIDIA's real pickle
format, as ``tests/test_fetch.py`` serves it), uploads of checkpoints, and refusals.

The app runs as ``tests/test_api.py`` runs it (TestClient, the tiny model on the CPU), with a
models directory of its own per test, since installs write to it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import pickle
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from stylelens.api.app import create_app
from stylelens.checkpoints import load_card
from stylelens.directions.store import list_directions
from stylelens.settings import Settings
from tests.formats import TINY_G, write_e4e_direction
from tests.live import live_server
from tests.test_api import receive_until, settings_for

# The module (``stylelens.fetch.download`` the attribute is the function of that name).
download = importlib.import_module("stylelens.fetch.download")
LOCAL = "http://127.0.0.1"  # the page's host: a server answering loopback names only installs


@dataclass
class Served:
    """What the file server serves, how slowly, and what it was asked."""

    files: dict[str, bytes] = field(default_factory=dict)
    delay_s: float = 0.0  # between blocks of ``block`` bytes
    block: int = 4096
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)


class _Handler(BaseHTTPRequestHandler):
    served: Served

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        served = self.served
        rng = self.headers.get("Range")
        served.requests.append((self.path, rng))
        body = served.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
        if rng:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        try:
            for i in range(start, len(body), served.block):
                self.wfile.write(body[i : i + served.block])
                self.wfile.flush()
                time.sleep(served.delay_s)
        except (BrokenPipeError, ConnectionResetError):  # the client stopped (a cancel)
            pass


@contextmanager
def file_server() -> Iterator[tuple[str, Served]]:
    """An HTTP server on 127.0.0.1 serving ``Served.files``; yields its base URL."""
    served = Served()
    handler = type("Handler", (_Handler,), {"served": served})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", served
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def files_server() -> Iterator[tuple[str, Served]]:
    with file_server() as server:
        yield server


def _remote(base: str, path: str, body: bytes, **extra: object) -> dict[str, object]:
    return {
        "role": "checkpoint",
        "file": path.rsplit("/", 1)[-1],
        "url": base + path,
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        **extra,
    }


def write_registry(models: Path, base: str, pkl: bytes, direction: bytes) -> None:
    """``models/registry.json`` as the repository's, its URLs at the local file server."""
    registry = {
        "format_version": 1,
        "entries": {
            "tiny-ffhq": {
                "kind": "generator",
                "title": "tiny test generator",
                "resolution": TINY_G.img_resolution,
                "license": "test licence, non-commercial",
                "files": [_remote(base, "/nv/ffhq.pkl", pkl)],
            },
            "e4e-tiny": {
                "kind": "directions",
                "title": "e4e-format directions",
                "applies_to": ["tiny-ffhq"],
                "license": "MIT",
                "files": [
                    _remote(base, "/e4e/age.pt", direction, role="direction", name="e4e-age")
                ],
            },
        },
    }
    (models / "registry.json").write_text(json.dumps(registry))


@pytest.fixture
def models(app_models: Path, tmp_path: Path) -> Path:
    """A models directory of this test's own: the tiny model (served) and tiny-b (not)."""
    root = tmp_path / "models"
    shutil.copytree(app_models / "tiny", root / "tiny")
    shutil.copytree(app_models / "tiny-b", root / "tiny-b")
    return root


@pytest.fixture
def served_files(
    files_server: tuple[str, Served], models: Path, nvidia_pkl: Path, tmp_path: Path
) -> tuple[Served, bytes]:
    base, served = files_server
    pkl = nvidia_pkl.read_bytes()
    direction = write_e4e_direction(tmp_path / "age.pt", (1, TINY_G.w_dim), seed=1).read_bytes()
    served.files.update({"/nv/ffhq.pkl": pkl, "/e4e/age.pt": direction})
    write_registry(models, base, pkl, direction)
    return served, pkl


def local_settings(models: Path, data: Path, **kw: Any) -> Settings:
    """As tests/test_api.py's, answering loopback names only (so installs are allowed)."""
    return settings_for(models, data, **{"allowed_hosts": ["127.0.0.1"], **kw})


@pytest.fixture
def client(models: Path, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(local_settings(models, tmp_path / "data")), base_url=LOCAL) as c:
        yield c


def open_socket(c: TestClient, model: str | None = None) -> Any:
    sid = c.post("/api/sessions", json={"model": model} if model else {}).json()["id"]
    return c.websocket_connect(f"ws://127.0.0.1/api/ws?session={sid}")  # not "testserver"


def install_events(ws: Any) -> list[dict[str, Any]]:
    """The install events up to its end (``install_done`` or ``install_failed``)."""
    out = []
    for _ in range(2000):
        event = ws.receive_json()
        if event["type"].startswith("install_"):
            out.append(event)
            if event["type"] in ("install_done", "install_failed"):
                return out
    raise AssertionError(f"the install did not end: {out[-3:]}")


def wait_idle(c: TestClient, timeout_s: float = 60) -> dict[str, Any]:
    """``GET /api/models`` once no install is under way."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        info = c.get("/api/models").json()
        if info["install"] is None:
            return info  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError("the install did not end")


def test_lists_installed_models_and_the_registry(client: TestClient, served_files) -> None:
    info = client.get("/api/models").json()
    assert info["can_install"] and info["refusal"] is None and info["install"] is None
    installed = {m["id"]: m for m in info["installed"]}
    assert set(installed) == {"tiny", "tiny-b"}  # registry.json and .downloads are not models
    assert installed["tiny"]["served"] and not installed["tiny-b"]["served"]
    assert installed["tiny"]["resolution"] == 32 and installed["tiny"]["directions"] == 1
    assert installed["tiny"]["purpose"] == "photographs of faces (FFHQ)"
    assert "NVIDIA" in installed["tiny"]["license"]  # the converter's licence note
    registry = {e["name"]: e for e in info["registry"]}
    gen = registry["tiny-ffhq"]
    assert gen["size"] == len(served_files[1]) and gen["size_exact"]
    assert gen["license"] == "test licence, non-commercial" and not gen["installed"]
    assert gen["purpose"] == "photographs of faces (FFHQ), 32 px"
    assert registry["e4e-tiny"]["needs"] == ["tiny-ffhq"]


def test_synthfaces_models_say_they_cannot_do_photographs(models: Path, tmp_path: Path) -> None:
    card = json.loads((models / "tiny-b" / "card.json").read_text())
    card.pop("framing", None)
    card["training"] = {"data": {"source": "synthfaces"}}
    (models / "tiny-b" / "card.json").write_text(json.dumps(card))
    with TestClient(create_app(local_settings(models, tmp_path / "d")), base_url=LOCAL) as c:
        info = c.get("/api/models").json()
    purpose = {m["id"]: m["purpose"] for m in info["installed"]}
    assert purpose["tiny-b"].startswith("SynthFaces drawings only")
    assert purpose["tiny"] == "photographs of faces (FFHQ)"


def test_install_streams_progress_then_serves_the_model(
    client: TestClient, served_files, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served, pkl = served_files
    monkeypatch.setattr(download, "CHUNK", 8192)  # several progress events from a small file
    served.delay_s = 0.005  # about 1 s for its 700 kB: events are at most 5 a second
    with open_socket(client) as ws:
        ws.receive_json()  # hello
        r = client.post("/api/models/install", json={"name": "tiny-ffhq"})
        assert r.status_code == 202, r.text
        assert r.json()["type"] == "install_progress" and r.json()["name"] == "tiny-ffhq"
        events = install_events(ws)
    progress = [e for e in events if e["type"] == "install_progress"]
    downloads = [e for e in progress if e["stage"] == "download"]
    assert len({e["bytes"] for e in downloads}) >= 3  # the bar moves
    assert all(e["total"] == len(pkl) for e in downloads)
    assert downloads[-1]["bytes"] == len(pkl)  # and reaches its end
    stages = [e["stage"] for e in progress]
    assert stages.index("convert") > stages.index("download") and stages[-1] == "load"
    assert any("SeFa" in e["message"] for e in progress)
    done = events[-1]
    assert done["type"] == "install_done" and done["loaded"], done
    assert done["model"]["id"] == "tiny-ffhq" and done["model"]["served"]
    assert done["model"]["license"] == "test licence, non-commercial"
    assert done["model"]["directions"] == 10
    assert [m["id"] for m in done["models"]] == ["tiny", "tiny-ffhq"]
    assert load_card(models / "tiny-ffhq").model_extra["fetched"]["entry"] == "tiny-ffhq"
    assert not any((models / ".downloads").glob("*.p*"))  # the download is removed

    info = client.get("/api/models").json()
    assert {m["id"]: m["served"] for m in info["installed"]}["tiny-ffhq"]
    assert {e["name"]: e["installed"] for e in info["registry"]}["tiny-ffhq"]
    assert [m["id"] for m in client.get("/api/model").json()["models"]] == ["tiny", "tiny-ffhq"]
    # Served now: a session of it edits its faces (loaded and warmed on the worker thread).
    with open_socket(client, "tiny-ffhq") as ws:
        hello = ws.receive_json()
        assert hello["model"]["id"] == "tiny-ffhq" and len(hello["directions"]) == 10
        assert [m["id"] for m in hello["models"]] == ["tiny", "tiny-ffhq"]
        ws.send_json({"type": "random_face", "seed": 5})
        done = receive_until(ws, "done")[0][-1]
        assert done["kind"] == "random"
        ws.send_json({"type": "render_edit", "scales": {"sefa-all-00": 2.0}})
        receive_until(ws, "queued")
        assert ws.receive()["bytes"]  # the edit's frame

    # Installed again: refused. Its directions entry now installs and reaches the sliders.
    r = client.post("/api/models/install", json={"name": "tiny-ffhq"})
    assert r.status_code == 409 and "already installed" in r.json()["detail"]
    with open_socket(client, "tiny-ffhq") as ws:
        ws.receive_json()
        assert client.post("/api/models/install", json={"name": "e4e-tiny"}).status_code == 202
        done = install_events(ws)[-1]
        assert done["type"] == "install_done" and "Reload the page" in done["message"]
    assert "e4e-age" in list_directions(models / "tiny-ffhq")
    with open_socket(client, "tiny-ffhq") as ws:
        assert "e4e-age" in [d["name"] for d in ws.receive_json()["directions"]]


def test_one_install_at_a_time_cancel_keeps_the_download_and_it_resumes(
    client: TestClient, served_files, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served, pkl = served_files
    monkeypatch.setattr(download, "CHUNK", 4096)
    served.delay_s = 0.02  # about 1 s for the whole file
    with open_socket(client) as ws:
        ws.receive_json()
        assert client.post("/api/models/install", json={"name": "tiny-ffhq"}).status_code == 202
        for _ in range(500):  # until some bytes are on disk
            event = ws.receive_json()
            if event["type"] == "install_progress" and event["bytes"] > 8192:
                break
        second = client.post("/api/models/install", json={"name": "e4e-tiny"})
        assert second.status_code == 409
        assert "tiny-ffhq is being installed" in second.json()["detail"]
        upload = client.post("/api/models/upload?id=other", content=b"\x80\x04data")
        assert upload.status_code == 409  # an upload is an install too
        r = client.delete("/api/models/install")
        assert r.status_code == 200 and r.json() == {"cancelled": "tiny-ffhq"}
        failed = install_events(ws)[-1]
    assert failed["type"] == "install_failed" and failed["cancelled"]
    kept = failed["kept_bytes"]
    assert 8192 < kept < len(pkl) and "install it again to resume" in failed["message"]
    assert (models / ".downloads" / "ffhq.pkl.part").stat().st_size == kept
    assert not (models / "tiny-ffhq").exists()
    assert client.delete("/api/models/install").status_code == 404  # nothing to cancel

    served.delay_s = 0.0
    served.requests.clear()
    with open_socket(client) as ws:
        ws.receive_json()
        assert client.post("/api/models/install", json={"name": "tiny-ffhq"}).status_code == 202
        events = install_events(ws)
    assert events[-1]["type"] == "install_done", events[-1]
    assert served.requests == [("/nv/ffhq.pkl", f"bytes={kept}-")]  # resumed, not restarted
    first = next(e for e in events if e["stage"] == "download")
    assert first["bytes"] == kept  # the bar starts where the last install stopped
    assert load_card(models / "tiny-ffhq").source.sha256 == hashlib.sha256(pkl).hexdigest()


def test_the_install_goes_on_when_its_page_goes_away(
    client: TestClient, served_files, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served, _ = served_files
    monkeypatch.setattr(download, "CHUNK", 4096)
    served.delay_s = 0.01
    with open_socket(client) as ws:
        ws.receive_json()
        assert client.post("/api/models/install", json={"name": "tiny-ffhq"}).status_code == 202
        ws.receive_json()
    # No socket now; a page that opens later sees the install under way, then done.
    assert client.get("/api/models").json()["install"]["name"] == "tiny-ffhq"
    info = wait_idle(client)
    assert {m["id"]: m["served"] for m in info["installed"]}["tiny-ffhq"]


def test_installs_need_the_token_and_an_unexposed_server(
    models: Path, tmp_path: Path, served_files
) -> None:
    token = local_settings(models, tmp_path / "a", auth_token="s3cret")
    with TestClient(create_app(token), base_url=LOCAL) as c:
        assert c.get("/api/models").status_code == 401
        assert c.post("/api/models/install", json={"name": "tiny-ffhq"}).status_code == 401
        assert c.post("/api/models/upload?id=x", content=b"\x80").status_code == 401
        assert c.delete("/api/models/install").status_code == 401
        assert c.post("/api/models/tiny-b/load").status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert c.get("/api/models", headers=auth).json()["can_install"]
        r = c.post("/api/models/install?token=s3cret", json={"name": "tiny-ffhq"})
        assert r.status_code == 202
        for _ in range(600):
            if c.get("/api/models", headers=auth).json()["install"] is None:
                break
            time.sleep(0.05)

    # Reachable beyond loopback without a token: the dialog lists, installs are refused.
    exposed = [
        {"allowed_hosts": ["127.0.0.1", "stylelens.example"]},  # a proxy's name
        {"host": "0.0.0.0", "in_container": True},  # the Docker image's mode
        {"allow_installs": False},  # turned off by the operator
    ]
    for n, update in enumerate(exposed):
        settings = local_settings(models, tmp_path / f"e{n}").model_copy(update=update)
        with TestClient(create_app(settings), base_url=LOCAL) as c:
            info = c.get("/api/models").json()
            assert not info["can_install"] and info["installed"], update
            expected = "STYLELENS_ALLOW_INSTALLS" if n == 2 else "STYLELENS_AUTH_TOKEN"
            assert expected in info["refusal"]
            r = c.post("/api/models/install", json={"name": "e4e-tiny"})
            assert r.status_code == 403 and expected in r.json()["detail"]
            assert c.post("/api/models/upload?id=abc", content=b"\x80").status_code == 403
            assert c.post("/api/models/tiny-b/load").status_code == 403


def test_an_uploaded_checkpoint_is_converted_and_served(
    client: TestClient, models: Path, nvidia_pkl: Path, rosinality_pt: Path
) -> None:
    with open_socket(client) as ws:
        ws.receive_json()
        for model_id, path in [("my-nvidia", nvidia_pkl), ("my-rosinality", rosinality_pt)]:
            r = client.post(
                f"/api/models/upload?id={model_id}&filename=../{path.name}",
                content=path.read_bytes(),
                headers={"Content-Type": "application/octet-stream"},
            )
            assert r.status_code == 202, r.text
            events = install_events(ws)
            assert events[0]["stage"] == "upload"
            done = events[-1]
            assert done["type"] == "install_done" and done["loaded"], done
            assert done["model"]["id"] == model_id and done["model"]["directions"] == 10
            card = load_card(models / model_id)
            assert card.source.file == path.name  # the name, not the path it claimed
            assert card.model_extra["installed"]["from"] == "upload"
    assert not any((models / ".downloads" / "uploads").iterdir())  # uploads are removed
    served = [m["id"] for m in client.get("/api/model").json()["models"]]
    assert served == ["tiny", "my-nvidia", "my-rosinality"]


def test_bad_input_is_refused_clearly_and_leaves_the_server_intact(
    models: Path, tmp_path: Path, served_files
) -> None:
    settings = local_settings(models, tmp_path / "d", max_checkpoint_bytes=50_000)
    with TestClient(create_app(settings), base_url=LOCAL) as c, open_socket(c) as ws:
        ws.receive_json()
        r = c.post("/api/models/install", json={"name": "nope"})
        assert r.status_code == 404 and "known: tiny-ffhq, e4e-tiny" in r.json()["detail"]
        for body in ({"name": "../x"}, {"name": ""}, {}, {"name": "tiny-ffhq", "x": 1}):
            assert c.post("/api/models/install", json=body).status_code == 422, body
        r = c.post("/api/models/install", json={"name": "e4e-tiny"})
        assert r.status_code == 409 and "install that model first" in r.json()["detail"]

        def upload(query: str, body: bytes, **headers: str) -> httpx.Response:
            return c.post(f"/api/models/upload?{query}", content=body, headers=headers)

        for bad in ("Bad ID", "../x", "", "a" * 65, "-x"):
            r = upload(f"id={bad}", b"\x80")
            assert r.status_code == 422 and "not a valid model id" in r.json()["detail"], bad
        r = upload("id=tiny-b", b"\x80")
        assert r.status_code == 409 and "already installed" in r.json()["detail"]
        r = upload("id=lpips-vgg16", b"\x80")  # the LPIPS weights' folder
        assert r.status_code == 422 and "choose another id" in r.json()["detail"]
        r = upload("id=text", b"hello, not a checkpoint")
        assert r.status_code == 415 and ".pkl" in r.json()["detail"]
        failed = install_events(ws)[-1]  # every page hears the upload ended
        assert failed["type"] == "install_failed" and failed["name"] == "text"
        assert upload("id=empty", b"").status_code == 422
        assert install_events(ws)[-1]["name"] == "empty"
        r = upload("id=form", b"--x\r\n", **{"Content-Type": "multipart/form-data; boundary=x"})
        assert r.status_code == 415 and "not as a multipart form" in r.json()["detail"]
        r = upload("id=big", b"\x80" * 60_000)
        assert r.status_code == 413 and "at most 50 kB" in r.json()["detail"]
        # A pickle, but not a network: refused when it is converted, after the upload.
        junk = pickle.dumps({"G_ema": "no network here", "numbers": list(range(10))})
        assert upload("id=junk&filename=junk.pkl", junk).status_code == 202
        failed = install_events(ws)[-1]
        assert failed["type"] == "install_failed" and failed["name"] == "junk"
        assert "not a StyleGAN2 checkpoint" in failed["message"]

        assert c.post("/api/models/nope/load").status_code == 404
        assert c.post("/api/models/tiny/load").status_code == 409
        assert c.get("/healthz").status_code == 200
        ws.send_json({"type": "random_face", "seed": 1})  # the socket and the worker work
        receive_until(ws, "done")
    names = sorted(p.name for p in models.iterdir())
    assert names == [".downloads", "registry.json", "tiny", "tiny-b"]  # nothing half-made
    assert not any((models / ".downloads" / "uploads").iterdir())


def test_an_installed_model_is_loaded_on_request(client: TestClient) -> None:
    r = client.post("/api/models/tiny-b/load")
    assert r.status_code == 200, r.text
    assert [m["id"] for m in r.json()["models"]] == ["tiny", "tiny-b"]
    with open_socket(client, "tiny-b") as ws:
        assert ws.receive_json()["model"]["id"] == "tiny-b"
    assert client.post("/api/models/tiny-b/load").status_code == 409


def test_an_upload_cut_off_midway_is_removed(models: Path, tmp_path: Path) -> None:
    """A real socket that sends half its body and hangs up: nothing stays, the slot is free."""
    app = create_app(local_settings(models, tmp_path / "d"))
    with live_server(app) as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as s:
            s.sendall(
                b"POST /api/models/upload?id=cut HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n"
                + b"\x80"
                * 30_000
            )
            for _ in range(200):  # the server has it: the slot is taken
                if httpx.get(f"{base}/api/models").json()["install"] is not None:
                    break
                time.sleep(0.02)
            else:
                raise AssertionError("the upload never started")
        for _ in range(200):
            if httpx.get(f"{base}/api/models").json()["install"] is None:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the cut-off upload kept the install slot")
        assert not any((models / ".downloads" / "uploads").iterdir())
        assert not (models / "cut").exists()


def test_worker_call_runs_on_the_worker_thread_and_fails_once_it_stopped() -> None:
    from stylelens.errors import StyleLensError
    from stylelens.jobs.worker import Worker

    worker = Worker(lambda: object(), lambda session, event: None)  # type: ignore[arg-type, return-value]
    worker.start()
    worker.ready.result(10)
    assert worker.call(lambda: threading.current_thread().name).result(10) == "stylelens-worker"
    with pytest.raises(ZeroDivisionError):  # its exception comes back; the worker lives on
        worker.call(lambda: 1 / 0).result(10)
    assert worker.alive
    worker.stop()
    with pytest.raises(StyleLensError, match="stopping"):
        worker.call(lambda: 1).result(10)
