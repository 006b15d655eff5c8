"""The web app over a real websocket: what a user waits for.

Starts ``stylelens serve`` (embedded model, a temporary data dir) on a free port, or uses
``--url``; then, as a browser would (HTTP upload, websocket protocol v1):

* upload -> first preview frame: from the start of the upload POST to the first inversion frame;
* preview frames per second during the inversion (frames received / inversion wall time);
* slider move -> new frame latency: ``render_edit`` sent, its ``edit`` frame received (p50/p95);
* commit: ``commit`` sent -> ``done`` received (full-resolution PNG + latent written);
* ``--sessions`` concurrent sessions inverting at once: frames per session and the longest gap
  between two frames of one session.

    OMP_NUM_THREADS=2 python benchmarks/app.py --write-docs
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import websockets
from common import ROOT, machine, write_docs
from PIL import Image

from stylelens.api.protocol import Frame
from stylelens.data.synthfaces import render_face


def face_png(seed: int) -> bytes:
    img, _ = render_face(seed, 512)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_up(http: httpx.AsyncClient, timeout: float = 120) -> None:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            if (await http.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.3)
    raise RuntimeError("the server did not come up")


class Session:
    def __init__(self, http: httpx.AsyncClient, ws_base: str) -> None:
        self.http, self.ws_base = http, ws_base

    async def open(self) -> None:
        self.sid = (await self.http.post("/api/sessions")).json()["id"]
        self.ws = await websockets.connect(f"{self.ws_base}/api/ws?session={self.sid}")
        assert json.loads(await self.ws.recv())["type"] == "hello"

    async def upload(self, data: bytes) -> str:
        r = await self.http.post(
            f"/api/sessions/{self.sid}/uploads", files={"file": ("face.png", data, "image/png")}
        )
        r.raise_for_status()
        return str(r.json()["upload"])

    async def until(
        self, want: str, kind: str | None = None
    ) -> tuple[dict, list[tuple[float, Frame]]]:
        frames: list[tuple[float, Frame]] = []
        while True:
            msg = await self.ws.recv()
            if isinstance(msg, bytes):
                frames.append((time.perf_counter(), Frame.decode(msg)))
                continue
            event = json.loads(msg)
            if event["type"] == "error":
                raise RuntimeError(event)
            if event["type"] == want and (kind is None or event.get("kind") == kind):
                return event, frames

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(msg))


async def invert(s: Session, seed: int, steps: int, engine: str) -> dict[str, Any]:
    photo = face_png(seed)
    t0 = time.perf_counter()
    await s.upload(photo)
    await s.send({"type": "start_inversion", "engine": engine, "steps": steps})
    done, frames = await s.until("done", "inversion")
    t_end = time.perf_counter()
    times = [t for t, f in frames if f.kind == "inversion"]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return {
        "first_frame_s": times[0] - t0,
        "frames": len(times),
        "fps": (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0,
        "wall_s": t_end - t0,
        "max_gap_s": max(gaps) if gaps else 0.0,
        "psnr": done["metrics"].get("psnr", 0.0),
    }


async def sliders(s: Session, n: int, names: list[str], gap_s: float) -> list[float]:
    """Latency of ``n`` slider moves, ``gap_s`` apart (a hand dragging a slider sends one move
    per animation frame, and the server draws the latest; moves closer together than the
    preview interval would measure the frame-rate cap, not the render)."""
    lat = []
    for i in range(n):
        await asyncio.sleep(gap_s)
        t0 = time.perf_counter()
        amount = ((i % 7) - 3) * 0.5
        await s.send({"type": "render_edit", "scales": {names[i % len(names)]: amount}})
        queued, _ = await s.until("queued", "render")
        while True:  # the frame of this render
            msg = await s.ws.recv()
            if isinstance(msg, bytes) and Frame.decode(msg).job == queued["job"]:
                break
        lat.append(time.perf_counter() - t0)
    return lat


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    server = None
    url = args.url
    if url is None:
        port = free_port()
        data = tempfile.mkdtemp(prefix="stylelens-bench-")
        env = {**os.environ, "STYLELENS_DATA_DIR": data}
        server = subprocess.Popen(
            [sys.executable, "-m", "stylelens.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            await wait_up(http)
            model = (await http.get("/api/model")).json()
            names = [d["name"] for d in model["directions"]][:7] or ["none"]
            ws_base = url.replace("http", "ws", 1)
            s = Session(http, ws_base)
            await s.open()
            cold = await invert(s, 900_000, args.steps, args.engine)  # the server's first
            one = await invert(s, 900_001, args.steps, args.engine)
            await sliders(s, 3, names, args.slider_gap)  # warm-up
            lat = await sliders(s, args.slider_moves, names, args.slider_gap)
            t0 = time.perf_counter()
            await s.send({"type": "commit", "scales": {names[0]: 1.0}})
            await s.until("done", "commit")
            commit_s = time.perf_counter() - t0
            await s.ws.close()
            many = [Session(http, ws_base) for _ in range(args.sessions)]
            for m in many:
                await m.open()
            conc = await asyncio.gather(
                *(invert(m, 900_010 + i, args.steps, args.engine) for i, m in enumerate(many))
            )
            for m in many:
                await m.ws.close()
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    return {
        "model": model["model"],
        "one": one,
        "cold": cold,
        "slider_p50": pct(lat, 0.5),
        "slider_p95": pct(lat, 0.95),
        "commit_s": commit_s,
        "concurrent": conc,
    }


def report(r: dict[str, Any], args: argparse.Namespace) -> str:
    one, conc = r["one"], r["concurrent"]
    m = r["model"]
    lines = [
        "## Web app (`benchmarks/app.py`)",
        "",
        f"Machine: {machine()}. Model {m['id']} ({m['resolution']} px, {m['device']}), "
        f"engine {args.engine}, {args.steps} steps, server started by the script "
        "(uvicorn, one worker thread), client over a real websocket on 127.0.0.1.",
        "",
        "| measure | value | goal |",
        "|---|---|---|",
        f"| upload (POST of a 512 px PNG, alignment/crop) -> first preview frame | "
        f"{one['first_frame_s']:.2f} s (the server's first inversion: "
        f"{r['cold']['first_frame_s']:.2f} s) | <= 0.5 s |",
        f"| preview frames per second during inversion | {one['fps']:.1f} | >= 8 |",
        f"| slider move -> new frame, p50 / p95 ({args.slider_moves} moves, "
        f"{args.slider_gap * 1000:.0f} ms apart) | "
        f"{r['slider_p50'] * 1000:.0f} / {r['slider_p95'] * 1000:.0f} ms | p95 <= 150 ms |",
        f"| commit (full-resolution PNG + latent) | {r['commit_s'] * 1000:.0f} ms | |",
        f"| inversion wall time (upload to done), PSNR | {one['wall_s']:.1f} s, "
        f"{one['psnr']:.1f} dB | |",
        "",
        f"{len(conc)} sessions inverting at once (round robin, one step per turn):",
        "",
        "| session | first frame | frames | frames/s | longest gap | wall |",
        "|---|---|---|---|---|---|",
    ]
    for i, c in enumerate(conc):
        lines.append(
            f"| {i + 1} | {c['first_frame_s']:.2f} s | {c['frames']} | {c['fps']:.1f} | "
            f"{c['max_gap_s']:.2f} s | {c['wall_s']:.1f} s |"
        )
    lines += ["", reading(r)]
    return "\n".join(lines)


def reading(r: dict[str, Any]) -> str:
    one, conc = r["one"], r["concurrent"]
    return (
        "Reading: an engine step gives at most one frame, so the frame rate is the engine's "
        f"step rate ({one['fps']:.1f} frames/s; the 100 ms preview cap would allow "
        f"10/s). The {len(conc)} sessions share the one worker fairly: "
        f"{sum(c['fps'] for c in conc):.1f} frames/s in all, every session keeps receiving "
        "previews, its gap being one step of each other session."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=None, help="use a running server instead of starting one")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--engine", default="progressive")
    ap.add_argument("--slider-moves", type=int, default=40)
    ap.add_argument("--slider-gap", type=float, default=0.15, help="seconds between moves")
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    text = report(asyncio.run(main_async(args)), args)
    print(text)
    if args.write_docs:
        write_docs("app", text)
        print(f"wrote {Path('docs/performance.md')}")


if __name__ == "__main__":
    main()
