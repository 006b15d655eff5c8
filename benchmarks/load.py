"""Load on the web app: many websockets at once against a real server.

Starts ``stylelens serve`` (embedded model, a temporary data dir) as ``benchmarks/app.py``
does, or uses ``--url``; then opens ``--clients`` websockets, one session each, for
``--duration`` seconds:

* ``--inverters`` sessions invert: upload a photo, run an inversion of ``--steps`` steps, again
  until the time is up;
* one session bursts: it sends ``--burst`` ``random_face`` at once, waits for all of them to
  end, and again (at most every 10 s); its own queue is bounded, so it is told ``busy``, and
  nobody else may be;
* the others edit as a person would: a random face, then slider moves (``render_edit``, each
  waiting for its frame), now and then a new random face or a commit, a pause of 0 to
  2 x ``--think`` seconds between actions.

Reports latency p50/p95 per request kind, errors by code and by role, misrouted frames (a frame
whose job belongs to another session: must be 0), frames of jobs no session asked for, and the
server's resident memory (RSS) before the load, at its peak and after the sockets closed.

    OMP_NUM_THREADS=2 python benchmarks/load.py --write-docs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from app import Session, face_png, pct, serve, wait_up
from common import machine, write_docs

from stylelens.sessions.protocol import Frame

TIMEOUT_S = 60.0  # a request unanswered this long counts as a timeout


@dataclass
class Stats:
    latency: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)  # (role, code)
    owner: dict[str, str] = field(default_factory=dict)  # job id -> session
    steps: dict[str, int] = field(default_factory=dict)  # inversion job -> last step reported
    burst: Counter[str] = field(default_factory=Counter)  # the burster's: sent, done, error
    frames: int = 0
    misrouted: int = 0
    unknown: int = 0


class Client:
    """One session's websocket, one request at a time, checking every frame it receives."""

    def __init__(self, s: Session, role: str, stats: Stats) -> None:
        self.s, self.role, self.stats = s, role, stats
        self.mine: set[str] = set()

    async def recv(self, deadline: float) -> Frame | dict[str, Any]:
        msg = await asyncio.wait_for(self.s.ws.recv(), max(0.0, deadline - time.perf_counter()))
        if isinstance(msg, str):
            event: dict[str, Any] = json.loads(msg)
            if event["type"] == "error":
                self.stats.errors[self.role, event["code"]] += 1
            return event
        frame = Frame.decode(msg)
        self.stats.frames += 1
        if frame.job not in self.mine:
            if self.stats.owner.get(frame.job, self.s.sid) != self.s.sid:
                self.stats.misrouted += 1
            else:
                self.stats.unknown += 1
        return frame

    async def request(
        self, msg: dict[str, Any], kind: str, *, stop_at: float | None = None
    ) -> float | None:
        """Send ``msg`` and wait for its job's end (a render: its frame); the seconds it took,
        or None if it was refused, failed or cancelled. A job still running at ``stop_at`` is
        cancelled; ``TIMEOUT_S`` without a word about it is a timeout."""
        t0 = time.perf_counter()
        deadline = t0 + TIMEOUT_S
        await self.s.send(msg)
        job = None
        while True:
            if stop_at is not None and job is not None and time.perf_counter() > stop_at:
                await self.s.send({"type": "cancel", "job": job})
                stop_at = None
            try:
                item = await self.recv(min(deadline, stop_at or deadline))
            except TimeoutError:
                if stop_at is not None and time.perf_counter() >= stop_at:
                    continue  # time to cancel it
                self.stats.errors[self.role, "timeout (client)"] += 1
                return None
            if isinstance(item, Frame):
                if item.job == job:
                    deadline = time.perf_counter() + TIMEOUT_S
                    if kind == "render":
                        break
                continue
            kind_of, job_of = item["type"], item.get("job")
            if kind_of == "queued" and item["kind"] == kind and job is None:
                job = item["job"]
                self.mine.add(job)
                self.stats.owner[job] = self.s.sid
            elif kind_of == "progress" and job_of == job:
                deadline = time.perf_counter() + TIMEOUT_S
                self.stats.steps[job] = int(item["step"])
            elif kind_of == "error" and job_of in (None, job):
                return None  # refused (no job id) or this job failed
            elif kind_of in ("done", "cancelled") and job_of == job:
                if kind_of == "cancelled":
                    return None
                break
        took = time.perf_counter() - t0
        self.stats.latency.setdefault(kind, []).append(took)
        return took


async def inverter(c: Client, seed: int, steps: int, until: float) -> None:
    photo = face_png(seed)
    while time.perf_counter() < until:
        await c.s.upload(photo)
        await c.request({"type": "start_inversion", "steps": steps}, "inversion", stop_at=until)


async def burster(c: Client, n: int, until: float) -> None:
    """``n`` random faces at once every 10 s; each ends in ``done`` or in an error."""
    while time.perf_counter() < until:
        t0 = time.perf_counter()
        for i in range(n):
            await c.s.send({"type": "random_face", "seed": i})
        c.stats.burst["sent"] += n
        ended = 0
        while ended < n:
            try:
                item = await c.recv(t0 + TIMEOUT_S)
            except TimeoutError:
                c.stats.errors[c.role, "timeout (client)"] += n - ended
                break
            if isinstance(item, Frame):
                continue
            if item["type"] == "queued":
                c.mine.add(item["job"])
                c.stats.owner[item["job"]] = c.s.sid
            if item["type"] in ("done", "error"):
                ended += 1
                c.stats.burst[item["type"]] += 1
        await asyncio.sleep(max(0.0, t0 + 10 - time.perf_counter()))


async def editor(
    c: Client,
    sliders: dict[str, tuple[float, float]],
    rng: random.Random,
    think: float,
    until: float,
) -> None:
    await c.request({"type": "random_face", "seed": rng.randrange(10**6)}, "random")
    while time.perf_counter() < until:
        await asyncio.sleep(rng.uniform(0, 2 * think))
        r = rng.random()
        name = rng.choice(sorted(sliders))
        scales = {name: rng.uniform(*sliders[name])}
        if r < 0.1:
            await c.request({"type": "random_face", "seed": rng.randrange(10**6)}, "random")
        elif r < 0.15:
            await c.request({"type": "commit", "scales": scales}, "commit")
        else:
            await c.request({"type": "render_edit", "scales": scales}, "render")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def sample_rss(pid: int, peak: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss_mb(pid))
        await asyncio.sleep(0.5)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    stats = Stats()
    rng = random.Random(0)
    with serve(args.url) as (url, server):
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            await wait_up(http)
            model = (await http.get("/api/model")).json()
            sliders = {d["name"]: tuple(d["slider"]) for d in model["directions"]}
            ws_base = url.replace("http", "ws", 1)
            pid = server.pid if server else None
            rss0 = rss_mb(pid) if pid else float("nan")
            clients = []
            for i in range(args.clients):
                s = Session(http, ws_base)
                await s.open()
                role = (
                    "inverter"
                    if i < args.inverters
                    else "burster"
                    if i == args.inverters
                    else "editor"
                )
                clients.append(Client(s, role, stats))
            peak, stop = [rss0], asyncio.Event()
            sampler = asyncio.create_task(sample_rss(pid, peak, stop)) if pid else None
            t0 = time.perf_counter()
            until = t0 + args.duration
            tasks = []
            for i, c in enumerate(clients):
                if c.role == "inverter":
                    tasks.append(inverter(c, 900_200 + i, args.steps, until))
                elif c.role == "burster":
                    tasks.append(burster(c, args.burst, until))
                else:
                    sub = random.Random(rng.randrange(2**32))
                    tasks.append(editor(c, sliders, sub, args.think, until))
            outcome = await asyncio.gather(*tasks, return_exceptions=True)
            wall = time.perf_counter() - t0
            closed = Counter(type(e).__name__ for e in outcome if isinstance(e, BaseException))
            for c in clients:
                await c.s.ws.close()
            await asyncio.sleep(3)  # the server drops the sessions' jobs and models' caches
            stop.set()
            if sampler:
                await sampler
            rss1 = rss_mb(pid) if pid else float("nan")
    return {
        "model": model["model"],
        "stats": stats,
        "wall": wall,
        "crashed": closed,
        "rss": (rss0, peak[0], rss1),
    }


def report(r: dict[str, Any], args: argparse.Namespace) -> str:
    st: Stats = r["stats"]
    m = r["model"]
    editors = args.clients - args.inverters - 1
    lines = [
        "### Load: many websockets at once (`benchmarks/load.py`)",
        "",
        f"Measured {args.date} on {machine()}, one run against one server (model {m['id']}, "
        f"{m['device']}, uvicorn subprocess). {args.clients} websockets for "
        f"{args.duration:.0f} s ({r['wall']:.0f} s with the requests in flight at the end): "
        f"{args.inverters} sessions inverting ({args.steps} steps each, again when done), one "
        f"sending {args.burst} random faces at once (again when all have ended, at most every "
        f"10 s), {editors} editing (a random "
        f"face, then slider moves, now and then a random face (10%) or a commit (5%), "
        f"0-{2 * args.think:.1f} s apart; each request waits for its answer).",
        "",
        "| request | count | p50 | p95 |",
        "|---|---|---|---|",
    ]
    for kind in ("render", "random", "commit", "inversion"):
        xs = st.latency.get(kind, [])
        if xs:
            lines.append(
                f"| {kind} | {len(xs)} | {pct(xs, 0.5) * 1000:.0f} ms | "
                f"{pct(xs, 0.95) * 1000:.0f} ms |"
            )
    errors = ", ".join(f"{code} x{n} ({role})" for (role, code), n in sorted(st.errors.items()))
    rss0, peak, rss1 = r["rss"]
    steps_by_session: Counter[str] = Counter()
    for job, step in st.steps.items():
        steps_by_session[st.owner[job]] += step
    crashed = ", ".join(f"{k} x{n}" for k, n in r["crashed"].items()) or "none"
    lines += [
        "",
        "| check | value |",
        "|---|---|",
        f"| errors by code (role) | {errors or 'none'} |",
        f"| inversion steps in the {args.duration:.0f} s, per inverting session | "
        f"{', '.join(str(n) for n in steps_by_session.values()) or '-'} |",
        f"| the bursting session's random faces: sent / done / refused | "
        f"{st.burst['sent']} / {st.burst['done']} / {st.burst['error']} |",
        f"| frames received | {st.frames} |",
        f"| misrouted frames (job of another session; must be 0) | {st.misrouted} |",
        f"| frames of a job no session asked for | {st.unknown} |",
        f"| clients that ended with an exception | {crashed} |",
        f"| server RSS before / peak / after | {rss0:.0f} / {peak:.0f} / {rss1:.0f} MB |",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=None, help="use a running server instead of starting one")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--inverters", type=int, default=2)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--burst", type=int, default=20)
    ap.add_argument("--think", type=float, default=0.3, help="mean pause between actions (s)")
    ap.add_argument("--date", default=time.strftime("%Y-%m-%d"), help="for the docs")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    text = report(asyncio.run(main_async(args)), args)
    print(text)
    if args.write_docs:
        write_docs("app-load", text)
        print(f"wrote {Path('docs/performance.md')} (app-load)")


if __name__ == "__main__":
    main()
