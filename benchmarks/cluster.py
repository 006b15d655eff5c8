"""Cluster mode's cost and what a second replica buys, over real websockets.

Three servers, one after another, on this machine (embedded model, a fresh data dir each):

* ``single``: ``stylelens serve`` (one process, the worker thread);
* ``cluster x1``: ``stylelens serve --cluster --replicas 1 --replica-cpus N`` (a local Ray
  instance: Serve's proxy, the app as the ingress deployment, one Models replica with all
  N cores);
* ``cluster x2``: ``--replicas 2 --replica-cpus N/2`` (two replicas sharing the same cores).

For each: one session alone (upload -> first frame, preview frames per second during an
inversion, slider move -> frame p50/p95), then ``--sessions`` sessions inverting at once
(wall time until all are done, inversion steps per second of all sessions together, the
slowest session's wall time, and misrouted frames: a frame on a socket whose session did not
start its job; the goal is 0).

    OMP_NUM_THREADS=2 python benchmarks/cluster.py --write-docs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from app import Session, face_png, free_port, pct, sliders, wait_up
from common import ROOT, machine, write_docs


@contextlib.contextmanager
def server(replicas: int, cpus: int) -> Iterator[str]:
    """A server on a free port: single process (``replicas`` 0) or a cluster application."""
    port = free_port()
    data = tempfile.mkdtemp(prefix="stylelens-bench-")
    cmd = [sys.executable, "-m", "stylelens.cli", "serve", "--port", str(port)]
    if replicas:
        cmd += ["--cluster", "--replicas", str(replicas)]
        cmd += ["--replica-cpus", str(max(1, cpus // replicas))]
    env = {**os.environ, "STYLELENS_DATA_DIR": data}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGINT)  # the cluster deletes its application and stops Ray
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if replicas and (ray := shutil.which("ray")):
            subprocess.run([ray, "stop", "--force"], capture_output=True, check=False)
        shutil.rmtree(data, ignore_errors=True)


async def invert_tracked(s: Session, seed: int, steps: int, engine: str) -> dict[str, Any]:
    """One inversion: wall time, frames per second, and frames of a job this socket did not
    start (misrouted)."""
    await s.upload(face_png(seed))
    t0 = time.perf_counter()
    await s.send({"type": "start_inversion", "engine": engine, "steps": steps})
    queued, _ = await s.until("queued", "inversion")
    _, frames = await s.until("done", "inversion")
    wall = time.perf_counter() - t0
    times = [t for t, f in frames if f.kind == "inversion"]
    return {
        "wall_s": wall,
        "first_frame_s": times[0] - t0 if times else float("nan"),
        "fps": (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0,
        "misrouted": sum(f.job != queued["job"] for _, f in frames),
        "steps": steps,
    }


async def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=300) as http:
        await wait_up(http, timeout=300)
        model = (await http.get("/api/model")).json()
        names = [d["name"] for d in model["directions"]][:7] or ["none"]
        ws_base = url.replace("http", "ws", 1)
        s = Session(http, ws_base)
        await s.open()
        await invert_tracked(s, 800_000, 20, args.engine)  # warm: the first of each replica
        one = await invert_tracked(s, 800_001, args.steps, args.engine)
        await sliders(s, 3, names, args.slider_gap)
        lat = await sliders(s, args.slider_moves, names, args.slider_gap)
        await s.ws.close()
        many = [Session(http, ws_base) for _ in range(args.sessions)]
        for m in many:
            await m.open()
        t0 = time.perf_counter()
        runs = await asyncio.gather(
            *(invert_tracked(m, 800_010 + i, args.steps, args.engine) for i, m in enumerate(many))
        )
        wall = time.perf_counter() - t0
        for m in many:
            await m.ws.close()
    return {
        "one": one,
        "slider_p50": pct(lat, 0.5),
        "slider_p95": pct(lat, 0.95),
        "many_wall_s": wall,
        "many_steps_per_s": sum(r["steps"] for r in runs) / wall,
        "many_fps_median": pct([r["fps"] for r in runs], 0.5),
        "many_slowest_s": max(r["wall_s"] for r in runs),
        "misrouted": sum(r["misrouted"] for r in runs) + one["misrouted"],
    }


def report(rows: list[tuple[str, dict[str, Any]]], args: argparse.Namespace) -> str:
    base = rows[0][1]
    lines = [
        f"Measured {args.date} on {machine()}, model synthfaces-256, engine {args.engine}, "
        f"{args.steps} steps, `python benchmarks/cluster.py --write-docs` (one server at a "
        f"time on this machine; the cluster a local Ray instance).",
        "",
        "| server | frames/s (1 session) | first frame | slider p50 / p95 | "
        f"{args.sessions} sessions: all done | steps/s (all) | vs single | misrouted frames |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['one']['fps']:.1f} | {r['one']['first_frame_s']:.2f} s | "
            f"{1000 * r['slider_p50']:.0f} / {1000 * r['slider_p95']:.0f} ms | "
            f"{r['many_wall_s']:.1f} s | {r['many_steps_per_s']:.1f} | "
            f"{r['many_steps_per_s'] / base['many_steps_per_s']:.2f}x | {r['misrouted']} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--engine", default="adam", help="adam: every step costs the same")
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--slider-moves", type=int, default=30)
    ap.add_argument("--slider-gap", type=float, default=0.15)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument(
        "--servers", default="single,x1,x2", help="which to run: single, x1, x2 (comma list)"
    )
    ap.add_argument("--date", default=time.strftime("%Y-%m-%d"))
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    plan = {"single": ("single process", 0), "x1": ("cluster, 1 replica", 1),
            "x2": ("cluster, 2 replicas", 2)}  # fmt: skip
    rows = []
    for key in args.servers.split(","):
        name, replicas = plan[key]
        with server(replicas, args.cpus) as url:
            r = asyncio.run(measure(url, args))
        print(name, r, flush=True)
        rows.append((name, r))
    text = report(rows, args)
    print(text)
    if args.write_docs:
        write_docs("cluster", text)
        print(f"wrote {Path('docs/performance.md')} (cluster)")


if __name__ == "__main__":
    main()
