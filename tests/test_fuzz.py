"""Property-based fuzzing of the web app, kept as tests (hypothesis, derandomized: every run
sends the same cases).

* every HTTP route (each route the app serves must have a generator here, see
  :func:`test_every_route_is_fuzzed`): right and wrong methods, real and hostile path ids,
  junk queries, JSON bodies with wrong types, NaN/Infinity/1e308 and nesting, raw bytes, and
  uploads of damaged images;
* every websocket message type, valid-shaped and hostile: wrong types, non-finite and huge
  numbers, huge strings, nested junk, unknown types, non-JSON text and binary frames; and the
  handshake with hostile session ids, tokens and origins.

Promised: no 5xx, no traceback text in any reply, no ``internal`` error event, the socket
stays open, the worker thread lives and ``/healthz`` answers 200 afterwards. The real app runs
with the tiny model of ``tests/test_api.py`` on the CPU.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import string
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args
from urllib.parse import quote

import anyio
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from stylelens.api.app import create_app
from stylelens.sessions.protocol import (
    ClientMessage,
    Frame,
    ServerEvent,
)
from tests.test_api import png_bytes, settings_for

HTTP_CASES = 3200
WS_MESSAGE_CASES = 5600
WS_HANDSHAKE_CASES = 1200  # 10,000 cases in all
FUZZ = settings(
    derandomize=True,  # the same cases on every run: CI is reproducible
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TRACEBACK_MARKS = ("Traceback (most recent call last)", 'File "/', "site-packages")
REFUSALS = ("invalid", "unknown_message", "malformed")  # a message refused as it arrives


def _types(union: Any) -> set[str]:
    """The ``type`` values of a union of protocol message classes."""
    return {get_args(cls.model_fields["type"].annotation)[0] for cls in get_args(union)}


SERVER_EVENTS = _types(ServerEvent)
CLIENT_MESSAGES = _types(get_args(ClientMessage)[0])  # Annotated[Union, discriminator]


@dataclass
class Target:
    """The running app and real ids to aim at (besides junk ones)."""

    client: TestClient
    sid: str
    other_sid: str
    items: list[str]  # ids of the session's files (upload, crop, latent)
    counts: Counter[str] = field(default_factory=Counter)


@pytest.fixture(scope="module")
def target(app_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    data = tmp_path_factory.mktemp("fuzz") / "data"
    # Small limits keep each case cheap: a damaged header claiming a huge image is refused
    # before it is decoded, and a valid inversion is a few steps of the tiny model.
    s = settings_for(app_models, data, max_steps=3, max_pixels=1_000_000, max_upload_bytes=300_000)
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        sid = c.post("/api/sessions").json()["id"]
        other = c.post("/api/sessions").json()["id"]
        up = c.post(f"/api/sessions/{sid}/uploads", files={"file": ("a.png", png_bytes())})
        body = up.json()
        items = [body["upload"], body["original_url"].rsplit("/", 1)[1]]
        t = Target(c, sid, other, items)
        yield t
        print("fuzz cases:", dict(sorted(t.counts.items())))  # shown with pytest -s
        assert c.app.state.worker.alive, "the worker thread died during the fuzz"
        assert c.get("/healthz").status_code == 200


def check_reply(status: int, text: str, what: object) -> None:
    assert status < 500, f"{status} for {what!r}: {text[:300]}"
    for mark in TRACEBACK_MARKS:
        assert mark not in text, f"traceback text in the reply to {what!r}: {text[:300]}"


# ------------------------------------------------------------------------------------------
# strategies shared by HTTP bodies and websocket messages

NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0, 2**53 + 1]),
)
TEXT = st.one_of(
    st.text(max_size=24),
    st.sampled_from(["", " ", "\x00", "\ud800", "../../index.sqlite3", "%2e%2e%2f", "é" * 3]),
    st.builds(lambda ch, n: ch * n, st.characters(), st.integers(1_000, 200_000)),  # huge
)
JUNK = st.recursive(
    st.none() | st.booleans() | NUMBERS | TEXT,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a valid value, sometimes junk of any type."""
    return st.one_of(valid, valid, JUNK)


def shaped(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with some of ``fields`` (values maybe junk) and sometimes an unknown key."""
    return st.builds(
        lambda present, extra: {**present, **extra},
        st.fixed_dictionaries({}, optional={k: maybe(v) for k, v in fields.items()}),
        st.one_of(st.just({}), st.just({}), st.dictionaries(st.text(max_size=6), JUNK, max_size=2)),
    )


def to_json(value: Any) -> str:
    """JSON as Python's parser reads it: NaN and Infinity included, lone surrogates escaped."""
    return json.dumps(value, allow_nan=True)


def deep_nesting(depth: int) -> str:
    return "[" * depth + "]" * depth


# ------------------------------------------------------------------------------------------
# HTTP


def _seed_images() -> list[bytes]:
    im = Image.new("RGB", (40, 30), (200, 120, 90))
    out = []
    kinds = [("PNG", "RGBA"), ("JPEG", "RGB"), ("GIF", "P"), ("WEBP", "RGB"), ("BMP", "RGB")]
    kinds += [("TIFF", "I;16"), ("ICO", "RGBA"), ("TIFF", "CMYK"), ("PNG", "LA")]
    for fmt, mode in kinds:
        buf = io.BytesIO()
        im.convert(mode if mode != "I;16" else "L").convert(mode).save(buf, fmt)
        out.append(buf.getvalue())
    return out


SEEDS = _seed_images()


@st.composite
def damaged_image(draw: st.DrawFn) -> bytes:
    """A seed image truncated, bit-flipped or spliced, or random bytes."""
    how = draw(st.sampled_from(["intact", "truncate", "flip", "splice", "random", "empty"]))
    if how == "random":
        return draw(st.binary(max_size=2048))
    if how == "empty":
        return b""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    if how == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
    if how == "splice":
        i = draw(st.integers(0, len(data)))
        data[i:i] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


ID_ALPHABET = string.ascii_letters + string.digits + "-_"
MODEL_IDS = ["tiny", "tiny-b", "tiny-ffhq", "new-model", "Bad ID", ".downloads"]
HOSTILE_IDS = st.one_of(
    st.text(alphabet=ID_ALPHABET, min_size=16, max_size=64),  # well-formed, unknown
    st.text(max_size=30),
    st.sampled_from(["..", "../index.sqlite3", "%2e%2e", "a/b", "\x00", "x" * 5000, " "]),
)


@st.composite
def path_id(draw: st.DrawFn, t: Target, kind: str) -> str:
    real = {"sid": [t.sid, t.other_sid], "item": t.items, "model": MODEL_IDS}[kind]
    value = draw(st.one_of(st.sampled_from(real), st.sampled_from(real), HOSTILE_IDS))
    return url_quote(value)


def url_quote(value: str) -> str:
    """Percent-encoded UTF-8; a lone surrogate becomes bytes that are not UTF-8 at all."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


BODY = st.one_of(
    st.none(),
    st.builds(to_json, JUNK),
    st.builds(to_json, shaped({"model": st.sampled_from(["tiny", "tiny-b", "nope"])})),
    st.builds(
        to_json,
        shaped({k: st.integers(-5, 100) for k in ("left", "top", "size")}),
    ),
    st.builds(to_json, shaped({"name": st.sampled_from(["tiny-ffhq", "e4e-tiny", "nope", "."])})),
    st.builds(deep_nesting, st.integers(1, 50_000)),
    st.binary(max_size=512),
)


@st.composite
def http_request(draw: st.DrawFn, t: Target) -> dict[str, Any]:
    route = draw(st.sampled_from(HTTP_ROUTES))
    path = route["path"].format(
        sid=draw(path_id(t, "sid")),
        crop_id=draw(path_id(t, "item")),
        iid=draw(path_id(t, "item")),
        model_id=draw(path_id(t, "model")),
    )
    other = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"])
    method = draw(st.one_of(st.just(route["method"]), st.just(route["method"]), other))
    keys = ["token", "session", "x", "page", "id", "filename"]  # id, filename: model uploads
    query = draw(
        st.dictionaries(
            st.sampled_from(keys), st.one_of(TEXT, st.sampled_from(MODEL_IDS)), max_size=2
        )
    )
    if query:
        path += "?" + "&".join(f"{k}={url_quote(v[:2000])}" for k, v in query.items())
    headers: dict[str, str] = {}
    if draw(st.integers(0, 9)) == 0:
        printable = string.ascii_letters + string.digits + string.punctuation + " "
        headers["authorization"] = "Bearer " + draw(st.text(alphabet=printable, max_size=40))
    req: dict[str, Any] = {"method": method, "url": path, "headers": headers}
    if route["upload"] and method == "POST" and draw(st.integers(0, 3)):
        name = draw(st.sampled_from(["file", "file", "image", ""]))
        filename = draw(st.sampled_from(["face.png", "", "../../x.jpg", "a" * 300, "é.gif"]))
        mime = draw(st.sampled_from(["image/png", "application/octet-stream", "text/html", ""]))
        req["files"] = {name: (filename, draw(damaged_image()), mime)}
    else:
        body = draw(BODY)
        if body is not None:
            req["content"] = (
                body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
            )
            ctype = ["application/json", "text/plain", "multipart/form-data; boundary=x", ""]
            headers["content-type"] = draw(st.sampled_from(ctype))
    req["route"] = route["path"]
    return req


HTTP_ROUTES = [
    {"method": "GET", "path": "/healthz", "upload": False},
    {"method": "GET", "path": "/api/model", "upload": False},
    {"method": "POST", "path": "/api/sessions", "upload": False},
    {"method": "GET", "path": "/api/sessions/{sid}", "upload": False},
    {"method": "POST", "path": "/api/sessions/{sid}/uploads", "upload": True},
    {"method": "POST", "path": "/api/sessions/{sid}/uploads/{crop_id}/crop", "upload": False},
    {"method": "POST", "path": "/api/sessions/{sid}/masks", "upload": True},
    {"method": "GET", "path": "/api/sessions/{sid}/files/{iid}", "upload": False},
    {"method": "GET", "path": "/api/models", "upload": False},
    {"method": "POST", "path": "/api/models/install", "upload": False},
    {"method": "DELETE", "path": "/api/models/install", "upload": False},
    {"method": "POST", "path": "/api/models/upload", "upload": True},
    {"method": "POST", "path": "/api/models/{model_id}/load", "upload": False},
    {"method": "GET", "path": "/openapi.json", "upload": False},
    {"method": "GET", "path": "/docs", "upload": False},
    {"method": "GET", "path": "/", "upload": False},
    {"method": "GET", "path": "/js/{iid}", "upload": False},  # the static front end
]


def test_every_route_is_fuzzed(target: Target) -> None:
    served = set()
    for r in target.client.app.routes:
        if isinstance(r, APIRoute):
            served |= {(m, r.path) for m in r.methods}
        elif isinstance(r, APIWebSocketRoute):
            served.add(("WS", r.path))
    fuzzed = {(r["method"], r["path"]) for r in HTTP_ROUTES}
    fuzzed.add(("WS", "/api/ws"))
    docs = {("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"),
            ("GET", "/redoc"), ("HEAD", "/openapi.json")}  # fmt: skip
    missing = {r for r in served - fuzzed - docs if r[0] != "HEAD"}
    assert not missing, f"routes without a fuzz generator: {sorted(missing)}"


def test_fuzz_http_routes(target: Target) -> None:
    @settings(FUZZ, max_examples=HTTP_CASES)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        req = data.draw(http_request(target))
        req.pop("route")
        r = target.client.request(**req)
        target.counts["http"] += 1
        target.counts[f"http {r.status_code}"] += 1
        check_reply(r.status_code, r.text, {k: str(v)[:200] for k, v in req.items()})

    run()
    assert target.counts["http"] >= HTTP_CASES
    assert target.client.get("/healthz").status_code == 200


# ------------------------------------------------------------------------------------------
# websocket

SEED = st.integers(0, 2**32 - 1)
EDIT = {
    "scales": st.dictionaries(st.sampled_from(["smile", "age", ""]), NUMBERS, max_size=2),
    "mixing": st.one_of(
        st.none(),
        shaped({"seed": SEED, "layers": st.sampled_from(["coarse", "middle", "fine", "all"])}),
    ),
    "truncation": st.floats(-1, 2),
    "region": st.one_of(
        st.none(),
        shaped({"mask": TEXT, "blend_res": st.sampled_from([None, 4, 8, 12, 32, 4096])}),
    ),
}
MESSAGE_FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "start_inversion": {
        "engine": st.sampled_from(["progressive", "adam", "magic", ""]),
        "steps": st.integers(-2, 5),
        "upload": st.one_of(st.none(), TEXT),
        "restore": st.one_of(
            st.none(),
            shaped(
                {
                    "task": st.sampled_from(["colorize", "superres", "inpaint", "sharpen"]),
                    "scale": st.sampled_from([2, 3, 8, 16]),
                    "mask": st.one_of(st.none(), TEXT),
                    "codes": st.integers(-1, 3),
                    "handoff_steps": st.integers(-1, 3),
                }
            ),
        ),
    },
    "cancel": {
        "job": st.one_of(st.text(alphabet="0123456789abcdef", min_size=16, max_size=16), TEXT)
    },
    "accept": {
        "job": st.one_of(st.text(alphabet="0123456789abcdef", min_size=16, max_size=16), TEXT)
    },
    "render_edit": EDIT,
    "commit": EDIT,
    "random_face": {"seed": SEED},
    "use_latent": {"latent": TEXT},
    "region_preset": {"preset": st.sampled_from(["eyes", "hair", "ears", ""])},
}


def test_every_message_type_is_fuzzed() -> None:
    missing = CLIENT_MESSAGES - set(MESSAGE_FIELDS)
    assert not missing, f"client messages without a fuzz generator: {sorted(missing)}"


def _typed(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    return shaped(MESSAGE_FIELDS[kind]).map(lambda m: {"type": kind, **m})


WS_MESSAGE = st.one_of(
    *[st.builds(to_json, _typed(kind)) for kind in MESSAGE_FIELDS],  # every type, valid-shaped
    *[st.builds(to_json, _typed(kind)) for kind in MESSAGE_FIELDS],  # (twice as likely)
    st.builds(
        to_json,
        st.builds(
            lambda t, m: {"type": t, **m},
            JUNK,
            st.dictionaries(st.text(max_size=6), JUNK, max_size=3),
        ),
    ),
    st.builds(to_json, JUNK),  # arrays, strings, numbers, null: not an object
    st.text(max_size=64),  # not JSON
    st.builds(lambda ch, n: ch * n, st.characters(), st.integers(10_000, 300_000)),
    st.builds(deep_nesting, st.integers(1, 3_000)),
    st.builds(
        lambda d: '{"type": "commit", "scales": ' + deep_nesting(d) + "}", st.integers(1, 3_000)
    ),
    st.binary(max_size=256),  # a binary frame
)


def receive(ws: Any, timeout_s: float) -> dict[str, Any]:
    """``ws.receive()``, failing instead of hanging when the server stops answering."""

    async def within() -> dict[str, Any]:
        with anyio.fail_after(timeout_s):
            return await ws._send_rx.receive()  # TestClient's queue of server messages

    try:
        return ws.portal.call(within)  # type: ignore[no-any-return]
    except TimeoutError:
        raise AssertionError(f"the server sent nothing for {timeout_s:.0f} s") from None


class Socket:
    """A websocket kept open across cases (opened again if a case broke it); each case ends
    with a probe whose reply marks the end of the replies to the case."""

    def __init__(self, t: Target, sid: str, *, timeout_s: float = 10.0) -> None:
        self.t, self.sid, self.timeout_s, self.n = t, sid, timeout_s, 0
        self.ws: Any = None

    def open(self) -> None:
        self.close()
        self._cm = self.t.client.websocket_connect(f"/api/ws?session={self.sid}")
        self.ws = self._cm.__enter__()
        assert self.ws.receive_json()["type"] == "hello"

    def close(self) -> None:
        if self.ws is not None:
            self.ws = None
            with contextlib.suppress(Exception):
                self._cm.__exit__(None, None, None)

    def send(self, message: str | bytes) -> None:
        if self.ws is None:
            self.open()
        if isinstance(message, bytes):
            self.ws.send_bytes(message)
        else:
            self.ws.send_text(message)

    def sync(self, sent: object) -> list[dict[str, Any]]:
        """Send a probe and read everything up to its reply: the replies to ``sent`` and any
        events of jobs it started. Returns the JSON events."""
        try:
            return self._sync(sent)
        except AssertionError:
            self.close()  # the next case starts on a fresh socket
            raise

    def _sync(self, sent: object) -> list[dict[str, Any]]:
        self.n += 1
        probe = f"fuzz-sync-{self.n}"
        self.ws.send_text(json.dumps({"type": probe}))
        events = []
        for _ in range(10_000):
            msg = receive(self.ws, self.timeout_s)
            if msg["type"] == "websocket.close":
                raise AssertionError(f"the server closed the socket ({msg}) after {sent!r:.300}")
            if msg.get("bytes") is not None:
                Frame.decode(msg["bytes"])  # a well-formed image frame
                continue
            text = msg["text"]
            check_reply(200, text, sent)
            event = json.loads(text)
            assert event.get("type") in SERVER_EVENTS, (event, sent)
            if event["type"] == "error":
                assert event["code"] != "internal", f"{event} after {sent!r:.300}"
                if probe in event["message"]:
                    return events
            events.append(event)
        raise AssertionError(f"no reply to the probe after {sent!r:.300}")


@pytest.fixture(scope="module")
def socket(target: Target) -> Iterator[Socket]:
    s = Socket(target, target.sid)
    s.send(json.dumps({"type": "random_face", "seed": 1}))  # a latent to edit
    s.sync("random_face")
    yield s
    s.close()


def _has_non_finite(text: str) -> bool:
    """Whether ``text`` is JSON holding NaN or an infinity (as Python's parser reads it)."""
    try:
        stack = [json.loads(text)]
    except (ValueError, RecursionError):
        return False
    while stack:  # no recursion: the value may be nested deeply
        v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            return True
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def test_fuzz_websocket_messages(target: Target, socket: Socket) -> None:
    @settings(FUZZ, max_examples=WS_MESSAGE_CASES)
    @given(message=WS_MESSAGE)
    def run(message: str | bytes) -> None:
        target.counts["ws"] += 1
        socket.send(message)
        events = socket.sync(message)
        if isinstance(message, str) and _has_non_finite(message):  # NaN, Infinity: refused
            # The handler's own replies come before the probe's; the worker's codes differ.
            refusals = [e for e in events if e["type"] == "error" and e["code"] in REFUSALS]
            assert refusals, (message[:200], events[:3])

    run()
    assert target.counts["ws"] >= WS_MESSAGE_CASES
    socket.send(json.dumps({"type": "render_edit", "scales": {"smile": 1.0}}))
    events = socket.sync("a valid edit after the fuzz")
    assert events[0]["type"] == "queued"  # the socket, the worker and the model still work
    assert target.client.app.state.worker.alive
    assert target.client.get("/healthz").status_code == 200


@st.composite
def handshake(draw: st.DrawFn, t: Target) -> tuple[str, dict[str, str]]:
    session = draw(st.one_of(st.just(t.sid), HOSTILE_IDS, st.just("")))
    params = f"session={url_quote(session)}"
    if draw(st.booleans()):
        params += "&token=" + url_quote(draw(TEXT)[:200])
    headers = {}
    if draw(st.booleans()):
        headers["origin"] = draw(
            st.sampled_from(["http://testserver", "http://evil.example", "null", "", "http://[::1"])
        )
    return f"/api/ws?{params}", headers


def test_fuzz_websocket_handshake(target: Target) -> None:
    @settings(FUZZ, max_examples=WS_HANDSHAKE_CASES)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        url, headers = data.draw(handshake(target))
        target.counts["handshake"] += 1
        try:
            with target.client.websocket_connect(url, headers=headers) as ws:
                msg = ws.receive()
                if msg["type"] == "websocket.close":
                    assert msg["code"] in (4401, 4403, 4404), (url, headers, msg)
                    return
                assert json.loads(msg["text"])["type"] == "hello", (url, headers, msg)
        except WebSocketDisconnect as e:  # refused before or right after the handshake
            assert e.code in (4401, 4403, 4404), (url, headers, e.code)

    run()
    assert target.client.app.state.worker.alive
    assert target.client.get("/healthz").status_code == 200


# ------------------------------------------------------------------------------------------
# The Models dialog's routes on a server that installs (the main target refuses installs: it
# answers the non-loopback name "testserver" without a token). Its registry points at a local
# server that answers 404, so no install downloads anything; uploads are converted (and fail).

MODEL_CASES = 400
CHECKPOINT_BODIES = st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda b: b"\x80" + b, st.binary(max_size=512)),  # a pickle's first byte
    st.builds(lambda b: b"PK\x03\x04" + b, st.binary(max_size=512)),  # a zip's
    st.builds(lambda b: b"\x80\x02\x8a" + b, st.binary(max_size=512)),  # legacy torch.save
    damaged_image(),
)


@st.composite
def model_request(draw: st.DrawFn) -> dict[str, Any]:
    route = draw(st.sampled_from([r for r in HTTP_ROUTES if r["path"].startswith("/api/models")]))
    model = draw(st.one_of(st.sampled_from(MODEL_IDS), HOSTILE_IDS))
    path = route["path"].format(model_id=url_quote(model))
    other = st.sampled_from(["GET", "POST", "PUT", "DELETE"])
    method = draw(st.one_of(st.just(route["method"]), st.just(route["method"]), other))
    req: dict[str, Any] = {"method": method, "url": path, "headers": {}}
    if route["upload"]:
        new = st.sampled_from(["new-model", "m.1", "m_2", "tiny", "Bad ID"])
        model = draw(st.one_of(new, new, new, st.just(model)))
        query = {"id": model, "filename": draw(st.one_of(st.just("x.pkl"), TEXT))[:300]}
        keep = draw(st.sampled_from([["id"], ["id", "filename"], ["id", "filename"], []]))
        path += "?" + "&".join(f"{k}={url_quote(query[k])}" for k in keep)
        req["url"] = path
        req["content"] = draw(CHECKPOINT_BODIES)
        ctype = ["application/octet-stream", "", "multipart/form-data; boundary=x"]
        req["headers"]["content-type"] = draw(st.sampled_from(ctype))
    elif method == "POST":
        named = shaped({"name": st.sampled_from(["tiny-ffhq", "e4e-tiny", "nope"])})
        body = draw(st.one_of(st.builds(to_json, named), st.builds(to_json, named), BODY))
        if body is not None:
            req["content"] = (
                body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
            )
            req["headers"]["content-type"] = "application/json"
    return req


def test_fuzz_model_routes_on_a_server_that_installs(app_models: Path, tmp_path: Path) -> None:
    import shutil
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    models = tmp_path / "models"
    shutil.copytree(app_models / "tiny", models / "tiny")
    shutil.copytree(app_models / "tiny-b", models / "tiny-b")
    empty = tmp_path / "empty"
    empty.mkdir()

    class NotFound(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, directory=str(empty), **kw)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_port}"
    file = {"role": "checkpoint", "file": "x.pkl", "url": f"{base}/x.pkl", "size": 100}
    registry = {
        "entries": {
            "tiny-ffhq": {"kind": "generator", "title": "t", "resolution": 32, "files": [file]},
            "e4e-tiny": {
                "kind": "directions",
                "title": "d",
                "applies_to": ["tiny"],
                "files": [{**file, "role": "direction", "name": "e4e-x", "file": "d.pt"}],
            },
        }
    }
    (models / "registry.json").write_text(json.dumps(registry))
    s = settings_for(models, tmp_path / "data", max_checkpoint_bytes=100_000).model_copy(
        update={"allowed_hosts": ["127.0.0.1"]}
    )
    counts: Counter[str] = Counter()
    try:
        with TestClient(
            create_app(s), base_url="http://127.0.0.1", raise_server_exceptions=False
        ) as c:
            assert c.get("/api/models").json()["can_install"]

            @settings(FUZZ, max_examples=MODEL_CASES)
            @given(req=model_request())
            def run(req: dict[str, Any]) -> None:
                r = c.request(**req)
                counts[f"{req['method']} {r.status_code}"] += 1
                check_reply(r.status_code, r.text, {k: str(v)[:200] for k, v in req.items()})

            run()
            print("model route cases:", dict(sorted(counts.items())))  # shown with pytest -s
            for _ in range(600):  # the last install ends (a 404, a file that does not convert)
                if c.get("/api/models").json()["install"] is None:
                    break
                time.sleep(0.05)
            assert c.get("/api/models").json()["install"] is None
            assert counts["POST 202"] > 0  # some installs and uploads did start
            assert c.app.state.worker.alive and c.get("/healthz").status_code == 200
    finally:
        httpd.shutdown()
        httpd.server_close()
    names = sorted(p.name for p in models.iterdir())
    assert names == [".downloads", "registry.json", "tiny", "tiny-b"]  # nothing half-made
    assert not any((models / ".downloads" / "uploads").iterdir())


# ------------------------------------------------------------------------------------------
# Defects the fuzz found (issue 18), each kept as a test of its own: 500s from FastAPI's 422
# echoing undecodable bodies, deep JSON ending the socket, an echoed lone surrogate stopping
# the sender, an unparsable Origin failing the handshake.


def test_json_routes_answer_undecodable_or_non_finite_bodies_with_422(target: Target) -> None:
    crop = f"/api/sessions/{target.sid}/uploads/{target.items[0]}/crop"
    for url in ("/api/sessions", crop):
        for body, ctype in [
            (b"\x80", "text/plain"),
            (b"Infinity", "application/json"),
            (b'{"left": NaN, "top": 0, "size": 8}', "application/json"),
        ]:
            r = target.client.post(url, content=body, headers={"content-type": ctype})
            check_reply(r.status_code, r.text, (url, body))


def test_deeply_nested_json_gets_an_error_and_the_socket_lives(target: Target) -> None:
    s = Socket(target, target.other_sid, timeout_s=3.0)
    try:
        for text in (deep_nesting(100_000), '{"type": "commit", "scales": ' + "[" * 5000 + "}"):
            s.send(text)
            s.sync(text[:40])
    finally:
        s.close()


def test_a_job_id_with_a_lone_surrogate_gets_an_error_and_the_socket_lives(
    target: Target,
) -> None:
    s = Socket(target, target.other_sid, timeout_s=3.0)
    try:
        for kind in ("cancel", "accept"):
            s.send(json.dumps({"type": kind, "job": "\ud800"}))
            events = s.sync(kind)
            assert events and events[0]["code"] == "invalid", events  # not a job id: not echoed
    finally:
        s.close()


def test_an_unparsable_origin_is_refused_with_4403(target: Target) -> None:
    with pytest.raises(WebSocketDisconnect) as refused:
        url = f"/api/ws?session={target.sid}"
        with target.client.websocket_connect(url, headers={"origin": "http://[::1"}) as ws:
            ws.receive_json()
    assert refused.value.code == 4403
