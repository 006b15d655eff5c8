"""Does rendering several sessions' edits, or running their inversion steps, in one generator
call pay on this machine?

The worker renders one session's edit per turn. If renders of sessions waiting at the same
time ran as one batched synthesis, each would cost ``time(batch) / batch``. This measures that
for batch 1, 2, 4 and 8 with the embedded model (fresh latents per call, the latents' own
noise maps as a session's edit uses them), medians of interleaved repeats, and says which
batch sizes pay (goal: per-render time at least 20 % below batch 1's, enough to be worth the
scheduling it needs).

An inversion step is a forward and a backward pass: ``--part steps`` measures that (synthesis
at full resolution and at the preview heads' 64 px stage, an L2 loss against a target per
session, gradients to each session's ws), per session, for the same batch sizes.

    OMP_NUM_THREADS=2 python benchmarks/batching.py --write-docs      # ~2 min, 2 cores
``--part app`` measures what a user feels: N sessions (1, 4, 8) dragging sliders at once
against a real ``stylelens serve`` (each sends its next ``render_edit`` as soon as the frame of
the last arrives), with ``STYLELENS_RENDER_BATCH`` 1 (batching off) and 4 (the default): edits
per second of all sessions together and the latency of each edit.

    OMP_NUM_THREADS=2 python benchmarks/batching.py --part steps --write-docs
``--part inversions``: N sessions (1, 4, 8) starting a progressive inversion at once against a
real ``stylelens serve``, with ``STYLELENS_STEP_BATCH`` 1 (off) and 4 (the default): the
inversion steps per second of all of them together, and how long the last one took.

    OMP_NUM_THREADS=2 python benchmarks/batching.py --part app --write-docs   # ~2 min
    OMP_NUM_THREADS=2 python benchmarks/batching.py --part inversions --write-docs
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import statistics
import time
from typing import Any

import torch
from common import ROOT, machine, write_docs

from stylelens.checkpoints import load_generator, model_dir_for
from stylelens.render import z_from_seed

BATCHES = (1, 2, 4, 8)
PAYS = 0.8  # a batch pays when each render costs at most this share of a single render


@torch.no_grad()
def measure(model: str, repeats: int) -> dict[int, float]:
    G, _ = load_generator(model_dir_for(ROOT / "models", model))
    G.eval().requires_grad_(False)
    ws_all = torch.cat([G.mapping(z_from_seed(s, G.z_dim).float()) for s in range(max(BATCHES))])
    for b in BATCHES:  # warm-up, every shape once
        G.synthesis(ws_all[:b])
    times: dict[int, list[float]] = {b: [] for b in BATCHES}
    for r in range(repeats):
        for b in BATCHES if r % 2 == 0 else BATCHES[::-1]:
            ws = ws_all[:b] + 0.01 * r  # a new edit each call
            t0 = time.perf_counter()
            G.synthesis(ws)
            times[b].append((time.perf_counter() - t0) / b)
    return {b: statistics.median(t) * 1000 for b, t in times.items()}


def measure_steps(model: str, repeats: int, resolution: int | None) -> dict[int, float]:
    """Forward + backward per session (ms) for each batch size; ``resolution``: stop the
    synthesis there (a progressive inversion's intermediate stage), None for the full one."""
    G, _ = load_generator(model_dir_for(ROOT / "models", model))
    G.eval().requires_grad_(False)
    with torch.no_grad():
        ws_all = torch.cat(
            [G.mapping(z_from_seed(s, G.z_dim).float()) for s in range(max(BATCHES))]
        )

    def step(ws: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        ws = ws.clone().requires_grad_(True)
        res = resolution or G.img_resolution
        img = G.synthesis.run_until(ws, res).img
        t = target if target is not None else img.detach() * 0.5
        loss = (img - t).square().flatten(1).mean(1).sum()  # each session's loss, summed
        loss.backward()
        assert ws.grad is not None
        return img.detach()

    targets = {b: step(ws_all[:b], None) for b in BATCHES}  # warm-up, every shape once
    times: dict[int, list[float]] = {b: [] for b in BATCHES}
    for r in range(repeats):
        for b in BATCHES if r % 2 == 0 else BATCHES[::-1]:
            t0 = time.perf_counter()
            step(ws_all[:b] + 0.01 * r, targets[b])
            times[b].append((time.perf_counter() - t0) / b)
    return {b: statistics.median(t) * 1000 for b, t in times.items()}


def table(per: dict[int, float], what: str) -> str:
    rows = [
        f"| {b} | {per[b]:.1f} ms | {per[b] / per[1]:.2f}x | "
        f"{'yes' if per[b] <= PAYS * per[1] else 'no'} |"
        for b in BATCHES
    ]
    return f"| batch | {what} | vs batch 1 | pays (<= 0.8x) |\n|---|---|---|---|\n" + "\n".join(
        rows
    )


async def sliders_at_once(url: str, n: int, window_s: float) -> dict[str, Any]:
    """``n`` sessions editing back to back for ``window_s``: edits/s and latency."""
    import httpx
    from app import Session, pct, slider_client, wait_up

    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        await wait_up(http)
        names = [d["name"] for d in (await http.get("/api/model")).json()["directions"]][:7]
        sessions = [Session(http, url.replace("http", "ws", 1)) for _ in range(n)]
        for i, c in enumerate(sessions):
            await c.open()
            await c.send({"type": "random_face", "seed": i})
            await c.until("done", "random")
        warm = time.perf_counter() + 1.0  # every session's first edits, not counted
        await asyncio.gather(*(slider_client(c, names, warm) for c in sessions))
        lats = await asyncio.gather(
            *(slider_client(c, names, time.perf_counter() + window_s) for c in sessions)
        )
        for c in sessions:
            await c.ws.close()
    lat = [x for xs in lats for x in xs]
    return {"edits_per_s": len(lat) / window_s, "p50": pct(lat, 0.5), "p95": pct(lat, 0.95)}


async def inversions_at_once(url: str, n: int, steps: int) -> dict[str, Any]:
    """``n`` sessions upload a face and start a progressive inversion at the same moment."""
    import httpx
    from app import Session, face_png, wait_up

    async with httpx.AsyncClient(base_url=url, timeout=300) as http:
        await wait_up(http)
        sessions = [Session(http, url.replace("http", "ws", 1)) for _ in range(n)]
        for i, c in enumerate(sessions):
            await c.open()
            await c.upload(face_png(700_000 + i))

        async def one(c: Session) -> float:
            t0 = time.perf_counter()
            await c.send({"type": "start_inversion", "engine": "progressive", "steps": steps})
            await c.until("done", "inversion")
            return time.perf_counter() - t0

        t0 = time.perf_counter()
        walls = await asyncio.gather(*(one(c) for c in sessions))
        wall = time.perf_counter() - t0
        for c in sessions:
            await c.ws.close()
    return {"steps_per_s": n * steps / wall, "slowest_s": max(walls)}


def off_and_on(
    setting: str, clients: list[int], warm: Any, measure: Any
) -> dict[tuple[int, int], dict[str, Any]]:
    """``measure(url, n)`` for each number of sessions against a ``stylelens serve`` with the
    environment variable ``setting`` at 1 (batching off) and 4 (the default), after
    ``warm(url)``; results by (batch, n)."""
    from app import serve

    results: dict[tuple[int, int], dict[str, Any]] = {}
    for batch in (1, 4):
        os.environ[setting] = str(batch)
        with serve(None) as (url, _):
            warm(url)
            for n in clients:
                results[batch, n] = measure(url, n)
                print(batch, n, results[batch, n], flush=True)
    return results


def part_inversions(args: argparse.Namespace) -> str:
    results = off_and_on(
        "STYLELENS_STEP_BATCH",
        args.clients,
        lambda url: asyncio.run(inversions_at_once(url, 2, 10)),  # the engines' first calls
        lambda url, n: asyncio.run(inversions_at_once(url, n, args.steps)),
    )
    rows = []
    for n in args.clients:
        off, on = results[1, n], results[4, n]
        rows.append(
            f"| {n} | {off['steps_per_s']:.1f} | {on['steps_per_s']:.1f} | "
            f"{on['steps_per_s'] / off['steps_per_s']:.2f}x | {off['slowest_s']:.1f} s | "
            f"{on['slowest_s']:.1f} s |"
        )
    return (
        f"Measured {datetime.date.today()} on {machine()}, model {args.model} in `stylelens "
        f"serve`, `python benchmarks/batching.py --part inversions --write-docs` (progressive "
        f"engine, {args.steps} steps each, all started at once).\n\n"
        "| sessions inverting | steps/s, batch 1 | steps/s, batch 4 | gain | last done, batch 1 "
        "| last done, batch 4 |\n|---|---|---|---|---|---|\n" + "\n".join(rows)
    )


def part_app(args: argparse.Namespace) -> str:
    # Frames as often as 50 a second: at the default 100 ms interval a session editing back to
    # back waits for the frame-rate cap, not for the renders.
    os.environ["STYLELENS_PREVIEW_INTERVAL_MS"] = "20"
    results = off_and_on(
        "STYLELENS_RENDER_BATCH",
        args.clients,
        lambda url: None,
        lambda url, n: asyncio.run(sliders_at_once(url, n, args.window)),
    )
    rows = []
    for n in args.clients:
        off, on = results[1, n], results[4, n]
        rows.append(
            f"| {n} | {off['edits_per_s']:.1f} | {on['edits_per_s']:.1f} | "
            f"{on['edits_per_s'] / off['edits_per_s']:.2f}x | "
            f"{1000 * off['p50']:.0f} / {1000 * off['p95']:.0f} ms | "
            f"{1000 * on['p50']:.0f} / {1000 * on['p95']:.0f} ms |"
        )
    return (
        f"Measured {datetime.date.today()} on {machine()}, model {args.model} in `stylelens "
        f"serve`, `python benchmarks/batching.py --part app --write-docs` ({args.window:.0f} s "
        "per row; each session sends its next edit when the last one's frame is in; "
        "`STYLELENS_PREVIEW_INTERVAL_MS=20`, so that the renders and not the frame-rate cap "
        "are what is measured).\n\n"
        "| sessions dragging | edits/s, batch 1 | edits/s, batch 4 | gain | "
        "p50 / p95, batch 1 | p50 / p95, batch 4 |\n|---|---|---|---|---|---|\n" + "\n".join(rows)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="synthfaces-256")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--part", choices=("renders", "steps", "app", "inversions"), default="renders")
    ap.add_argument("--steps", type=int, default=100, help="inversions: steps of each")
    ap.add_argument(
        "--clients",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[1, 4, 8],
        help="app: numbers of sessions dragging sliders at once",
    )
    ap.add_argument("--window", type=float, default=10.0, help="app: seconds per row")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    if args.part in ("app", "inversions"):
        body = part_app(args) if args.part == "app" else part_inversions(args)
        print(body)
        if args.write_docs:
            write_docs(f"batching-{args.part}", body)
        return
    if args.part == "steps":
        full = measure_steps(args.model, args.repeats, None)
        stage = measure_steps(args.model, args.repeats, 64)
        body = (
            f"Measured {datetime.date.today()} on {machine()}, model {args.model}, "
            f"`python benchmarks/batching.py --part steps --write-docs` (forward + backward to "
            f"each session's ws, medians of {args.repeats} interleaved repeats).\n\n"
            f"Full resolution:\n\n{table(full, 'time per session step')}\n\n"
            f"At the 64 px stage (synthesis stopped there, as a progressive inversion's early "
            f"steps):\n\n{table(stage, 'time per session step')}"
        )
        print(body)
        if args.write_docs:
            write_docs("batching-steps", body)
        return
    per = measure(args.model, args.repeats)
    rows = [
        f"| {b} | {per[b]:.1f} ms | {per[b] / per[1]:.2f}x | "
        f"{'yes' if per[b] <= PAYS * per[1] else 'no'} |"
        for b in BATCHES
    ]
    body = (
        f"Measured {datetime.date.today()} on {machine()}, model {args.model}, "
        f"`python benchmarks/batching.py --write-docs` (medians of {args.repeats} interleaved "
        "repeats).\n\n| batch | time per render | vs batch 1 | pays (<= 0.8x) |\n"
        "|---|---|---|---|\n" + "\n".join(rows)
    )
    print(body)
    if args.write_docs:
        write_docs("batching", body)


if __name__ == "__main__":
    main()
