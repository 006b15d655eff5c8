"""The web app end to end: the real app (TestClient), a tiny model with preview heads and one
direction, real inversions on the CPU."""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from stylelens.api.app import create_app
from stylelens.latents import load_latent
from stylelens.sessions.protocol import FRAME_HEADER, Frame, parse_client_message
from stylelens.settings import Settings


def settings_for(models: Path, data: Path, **kw: Any) -> Settings:
    """The tests' server settings (tiny model, CPU, fast previews); ``kw`` overrides them."""
    defaults: dict[str, Any] = {
        "models_dir": models,
        "default_model": "tiny",
        "data_dir": data,
        "device": "cpu",
        "perceptual": "ms-ssim",
        "preview_interval_ms": 20,
        "allowed_hosts": ["testserver", "127.0.0.1"],
    }
    return Settings(**{**defaults, **kw})


@pytest.fixture(params=["worker", "cluster"])
def client(
    request: pytest.FixtureRequest, app_models: Path, tmp_path: Path
) -> Iterator[TestClient]:
    """The app with each backend: the in-process worker, and a ClusterBackend over two model
    replicas on a local Ray instance (tests/cluster.py; its data directory is shared by the
    tests that use it)."""
    if request.param == "worker":
        app = create_app(settings_for(app_models, tmp_path / "data"))
    else:
        app = request.getfixturevalue("ray_cluster").app()
    with TestClient(app) as c:
        yield c


def png_bytes(size: int = 48, colour: tuple[int, int, int] = (200, 120, 90)) -> bytes:
    buf = io.BytesIO()
    im = Image.new("RGB", (size, size), colour)
    im.paste((40, 40, 40), (size // 4, size // 4, size // 2, size // 2))
    im.save(buf, "PNG")
    return buf.getvalue()


def new_session(client: TestClient) -> str:
    r = client.post("/api/sessions")
    assert r.status_code == 201
    return str(r.json()["id"])


def upload(client: TestClient, sid: str, data: bytes | None = None) -> Any:
    files = {"file": ("face.png", data if data is not None else png_bytes(), "image/png")}
    return client.post(f"/api/sessions/{sid}/uploads", files=files)


def receive_until(ws: Any, want: str, limit: int = 2000) -> tuple[list[dict], list[Frame]]:
    """Events and frames up to and including the first event of type ``want``."""
    events: list[dict] = []
    frames: list[Frame] = []
    for _ in range(limit):
        msg = ws.receive()
        if msg.get("bytes") is not None:
            frames.append(Frame.decode(msg["bytes"]))
            continue
        event = json.loads(msg["text"])
        events.append(event)
        if event["type"] == want:
            return events, frames
    raise AssertionError(f"no {want!r} event in {limit} messages: {events[-5:]}")


def receive_until_frame(ws: Any, limit: int = 100) -> tuple[list[dict], list[Frame]]:
    """Events up to the next frame, and that frame."""
    events: list[dict] = []
    for _ in range(limit):
        msg = ws.receive()
        if msg.get("bytes") is not None:
            return events, [Frame.decode(msg["bytes"])]
        events.append(json.loads(msg["text"]))
    raise AssertionError(f"no frame in {limit} messages: {events[-3:]}")


def test_healthz_model_and_static_page(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    info = client.get("/api/model").json()
    assert info["model"]["resolution"] == 32 and info["model"]["preview_heads"]
    assert [d["name"] for d in info["directions"]] == ["smile"]
    assert "progressive" in info["model"]["engines"]
    page = client.get("/")
    assert page.status_code == 200 and "StyleLens" in page.text
    assert client.get("/docs").status_code == 200


def test_upload_inversion_previews_done_then_edit_and_commit(client: TestClient) -> None:
    sid = new_session(client)
    up = upload(client, sid)
    assert up.status_code == 200, up.text
    body = up.json()
    crop = client.get(body["crop_url"])
    assert crop.status_code == 200 and Image.open(io.BytesIO(crop.content)).size == (32, 32)
    with client.websocket_connect(f"/api/ws?session={sid}") as ws:
        hello = ws.receive_json()
        assert hello["type"] == "hello" and hello["protocol"] == 1
        assert hello["session"]["upload"] == body["upload"]
        assert hello["limits"]["max_steps"] == 1000 and hello["directions"][0]["name"] == "smile"
        ws.send_json({"type": "start_inversion", "engine": "progressive", "steps": 12})
        events, frames = receive_until(ws, "done")
        kinds = [e["type"] for e in events]
        assert kinds[0] == "queued" and kinds[1] == "started" and "progress" in kinds
        job = events[0]["job"]
        assert all(e["job"] == job for e in events)
        assert len(frames) >= 2 and all(f.job == job and f.kind == "inversion" for f in frames)
        assert frames[-1].step == 12  # the final preview is never dropped
        img = Image.open(io.BytesIO(frames[-1].data))
        assert img.format == "JPEG" and img.size == (frames[-1].width, frames[-1].height)
        progress = [e for e in events if e["type"] == "progress"]
        assert progress[-1]["step"] == 12 and "total" in progress[-1]["losses"]
        done = events[-1]
        assert done["latent"] and done["metrics"]["psnr"] > 0
        latent = client.get(done["latent_url"])
        assert latent.status_code == 200

        ws.send_json({"type": "render_edit", "scales": {"smile": 0.0}})
        _, base = receive_edit(ws)
        ws.send_json({"type": "render_edit", "scales": {"smile": 3.0}, "truncation": 0.7})
        _, moved = receive_edit(ws)
        assert base.data != moved.data

        ws.send_json({"type": "commit", "scales": {"smile": 3.0}, "mixing": {"seed": 4}})
        events, _ = receive_until(ws, "done")
        done = events[-1]
        assert done["kind"] == "commit"
        png = client.get(done["result_url"])
        assert png.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(png.content)).size == (32, 32)
        assert "attachment" in png.headers["content-disposition"]


def receive_edit(ws: Any) -> tuple[dict, Frame]:
    queued = ws.receive_json()
    assert queued["type"] == "queued" and queued["kind"] == "render"
    msg = ws.receive()
    assert msg.get("bytes") is not None, msg
    frame = Frame.decode(msg["bytes"])
    assert frame.kind == "edit" and frame.job == queued["job"]
    return queued, frame


def test_manual_crop_replaces_the_target(client: TestClient) -> None:
    sid = new_session(client)
    body = upload(client, sid, png_bytes(64)).json()
    assert body["aligned"] is False and body["note"]
    url = f"/api/sessions/{sid}/uploads/{body['upload']}/crop"
    r = client.post(url, json={"left": 8, "top": 8, "size": 32})
    assert r.status_code == 200, r.text
    assert client.get(f"/api/sessions/{sid}").json()["upload"] == r.json()["upload"]
    assert client.post(url, json={"left": 40, "top": 40, "size": 40}).status_code == 422
    other = new_session(client)
    bad = f"/api/sessions/{other}/uploads/{body['upload']}/crop"
    assert client.post(bad, json={"left": 0, "top": 0, "size": 8}).status_code == 404


def test_random_face_gives_a_latent_to_edit(client: TestClient) -> None:
    sid = new_session(client)
    with client.websocket_connect(f"/api/ws?session={sid}") as ws:
        ws.receive_json()
        ws.send_json({"type": "render_edit"})
        events, _ = receive_until(ws, "error")
        assert events[-1]["code"] == "no_latent"
        ws.send_json({"type": "random_face", "seed": 7})
        events, frames = receive_until(ws, "done")
        assert events[-1]["kind"] == "random" and frames and frames[0].kind == "edit"
        ws.send_json({"type": "start_inversion", "steps": 5})  # no upload yet
        events, _ = receive_until(ws, "error")
        assert events[-1]["code"] == "no_target"


def test_cancel_stops_the_job(client: TestClient) -> None:
    sid = new_session(client)
    upload(client, sid)
    with client.websocket_connect(f"/api/ws?session={sid}") as ws:
        ws.receive_json()
        ws.send_json({"type": "start_inversion", "engine": "adam", "steps": 1000})
        events, _ = receive_until(ws, "progress")
        job = events[0]["job"]
        ws.send_json({"type": "cancel", "job": job})
        events, _ = receive_until(ws, "cancelled")
        assert events[-1]["job"] == job and 0 < events[-1]["step"] < 1000
        assert not [e for e in events if e["type"] == "done"]
        ws.send_json({"type": "cancel", "job": job})
        events, _ = receive_until(ws, "error")
        assert events[-1]["code"] == "unknown_job"
    assert client.get("/healthz").json()["pending"] == 0


def wait_idle(worker: Any, timeout_s: float = 30) -> None:
    import time

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        if worker.pending() == 0 and worker._running is None:
            return
        time.sleep(0.02)
    raise AssertionError("the worker is still busy")


def test_a_reload_finds_its_inversion_still_streaming(client: TestClient) -> None:
    sid = new_session(client)
    upload(client, sid)
    with client.websocket_connect(f"/api/ws?session={sid}") as ws:
        ws.receive_json()
        ws.send_json({"type": "start_inversion", "engine": "adam", "steps": 60})
        job = receive_until(ws, "progress")[0][-1]["job"]
    with client.websocket_connect(f"/api/ws?session={sid}") as ws:  # the page reloaded
        running = ws.receive_json()["running"]
        assert running["job"] == job and 0 < running["step"] < 60 and running["total"] == 60
        events, frames = receive_until(ws, "done")
    assert {e["job"] for e in events} == {job} and frames and {f.job for f in frames} == {job}
    assert events[-1]["kind"] == "inversion"


def test_an_inversion_whose_page_went_away_keeps_its_latent(
    app_models: Path, tmp_path: Path
) -> None:
    settings = settings_for(app_models, tmp_path / "d", reconnect_grace_s=0.3)
    with TestClient(create_app(settings)) as c:
        sid = new_session(c)
        upload(c, sid)
        with c.websocket_connect(f"/api/ws?session={sid}") as ws:
            ws.receive_json()
            ws.send_json({"type": "start_inversion", "engine": "adam", "steps": 1000})
            for _ in range(3):
                step = receive_until(ws, "progress")[0][-1]["step"]
        wait_idle(c.app.state.worker)  # type: ignore[attr-defined]
        assert c.app.state.storage.session_state(sid)[1] is None  # type: ignore[attr-defined]
        with c.websocket_connect(f"/api/ws?session={sid}") as ws:
            hello = ws.receive_json()
            gone = hello["interrupted"]
            assert hello["running"] is None and gone["reason"] == "disconnected"
            assert step <= gone["step"] < 1000 and gone["engine"] == "adam"
            path = tmp_path / "checkpoint.safetensors"
            path.write_bytes(c.get(gone["latent_url"]).content)
            assert load_latent(path).ws.shape[0] == 1
            ws.send_json({"type": "start_inversion", "engine": "adam", "steps": 3,
                          "init_latent": gone["latent"]})  # fmt: skip
            assert receive_until(ws, "done")[0][-1]["kind"] == "inversion"
            ws.send_json({"type": "use_latent", "latent": gone["latent"]})
            done = receive_until(ws, "done")[0][-1]
            assert done["kind"] == "use_latent" and done["latent"] == gone["latent"]
            ws.send_json({"type": "use_latent", "latent": "AAAAAAAAAAAAAAAAAAAAAA"})
            assert receive_until(ws, "error")[0][-1]["code"] == "no_latent"
        with c.websocket_connect(f"/api/ws?session={sid}") as ws:
            assert ws.receive_json()["interrupted"] is None  # taken: no longer offered


def test_two_clients_are_isolated(client: TestClient) -> None:
    a, b = new_session(client), new_session(client)
    upload(client, a)
    up_b = upload(client, b, png_bytes(colour=(20, 200, 30))).json()
    with (
        client.websocket_connect(f"/api/ws?session={a}") as wa,
        client.websocket_connect(f"/api/ws?session={b}") as wb,
    ):
        wa.receive_json()
        wb.receive_json()
        wa.send_json({"type": "start_inversion", "engine": "adam", "steps": 8})
        wb.send_json({"type": "start_inversion", "engine": "progressive", "steps": 8})
        ev_a, fr_a = receive_until(wa, "done")
        ev_b, fr_b = receive_until(wb, "done")
    jobs_a = {e["job"] for e in ev_a} | {f.job for f in fr_a}
    jobs_b = {e["job"] for e in ev_b} | {f.job for f in fr_b}
    assert len(jobs_a) == 1 and len(jobs_b) == 1 and jobs_a != jobs_b
    assert fr_a and fr_b
    # A cannot read B's files, even knowing the ids.
    assert client.get(f"/api/sessions/{a}/files/{up_b['upload']}").status_code == 404
    assert client.get(up_b["crop_url"]).status_code == 200
    latent_b = ev_b[-1]["latent"]
    assert client.get(f"/api/sessions/{a}/files/{latent_b}").status_code == 404
    assert client.get("/api/sessions/not-a-session-id-at-all").status_code == 404


def test_malformed_messages_get_errors_and_the_socket_lives(client: TestClient) -> None:
    sid = new_session(client)
    with client.websocket_connect(f"/api/ws?session={sid}") as ws:
        ws.receive_json()
        for text, code in [
            ("not json", "malformed"),
            ("[1, 2]", "malformed"),
            ('{"type": "explode"}', "unknown_message"),
            ('{"no": "type"}', "unknown_message"),
            ('{"type": "start_inversion", "steps": -3}', "invalid"),
            ('{"type": "start_inversion", "steps": 100000}', "invalid"),
            ('{"type": "start_inversion", "engine": "magic"}', "invalid"),
            ('{"type": "render_edit", "truncation": "lots"}', "invalid"),
            ('{"type": "render_edit", "extra": 1}', "invalid"),
            ('{"type": "cancel"}', "invalid"),
        ]:
            ws.send_text(text)
            event = ws.receive_json()
            assert event["type"] == "error" and event["code"] == code, (text, event)
            assert event["message"]
        ws.send_bytes(b"\x00\x01")
        assert ws.receive_json()["code"] == "malformed"
        ws.send_json({"type": "random_face", "seed": 1})
        receive_until(ws, "done")
    assert client.get("/healthz").status_code == 200


def refused_with(c: TestClient, url: str, **headers: str) -> int:
    """The close code a refused websocket ends with, right after its handshake."""
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        c.websocket_connect(url, headers=headers) as ws,
    ):
        ws.receive_json()
    return refused.value.code


def test_unknown_session_and_token(app_models: Path, tmp_path: Path) -> None:
    settings = settings_for(app_models, tmp_path / "d", auth_token="s3cret")
    with TestClient(create_app(settings)) as c:
        assert c.post("/api/sessions").status_code == 401
        r = c.post("/api/sessions", headers={"Authorization": "Bearer s3cret"})
        sid = r.json()["id"]
        assert c.get(f"/api/sessions/{sid}?token=s3cret").status_code == 200
        assert refused_with(c, f"/api/ws?session={sid}") == 4401
        with c.websocket_connect(f"/api/ws?session={sid}&token=s3cret") as ws:
            assert ws.receive_json()["type"] == "hello"
        evil = "http://evil.example"
        assert refused_with(c, f"/api/ws?session={sid}&token=s3cret", origin=evil) == 4403
        assert refused_with(c, "/api/ws?session=nope&token=s3cret") == 4404


def test_foreign_host_is_refused_without_a_token(client: TestClient) -> None:
    assert client.get("/healthz", headers={"host": "rebound.example"}).status_code == 400
    assert client.get("/healthz").status_code == 200


def test_sessions_choose_among_the_served_models(app_models: Path, tmp_path: Path) -> None:
    settings = settings_for(app_models, tmp_path / "d", serve_models=["tiny-b"])
    with TestClient(create_app(settings)) as c:
        info = c.get("/api/model").json()
        assert [m["id"] for m in info["models"]] == ["tiny", "tiny-b"]
        assert c.post("/api/sessions", json={"model": "nope"}).status_code == 422
        sid = c.post("/api/sessions", json={"model": "tiny-b"}).json()["id"]
        default = new_session(c)
        with c.websocket_connect(f"/api/ws?session={sid}") as ws:
            hello = ws.receive_json()
            assert hello["model"]["id"] == "tiny-b" and hello["directions"] == []
            assert "progressive" not in hello["model"]["engines"]  # it has no preview heads
            ws.send_json({"type": "start_inversion", "engine": "progressive", "steps": 3})
            assert ws.receive_json()["code"] == "invalid"
            ws.send_json({"type": "random_face", "seed": 2})
            done = receive_until(ws, "done")[0][-1]
        lat = tmp_path / "b.safetensors"
        lat.write_bytes(c.get(done["latent_url"]).content)
        assert load_latent(lat).model == "tiny-b"
        with c.websocket_connect(f"/api/ws?session={default}") as ws:
            assert ws.receive_json()["model"]["id"] == "tiny"


def test_restart_keeps_committed_results(app_models: Path, tmp_path: Path) -> None:
    settings = settings_for(app_models, tmp_path / "data")
    with TestClient(create_app(settings)) as c:
        sid = new_session(c)
        with c.websocket_connect(f"/api/ws?session={sid}") as ws:
            ws.receive_json()
            ws.send_json({"type": "random_face", "seed": 3})
            receive_until(ws, "done")
            ws.send_json({"type": "commit", "scales": {"smile": 1.5}})
            done = receive_until(ws, "done")[0][-1]
        before = c.get(done["result_url"]).content
    with TestClient(create_app(settings)) as c:
        info = c.get(f"/api/sessions/{sid}").json()
        assert info["latent"] and len(info["results"]) == 1
        assert c.get(done["result_url"]).content == before
        lat = c.get(done["latent_url"])
        path = tmp_path / "l.safetensors"
        path.write_bytes(lat.content)
        assert load_latent(path).ws.shape == (1, 8, 32)
        with c.websocket_connect(f"/api/ws?session={sid}") as ws:  # resumes: edits work
            assert ws.receive_json()["session"]["latent"] == info["latent"]
            ws.send_json({"type": "render_edit", "scales": {"smile": -1}})
            receive_edit(ws)


def test_expired_sessions_are_removed(app_models: Path, tmp_path: Path) -> None:
    settings = settings_for(app_models, tmp_path / "data")
    with TestClient(create_app(settings)) as c:
        sid = new_session(c)
        upload(c, sid)
    folder = tmp_path / "data" / "sessions" / sid
    assert any(folder.iterdir())
    with TestClient(create_app(settings.model_copy(update={"session_ttl_hours": -1.0}))) as c:
        assert c.get(f"/api/sessions/{sid}").status_code == 404
    assert not folder.exists()


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_bad_uploads(app_models: Path, tmp_path: Path) -> None:
    settings = settings_for(app_models, tmp_path / "d", max_upload_bytes=50_000)
    with TestClient(create_app(settings)) as c:
        sid = new_session(c)
        assert upload(c, sid, b"x" * 60_000).status_code == 413
        r = upload(c, sid, b"%PDF-1.4 definitely not a picture")
        assert r.status_code == 415 and "image" in r.json()["detail"]
        truncated = png_bytes(64)[:-40]
        r = upload(c, sid, truncated)
        assert r.status_code == 422 and r.json()["detail"]
        assert upload(c, sid, b"").status_code == 422
        bomb = _png_header_only(30_000, 30_000)  # 900 MP claimed in a tiny file
        r = upload(c, sid, bomb)
        assert r.status_code == 422 and "pixels" in r.json()["detail"]
        big = _png_header_only(9_000, 5_000)  # 45 MP: under Pillow's limit, over ours (40 MP)
        r = upload(c, sid, big)
        assert r.status_code == 422 and "megapixels" in r.json()["detail"]
        sideways = Image.new("RGB", (40, 20), (90, 90, 90))
        exif = Image.Exif()
        exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
        buf = io.BytesIO()
        sideways.save(buf, "JPEG", exif=exif)
        r = upload(c, sid, buf.getvalue())
        assert (r.json()["width"], r.json()["height"]) == (20, 40)
        for mode in ("L", "P", "RGBA", "CMYK", "I;16"):
            im = Image.new(mode, (40, 30))
            buf = io.BytesIO()
            im.save(buf, "TIFF" if mode in ("CMYK", "I;16") else "PNG")
            assert upload(c, sid, buf.getvalue()).status_code == 200, mode
        assert c.get("/healthz").status_code == 200


def test_protocol_frame_header_and_parser() -> None:
    f = Frame(
        kind="edit",
        job="0123456789abcdef",
        step=7,
        width=64,
        height=48,
        mime="image/png",
        data=b"abc",
    )
    buf = f.encode()
    assert FRAME_HEADER.size == 32 and len(buf) == 35 and buf[:2] == b"SL"
    assert Frame.decode(buf) == f
    msg = parse_client_message('{"type": "render_edit", "scales": {"a": 1}}')
    assert msg.type == "render_edit"


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the browser module")
def test_frontend_decoder_reads_the_server_header(tmp_path: Path) -> None:
    import subprocess

    frame = Frame(
        kind="inversion",
        job="fedcba9876543210",
        step=123456,
        width=256,
        height=128,
        mime="image/jpeg",
        data=b"\xff\xd8jpeg",
    )
    (tmp_path / "f.bin").write_bytes(frame.encode())
    module = (Path(__file__).parents[1] / "frontend" / "js" / "protocol.js").as_uri()
    script = (
        f"import {{ decodeFrame }} from '{module}';"
        "import { readFileSync } from 'node:fs';"
        f"const b = readFileSync('{tmp_path / 'f.bin'}');"
        "const f = decodeFrame(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));"
        "const bytes = new Uint8Array(await f.blob.arrayBuffer());"
        "console.log(JSON.stringify({...f, blob: Array.from(bytes)}));"
    )
    out = subprocess.run(
        ["node", "--input-type=module", "-e", script], capture_output=True, text=True, check=True
    )
    got = json.loads(out.stdout)
    assert got == {
        "kind": "inversion",
        "job": "fedcba9876543210",
        "step": 123456,
        "width": 256,
        "height": 128,
        "mime": "image/jpeg",
        "blob": list(b"\xff\xd8jpeg"),
    }


@pytest.mark.skipif(
    importlib.util.find_spec("mediapipe") is None or importlib.util.find_spec("skimage") is None,
    reason="needs the 'align' extra and scikit-image (both in the dev extra)",
)
def test_upload_of_a_photo_is_face_aligned(client: TestClient) -> None:
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, "JPEG", quality=92)
    body = upload(client, new_session(client), buf.getvalue()).json()
    assert body["aligned"] is True and body["faces"] == 1, body


@pytest.mark.parametrize(
    ("scales", "why"),
    [
        ('{"smile": NaN}', "NaN"),
        ('{"smile": Infinity}', "infinity"),
        ('{"smile": -Infinity}', "minus infinity"),
        ('{"smile": 1e308}', "out of range"),
        ('{"smile": 3.5}', "just past the slider's end"),
        ('{"nope": 1}', "unknown direction"),
    ],
)
def test_non_finite_and_out_of_range_sliders_are_refused(
    client: TestClient, scales: str, why: str
) -> None:
    sid = new_session(client)
    with client.websocket_connect(f"/api/ws?session={sid}") as ws:
        ws.receive_json()
        ws.send_json({"type": "random_face", "seed": 3})
        receive_until(ws, "done")
        for kind in ("render_edit", "commit"):
            ws.send_text(f'{{"type": "{kind}", "scales": {scales}}}')
            event = ws.receive_json()
            assert event["type"] == "error" and event["code"] == "invalid", (why, kind, event)
            assert "scales" in event["message"], event
        ws.send_json({"type": "render_edit", "scales": {"smile": 3.0}})  # the range's end is fine
        receive_until(ws, "queued")
        while (msg := ws.receive()).get("bytes") is None:
            assert json.loads(msg["text"])["type"] != "error", msg
        assert Frame.decode(msg["bytes"]).kind == "edit"
    assert client.get(f"/api/sessions/{sid}").json()["results"] == []  # nothing was stored


def test_a_non_finite_latent_is_never_loaded_or_made(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from stylelens.latents import Latent, LatentError

    ws = torch.zeros(1, 4, 8)
    ws[0, 1, 2] = float("nan")
    save_file({"ws": ws}, str(tmp_path / "nan.safetensors"))
    with pytest.raises(LatentError, match="NaN or infinite"):
        load_latent(tmp_path / "nan.safetensors")
    with pytest.raises(LatentError, match=r"noise\.b8"):
        Latent(torch.zeros(1, 4, 8), {"b8.conv0": torch.full((1, 1, 8, 8), float("inf"))})


def test_a_server_stopped_mid_inversion_offers_it_after_the_restart(
    app_models: Path, tmp_path: Path
) -> None:
    settings = settings_for(app_models, tmp_path / "d")
    with TestClient(create_app(settings)) as c:
        sid = new_session(c)
        upload(c, sid)
        with c.websocket_connect(f"/api/ws?session={sid}") as ws:
            ws.receive_json()
            ws.send_json({"type": "start_inversion", "engine": "adam", "steps": 1000})
            step = receive_until(ws, "progress")[0][-1]["step"]
    # the TestClient stopped the app (lifespan shutdown), as SIGTERM or `docker stop` would
    with TestClient(create_app(settings)) as c, c.websocket_connect(f"/api/ws?session={sid}") as ws:
        gone = ws.receive_json()["interrupted"]
        assert gone["reason"] == "restart" and step <= gone["step"] < 1000
