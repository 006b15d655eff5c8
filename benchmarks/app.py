"""The web app over a real websocket: what a user waits for.

Starts ``stylelens serve`` (embedded model, a temporary data dir) on a free port, or uses
``--url``; then, as a browser would (HTTP upload, websocket protocol v1):

* upload -> first preview frame: from the start of the upload POST to the first inversion frame;
* preview frames per second during the inversion (frames received / inversion wall time);
* slider move -> new frame latency: ``render_edit`` sent, its ``edit`` frame received (p50/p95);
* commit: ``commit`` sent -> ``done`` received (full-resolution PNG + latent written);
* ``--sessions`` concurrent sessions inverting at once: frames per session and the longest gap
  between two frames of one session;
* fairness (``--part fairness``): one inversion, ``--solo-window`` s alone, then next to N =
  ``--clients`` sessions that each send the next ``render_edit`` as soon as the frame of the
  last one arrives, ``--fair-window`` s: the inversion's step rate against its rate alone just
  before (goal: at least 1/(N+1) of it), and the edits' latency. The engine is
  ``--fair-engine`` (Adam: every step costs the same, where the progressive engine's first
  tenth of steps is far cheaper and would flatter a slow run).

    OMP_NUM_THREADS=2 python benchmarks/app.py --write-docs
    OMP_NUM_THREADS=2 python benchmarks/app.py --part fairness --write-docs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import websockets
from common import ROOT, machine, write_docs
from PIL import Image

from stylelens.data.synthfaces import render_face
from stylelens.sessions.protocol import Frame


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


async def render_once(s: Session, scales: dict[str, float]) -> float:
    """Send one ``render_edit``; seconds until its frame is in."""
    t0 = time.perf_counter()
    await s.send({"type": "render_edit", "scales": scales})
    queued, _ = await s.until("queued", "render")
    while True:  # the frame of this render
        msg = await s.ws.recv()
        if isinstance(msg, bytes) and Frame.decode(msg).job == queued["job"]:
            return time.perf_counter() - t0


async def sliders(s: Session, n: int, names: list[str], gap_s: float) -> list[float]:
    """Latency of ``n`` slider moves, ``gap_s`` apart (a hand dragging a slider sends one move
    per animation frame, and the server draws the latest; moves closer together than the
    preview interval would measure the frame-rate cap, not the render)."""
    lat = []
    for i in range(n):
        await asyncio.sleep(gap_s)
        lat.append(await render_once(s, {names[i % len(names)]: ((i % 7) - 3) * 0.5}))
    return lat


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


@contextlib.contextmanager
def serve(url: str | None) -> Iterator[tuple[str, subprocess.Popen[bytes] | None]]:
    """``url``, or ``stylelens serve`` (embedded model, a temporary data dir) started on a free
    port; yields the URL and the server process (None for a given URL)."""
    if url is not None:
        yield url, None
        return
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
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.terminate()
        server.wait(timeout=30)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with serve(args.url) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            await wait_up(http)
            model = (await http.get("/api/model")).json()
            names = [d["name"] for d in model["directions"]][:7] or ["none"]
            ws_base = url.replace("http", "ws", 1)
            if args.part == "fairness":
                return {"model": model["model"], "fairness": await fairness(http, ws_base, args)}
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
            fair = await fairness(http, ws_base, args) if args.part == "all" else None
    return {
        "model": model["model"],
        "one": one,
        "cold": cold,
        "slider_p50": pct(lat, 0.5),
        "slider_p95": pct(lat, 0.95),
        "commit_s": commit_s,
        "concurrent": conc,
        "fairness": fair,
    }


# fairness: one inversion next to N sliders --------------------------------------------------


async def slider_client(s: Session, names: list[str], until: float) -> list[float]:
    """Edits back to back until ``until``: the next ``render_edit`` once the last frame is in."""
    lat: list[float] = []
    while time.perf_counter() < until:
        i = len(lat)
        lat.append(await render_once(s, {names[i % len(names)]: ((i % 7) - 3) * 0.5}))
    return lat


async def step_times(s: Session, until: float) -> list[tuple[float, int]]:
    """(arrival time, step) of the inversion's ``progress`` events until ``until``."""
    seen: list[tuple[float, int]] = []
    while (left := until - time.perf_counter()) > 0:
        try:
            msg = await asyncio.wait_for(s.ws.recv(), left)
        except TimeoutError:
            break
        if isinstance(msg, str):
            event = json.loads(msg)
            if event["type"] == "error":
                raise RuntimeError(event)
            if event["type"] == "progress":
                seen.append((time.perf_counter(), int(event["step"])))
    return seen


async def fair_run(
    http: httpx.AsyncClient, ws_base: str, names: list[str], n: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One inversion: ``--solo-window`` s alone, then ``--fair-window`` s next to ``n`` slider
    sessions; its rate alone is measured just before, so a machine whose speed drifts (other
    people's jobs) moves both alike."""
    inv = Session(http, ws_base)
    await inv.open()
    await inv.upload(face_png(900_100))
    clients = [Session(http, ws_base) for _ in range(n)]
    for i, c in enumerate(clients):
        await c.open()
        await c.send({"type": "random_face", "seed": i})  # a latent to edit
        await c.until("done", "random")
    await inv.send({"type": "start_inversion", "engine": args.fair_engine, "steps": 1000})
    while (progress := (await inv.until("progress"))[0])["step"] < 5:
        pass  # running and warm (a server's first steps of an engine are slower): then measure
    s0 = progress["step"]
    alone = await step_times(inv, time.perf_counter() + args.solo_window)
    s1 = alone[-1][1] if alone else s0  # progress comes for every step (at most 10/s)
    until = time.perf_counter() + args.fair_window
    steps, *lats = await asyncio.gather(
        step_times(inv, until), *(slider_client(c, names, until) for c in clients)
    )
    # Cancelled, not just left: a session's inversion outlives its socket for a while (it may
    # reconnect), and would share the worker with the next row's.
    await inv.send({"type": "cancel", "job": progress["job"]})
    await inv.until("cancelled")
    for c in [inv, *clients]:
        await c.ws.close()
    s2 = steps[-1][1] if steps else s1
    lat = [x for xs in lats for x in xs]
    return {
        "n": n,
        "solo_rate": (s1 - s0) / args.solo_window,
        "steps": s2 - s1,
        "rate": (s2 - s1) / args.fair_window,
        "edits": len(lat),
        "p50": pct(lat, 0.5) if lat else None,
        "p95": pct(lat, 0.95) if lat else None,
    }


async def fairness(http: httpx.AsyncClient, ws_base: str, args: argparse.Namespace) -> list:
    model = (await http.get("/api/model")).json()
    names = [d["name"] for d in model["directions"]][:7] or ["none"]
    runs = []
    for n in args.clients:
        runs.append(await fair_run(http, ws_base, names, n, args))
    return runs


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


def report_fairness(r: dict[str, Any], args: argparse.Namespace) -> str:
    runs, m = r["fairness"], r["model"]
    lines = [
        "### One inversion next to sliders (`benchmarks/app.py --part fairness`)",
        "",
        f"Measured {args.date} on {machine()}, all rows in one run against one server "
        f"(model {m['id']}, {m['device']}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}"
        f"). Each row: one session inverts (engine {args.fair_engine}, steps of equal cost), "
        f"{args.solo_window:.0f} s alone, then {args.fair_window:.0f} s while N other sessions "
        "each send the next `render_edit` as soon as the frame of the last one arrives. The "
        "goal: the inversion keeps at least 1/(N+1) of its step rate alone.",
        "",
        "| sessions editing | steps/s alone | steps with N (in "
        f"{args.fair_window:.0f} s) | steps/s with N | share of the rate alone | goal | "
        "edits drawn | edit latency p50 / p95 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for x in runs:
        share, goal = x["rate"] / x["solo_rate"], 1 / (x["n"] + 1)
        lat = f"{x['p50'] * 1000:.0f} / {x['p95'] * 1000:.0f} ms" if x["p50"] is not None else "-"
        verdict = f">= {goal:.2f} {'met' if share >= goal else 'MISSED'}" if x["n"] else "-"
        lines.append(
            f"| {x['n']} | {x['solo_rate']:.2f} | {x['steps']} | {x['rate']:.2f} | "
            f"{share:.2f} | {verdict} | {x['edits']} | {lat} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=None, help="use a running server instead of starting one")
    ap.add_argument("--part", choices=("all", "basic", "fairness"), default="all")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--engine", default="progressive")
    ap.add_argument("--slider-moves", type=int, default=40)
    ap.add_argument("--slider-gap", type=float, default=0.15, help="seconds between moves")
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument(
        "--clients",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[0, 2, 5, 10],
        help="fairness: numbers of editing sessions next to the inversion, one row each",
    )
    ap.add_argument("--fair-window", type=float, default=15.0, help="fairness: seconds per row")
    ap.add_argument("--solo-window", type=float, default=5.0, help="fairness: seconds alone")
    ap.add_argument("--fair-engine", default="adam")
    ap.add_argument("--date", default=time.strftime("%Y-%m-%d"), help="for the docs")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    r = asyncio.run(main_async(args))
    texts = []
    if args.part != "fairness":
        texts.append(("app", report(r, args)))
    if args.part != "basic":
        texts.append(("app-fairness", report_fairness(r, args)))
    for section, text in texts:
        print(text)
        if args.write_docs:
            write_docs(section, text)
            print(f"wrote {Path('docs/performance.md')} ({section})")


if __name__ == "__main__":
    main()
