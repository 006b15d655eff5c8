"""The GPU path, measured: generator, progressive inversion, the app's previews and batching.

Every part runs on ``--device`` (default: cuda where there is one) with random weights of
FFHQ-1024's shape (config-f; ``--size`` smaller for a quick check on a CPU):

* ``generator``: synthesis forward / forward+backward, batch 1, in float32, bfloat16 autocast
  and compiled bfloat16 (``torch.compile``), medians after warm-up (goal on the H200: forward
  <= 10 ms in bfloat16);
* ``inversion``: the progressive engine (random preview heads, MS-SSIM perceptual loss) for
  ``--steps`` steps: first preview, steps per second, wall time (goal: 100 steps <= 5 s;
  NVIDIA's projector: about 75 s for 1,000 steps on a GPU of its time);
* ``app``: ``stylelens serve``'s app (TestClient, in process) on a random model of that shape:
  preview frames per second to one session during an inversion (``--preview-interval-ms``),
  and inversion steps per second of 1 and ``--sessions`` sessions inverting at once (goal: 8
  sessions keep >= 0.8 x 8 of one session's throughput);
* ``batching``: renders and inversion steps (forward+backward) of 1, 4, 8, 16 sessions as one
  generator call: time per session against batch 1.

    python benchmarks/gpu.py --out $OUT                      # on the GPU (gpu_check.sh runs it)
    python benchmarks/gpu.py --device cpu --size 64 --steps 10 --sessions 2   # a quick check here
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from common import machine, write_docs
from PIL import Image

from stylelens.networks.stylegan2 import Generator, GeneratorConfig

PARTS = ("generator", "inversion", "app", "batching")
BATCHES = (1, 4, 8, 16)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> dict:
    """First call, then the median of ``repeats`` after ``warmup`` more (seconds)."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    first = time.perf_counter() - t0
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return {"first_s": first, "median_s": statistics.median(times)}


def generator(size: int, device: torch.device) -> Generator:
    torch.manual_seed(0)
    return Generator(GeneratorConfig(img_resolution=size)).to(device).eval().requires_grad_(False)


def part_generator(args: argparse.Namespace, device: torch.device) -> list[dict]:
    G = generator(args.size, device)
    ws = G.mapping(torch.randn(1, G.z_dim, device=device)).detach()
    synth_c = torch.compile(G.synthesis)
    rows = []
    for mode in ("float32", "bfloat16", "compile-bfloat16"):
        synth = synth_c if mode.startswith("compile") else G.synthesis
        bf16 = mode.endswith("bfloat16")

        def fwd(synth: Any = synth, bf16: bool = bf16) -> torch.Tensor:
            with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
                return synth(ws)

        def fwd_bwd(synth: Any = synth, bf16: bool = bf16) -> None:
            w = ws.clone().requires_grad_(True)
            with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
                loss = synth(w).float().square().mean()
            loss.backward()

        row = {"mode": mode}
        for name, fn in (("fwd", fwd), ("fwd_bwd", fwd_bwd)):
            t = timed(fn, device, args.repeats, 3)
            row[f"{name}_ms"] = 1000 * t["median_s"]
            row[f"{name}_first_s"] = t["first_s"]
        print(row, flush=True)
        rows.append(row)
    return rows


def heads_and_loss(G: Generator, device: torch.device) -> tuple[Any, Any]:
    from stylelens.losses import load_perceptual
    from stylelens.networks.preview import PreviewHeads

    nowhere = Path(tempfile.mkdtemp())
    loss = load_perceptual("ms-ssim", models_dir=nowhere, model_dir=nowhere, device=device)
    return PreviewHeads(G).to(device).requires_grad_(False), loss


def part_inversion(args: argparse.Namespace, device: torch.device) -> dict:
    from stylelens.inversion import make_engine

    G = generator(args.size, device)
    heads, perceptual = heads_and_loss(G, device)
    with torch.no_grad():
        target = G.synthesis(G.mapping(torch.randn(1, G.z_dim, device=device))).clamp(-1, 1)
    results = []
    for _ in range(2):  # the first run pays the kernels' first calls; the second is reported
        engine, config = make_engine(
            "progressive", G, steps=args.steps, perceptual=perceptual, heads=heads
        )
        sync(device)
        t0 = time.perf_counter()
        state = engine.start(target, config)
        engine.step(state)
        sync(device)
        first = time.perf_counter() - t0
        while not state.done:
            engine.step(state)
        sync(device)
        wall = time.perf_counter() - t0
        results.append({"first_preview_s": first, "wall_s": wall, "steps_per_s": args.steps / wall})
    out = {"steps": args.steps, "cold": results[0], **results[1]}
    print(out, flush=True)
    return out


def write_random_model(root: Path, size: int) -> Path:
    """A model directory of that shape with random weights and random preview heads."""
    from stylelens.checkpoints.native import ModelCard, SourceInfo, save_model
    from stylelens.checkpoints.preview_heads import save_preview_heads
    from stylelens.networks.preview import PreviewHeads

    torch.manual_seed(0)
    cfg = GeneratorConfig(img_resolution=size)
    G = Generator(cfg)
    card = ModelCard(id="random-ffhq", name=f"random {size}", generator=cfg,
                     source=SourceInfo(format="native"))  # fmt: skip
    save_model(root / "random-ffhq", card, G.state_dict())
    save_preview_heads(root / "random-ffhq", PreviewHeads(G), {"steps": 0, "random": True})
    return root / "random-ffhq"


def part_app(args: argparse.Namespace, device: torch.device) -> dict:
    from fastapi.testclient import TestClient

    from stylelens.api.app import create_app
    from stylelens.sessions.protocol import Frame
    from stylelens.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="stylelens-gpu-"))
    write_random_model(tmp / "models", args.size)
    settings = Settings(
        models_dir=tmp / "models",
        default_model="random-ffhq",
        data_dir=tmp / "data",
        device=str(device),
        perceptual="ms-ssim",
        preview_interval_ms=args.preview_interval_ms,
        allowed_hosts=["testserver"],
        queue_per_session=8,
        step_batch=args.sessions,  # every session's step in one pass (the GPU's lever)
        render_batch=args.sessions,
    )
    buf = io.BytesIO()
    Image.new("RGB", (args.size, args.size), (120, 100, 90)).save(buf, "PNG")
    photo = buf.getvalue()

    def one(client: TestClient, out: list[dict]) -> None:
        sid = client.post("/api/sessions").json()["id"]
        files = {"file": ("face.png", photo, "image/png")}
        client.post(f"/api/sessions/{sid}/uploads", files=files).raise_for_status()
        with client.websocket_connect(f"/api/ws?session={sid}") as ws:
            ws.receive_json()
            t0 = time.perf_counter()
            ws.send_json({"type": "start_inversion", "engine": "progressive", "steps": args.steps})
            frames: list[float] = []
            while True:
                msg = ws.receive()
                if msg.get("bytes") is not None:
                    Frame.decode(msg["bytes"])
                    frames.append(time.perf_counter())
                    continue
                event = json.loads(msg["text"])
                if event["type"] == "error":
                    raise RuntimeError(event)
                if event["type"] == "done":
                    break
            wall = time.perf_counter() - t0
        fps = (len(frames) - 1) / (frames[-1] - frames[0]) if len(frames) > 1 else 0.0
        out.append({"wall_s": wall, "fps": fps, "frames": len(frames)})

    with TestClient(create_app(settings)) as client:
        warm: list[dict] = []
        one(client, warm)
        solo: list[dict] = []
        one(client, solo)
        many: list[dict] = []
        t0 = time.perf_counter()
        threads = [threading.Thread(target=one, args=(client, many)) for _ in range(args.sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    one_rate = args.steps / solo[0]["wall_s"]
    many_rate = args.steps * len(many) / wall
    out = {
        "preview_interval_ms": args.preview_interval_ms,
        "fps_one_session": solo[0]["fps"],
        "one_wall_s": solo[0]["wall_s"],
        "sessions": args.sessions,
        "steps_per_s_one": one_rate,
        "steps_per_s_many": many_rate,
        "many_vs_one": many_rate / one_rate,
        "fps_many_median": statistics.median(r["fps"] for r in many),
    }
    print(out, flush=True)
    return out


def part_batching(args: argparse.Namespace, device: torch.device) -> list[dict]:
    G = generator(args.size, device)
    with torch.no_grad():
        ws_all = G.mapping(torch.randn(max(BATCHES), G.z_dim, device=device))
    rows = []
    for b in BATCHES:
        ws = ws_all[:b]

        def render(ws: torch.Tensor = ws) -> None:
            with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=args.bf16):
                G.synthesis(ws)

        def step(ws: torch.Tensor = ws) -> None:
            w = ws.clone().requires_grad_(True)
            with torch.autocast(device.type, torch.bfloat16, enabled=args.bf16):
                img = G.synthesis(w).float()
            img.square().flatten(1).mean(1).sum().backward()

        r = timed(render, device, args.repeats, 2)["median_s"] / b
        s = timed(step, device, args.repeats, 2)["median_s"] / b
        rows.append({"batch": b, "render_ms": 1000 * r, "step_ms": 1000 * s})
        print(rows[-1], flush=True)
    for row in rows:
        row["render_vs_1"] = row["render_ms"] / rows[0]["render_ms"]
        row["step_vs_1"] = row["step_ms"] / rows[0]["step_ms"]
    return rows


def report(r: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"Measured {args.date} on {r['machine']}; config-f {args.size} with random weights, "
        f"`python benchmarks/gpu.py` (via `benchmarks/gpu_check.sh`).",
        "",
    ]
    if "generator" in r:
        lines += [
            "| mode | fwd | fwd+bwd | first call fwd / fwd+bwd |",
            "|---|---|---|---|",
            *(
                f"| {g['mode']} | {g['fwd_ms']:.1f} ms | {g['fwd_bwd_ms']:.1f} ms | "
                f"{g['fwd_first_s']:.1f} / {g['fwd_bwd_first_s']:.1f} s |"
                for g in r["generator"]
            ),
            "",
        ]
    if "inversion" in r:
        i = r["inversion"]
        lines += [
            f"Progressive inversion, {i['steps']} steps: first preview "
            f"{i['first_preview_s']:.2f} s, {i['steps_per_s']:.1f} steps/s, "
            f"{i['wall_s']:.2f} s in all (first run, kernels "
            f"cold: {i['cold']['wall_s']:.2f} s).",
            "",
        ]
    if "app" in r:
        a = r["app"]
        lines += [
            f"The app (previews at most every {a['preview_interval_ms']} ms, "
            f"`STYLELENS_STEP_BATCH={a['sessions']}`): "
            f"{a['fps_one_session']:.1f} preview frames/s to one session; {a['sessions']} "
            f"sessions inverting at once: {a['steps_per_s_many']:.1f} steps/s together vs "
            f"{a['steps_per_s_one']:.1f} alone ({a['many_vs_one']:.2f}x; median "
            f"{a['fps_many_median']:.1f} frames/s each).",
            "",
        ]
    if "batching" in r:
        lines += [
            "| sessions in one call | render per session | vs 1 | step (fwd+bwd) per session "
            "| vs 1 |",
            "|---|---|---|---|---|",
            *(
                f"| {b['batch']} | {b['render_ms']:.1f} ms | {b['render_vs_1']:.2f}x | "
                f"{b['step_ms']:.1f} ms | {b['step_vs_1']:.2f}x |"
                for b in r["batching"]
            ),
        ]
    return "\n".join(lines).rstrip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    default = "cuda" if torch.cuda.is_available() else "cpu"
    ap.add_argument("--device", default=default)
    ap.add_argument("--size", type=int, default=1024, help="config-f resolution")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"subset of {','.join(PARTS)}")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--preview-interval-ms", type=int, default=25)
    ap.add_argument("--bf16", action="store_true", help="batching part in bfloat16 autocast")
    ap.add_argument("--out", type=Path, help="write gpu.json and gpu.md here")
    ap.add_argument("--date", default=str(datetime.date.today()))
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else machine()
    r: dict[str, Any] = {"machine": f"{label}, torch {torch.__version__}", "device": str(device)}
    runs = {"generator": part_generator, "inversion": part_inversion, "app": part_app,
            "batching": part_batching}  # fmt: skip
    for part in args.parts.split(","):
        try:
            r[part] = runs[part](args, device)
        except Exception as e:  # one part's failure is reported, the others still run
            r.setdefault("failed", {})[part] = f"{type(e).__name__}: {e}"
            print(f"{part} FAILED: {type(e).__name__}: {e}", flush=True)
    text = report(r, args)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu.json").write_text(json.dumps(r, indent=2))
        (args.out / "gpu.md").write_text(text + "\n")
    if args.write_docs:
        write_docs("gpu", text)
    if r.get("failed"):
        raise SystemExit(f"failed parts: {r['failed']}")


if __name__ == "__main__":
    main()
