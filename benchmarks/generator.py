"""Generator speed: forward and forward+backward (gradient w.r.t. ws) at batch 1.

Measures, side by side in one process, the FFHQ config-f generator (random weights) at 256 and
1024 -- or a model directory's own architecture and weights with ``--model`` -- in these modes:

* ``plain``      the straightforward implementation, for reference: the FIR blur as a
                 single-channel convolution over channels folded into the batch, modulated
                 convolution with per-sample weights (grouped convolution) also for gradients,
                 out-of-place bias/activation;
* ``dw-blur``    ``plain`` with the blur as one depthwise convolution;
* ``float32``    StyleLens as shipped: depthwise blur, and activation-scaled ("non-fused")
                 modulated convolution whenever gradients w.r.t. ws are needed;
* ``bfloat16``   ``float32`` under bfloat16 autocast;
* ``compile-float32`` / ``compile-bfloat16``  the same under ``torch.compile``.

Reports medians, first-call times, GFLOP (convolutions and matmuls, 2 FLOP per MAC, counted by
``torch.utils.flop_counter``) with achieved GFLOP/s, and the error of each mode against
``float32`` (relative L2 of the image and of the gradient). ``--write-docs`` puts the table
into ``docs/performance.md``; ``--record`` (with ``--model``) stores the medians in the model's
``card.json`` under ``speed``.

    python benchmarks/generator.py                      # config-f, 256 and 1024, all modes
    python benchmarks/generator.py --model synthfaces-256 --write-docs --record
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from common import DOC, ROOT, machine, write_docs
from torch.utils.flop_counter import FlopCounterMode

from stylelens.checkpoints import load_generator, model_dir_for
from stylelens.checkpoints.native import save_card
from stylelens.networks import ops
from stylelens.networks.runtime import autocast
from stylelens.networks.stylegan2 import Generator, GeneratorConfig

MODES = ["plain", "dw-blur", "float32", "bfloat16", "compile-float32", "compile-bfloat16"]

# ----------------------------------------------------------------------------
# The straightforward variants, patched into stylelens.networks.ops for the reference modes.


def plain_upfirdn2d(x, f, *, up=1, down=1, padding=(0, 0, 0, 0), gain=1.0):
    n, c, h, w = x.shape
    x = x.reshape(n * c, 1, h, w)  # every channel a separate image
    if up > 1:
        x = F.pad(x.reshape(n * c, 1, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n * c, 1, h * up, w * up)
    px0, px1, py0, py1 = padding
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    k = (f * gain ** (f.ndim / 2)).flip([0, 1]).to(x.dtype)[None, None]
    x = F.conv2d(x, k, stride=down)
    return x.reshape(n, c, x.shape[2], x.shape[3])


def plain_modulated_conv2d(
    x, weight, styles, *, demodulate=True, up=1, resample_filter=None, noise=None, fused=None
):
    n, i = styles.shape
    o, _, k, _ = weight.shape
    w = weight[None] * styles.reshape(n, 1, i, 1, 1)  # [N, O, I, k, k]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + ops.DEMOD_EPS).rsqrt().reshape(n, o, 1, 1, 1)
    x = x.reshape(1, n * i, *x.shape[2:])
    if up == 2:
        w = w.transpose(1, 2).reshape(n * i, o, k, k)
        x = F.conv_transpose2d(x, w.to(x.dtype), stride=2, groups=n)
        x = ops.upfirdn2d(x, resample_filter, padding=(1, 1, 1, 1), gain=4.0)
    else:
        x = F.conv2d(x, w.reshape(n * o, i, k, k).to(x.dtype), padding=k // 2, groups=n)
    x = x.reshape(n, o, *x.shape[2:])
    return x if noise is None else x + noise.to(x.dtype)


def plain_bias_act(x, b=None, *, act="linear", gain=None, clamp=None):
    if b is not None:
        x = x + b.to(x.dtype).reshape([1, -1] + [1] * (x.ndim - 2))
    if act == "lrelu":
        x = F.leaky_relu(x, ops.LRELU_SLOPE)
        gain = ops.LRELU_GAIN if gain is None else gain
    if gain is not None and gain != 1:
        x = x * gain
    return x if clamp is None else x.clamp(-clamp, clamp)


@contextlib.contextmanager
def patched(mode: str) -> Iterator[None]:
    patches: dict[str, Callable[..., Any]] = {}
    if mode in ("plain", "dw-blur"):
        patches = {"modulated_conv2d": plain_modulated_conv2d, "bias_act": plain_bias_act}
    if mode == "plain":
        patches["upfirdn2d"] = plain_upfirdn2d
    saved = {name: getattr(ops, name) for name in patches}
    for name, fn in patches.items():
        setattr(ops, name, fn)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(ops, name, fn)


# ----------------------------------------------------------------------------
# Measurement


def timed(fn: Callable[[], Any], repeats: int, warmup: int) -> tuple[float, list[float]]:
    """(median of ``repeats`` timed calls after ``warmup`` calls, all times) in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def run_mode(G: Generator, ws: torch.Tensor, mode: str, repeats: int, warmup: int) -> dict:
    precision = "bfloat16" if mode.endswith("bfloat16") else "float32"
    synthesis: Callable[..., torch.Tensor] = G.synthesis
    if mode.startswith("compile"):
        torch._dynamo.reset()
        synthesis = torch.compile(G.synthesis)
    device = ws.device

    def forward() -> torch.Tensor:
        with torch.no_grad(), autocast(device, precision):
            return synthesis(ws)

    def forward_backward() -> tuple[torch.Tensor, torch.Tensor]:
        w = ws.detach().clone().requires_grad_(True)
        with autocast(device, precision):
            img = synthesis(w)
        img.float().square().mean().backward()
        assert w.grad is not None
        return img.detach(), w.grad

    with patched(mode):
        t0 = time.perf_counter()
        img = forward()  # the first calls include compilation
        first_f = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, grad = forward_backward()
        first_fb = time.perf_counter() - t0
        fwd, fwd_all = timed(forward, repeats, warmup)
        fb, fb_all = timed(forward_backward, repeats, warmup)
        flops = {}
        if not mode.startswith("compile"):
            for name, fn in (("fwd", forward), ("fwd_bwd", forward_backward)):
                counter = FlopCounterMode(display=False)
                with counter:
                    fn()
                flops[name] = counter.get_total_flops() / 1e9
    return {
        "mode": mode, "fwd_s": fwd, "fwd_bwd_s": fb, "fwd_all": fwd_all, "fwd_bwd_all": fb_all,
        "first_fwd_s": first_f, "first_fwd_bwd_s": first_fb, "gflop": flops,
        "img": img.float(), "grad": grad.float(),
    }  # fmt: skip


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def bench_size(G: Generator, modes: list[str], repeats: int, warmup: int, label: str) -> list[dict]:
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0)))
    results = []
    for mode in modes:
        print(f"[{label}] {mode} ...", flush=True)
        r = run_mode(G, ws, mode, repeats, warmup)
        print(f"[{label}] {mode}: fwd {_ms(r['fwd_s'])}, fwd+bwd {_ms(r['fwd_bwd_s'])}")
        results.append(r)
    ref = next((r for r in results if r["mode"] == "float32"), results[0])
    gflop_ref = ref["gflop"] or next(r["gflop"] for r in results if r["gflop"])
    for r in results:
        r["img_rel_err"] = rel_err(r.pop("img"), ref["img"]) if r is not ref else 0.0
        r["grad_rel_err"] = rel_err(r.pop("grad"), ref["grad"]) if r is not ref else 0.0
        r["gflop"] = r["gflop"] or {"fwd": gflop_ref["fwd"], "fwd_bwd": gflop_ref["fwd_bwd"]}
        r["label"] = label
    for key in ("img", "grad"):
        ref.pop(key, None)
    return results


def table(results: list[dict]) -> str:
    lines = [
        "| size | mode | fwd | fwd+bwd | first call fwd / fwd+bwd | GFLOP fwd / fwd+bwd "
        "| GFLOP/s fwd / fwd+bwd | img rel err | grad rel err |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        g = r["gflop"]
        lines.append(
            f"| {r['label']} | {r['mode']} | {_ms(r['fwd_s'])} | {_ms(r['fwd_bwd_s'])} "
            f"| {r['first_fwd_s']:.1f} / {r['first_fwd_bwd_s']:.1f} s "
            f"| {g['fwd']:.1f} / {g['fwd_bwd']:.1f} "
            f"| {g['fwd'] / r['fwd_s']:.0f} / {g['fwd_bwd'] / r['fwd_bwd_s']:.0f} "
            f"| {_err(r['img_rel_err'])} | {_err(r['grad_rel_err'])} |"
        )
    return "\n".join(lines)


def ratios(results: list[dict]) -> str:
    out = []
    for label in dict.fromkeys(r["label"] for r in results):
        rows = {r["mode"]: r for r in results if r["label"] == label}
        if "plain" not in rows:
            continue
        base = rows["plain"]
        parts = [
            f"{mode} {base['fwd_s'] / r['fwd_s']:.1f}x / {base['fwd_bwd_s'] / r['fwd_bwd_s']:.1f}x"
            for mode, r in rows.items()
            if mode != "plain"
        ]
        out.append(f"- {label}, speed-up over `plain` (fwd / fwd+bwd): " + "; ".join(parts))
    return "\n".join(out)


def _ms(s: float) -> str:
    return f"{s * 1e3:.0f} ms" if s < 10 else f"{s:.1f} s"


def _err(e: float) -> str:
    return "0" if e == 0 else f"{e:.1e}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", help="benchmark this model directory instead of config-f")
    p.add_argument("--models-dir", type=Path, default=ROOT / "models")
    p.add_argument("--sizes", default="256,1024", help="config-f resolutions (default: 256,1024)")
    p.add_argument("--modes", default=",".join(MODES), help=f"subset of {','.join(MODES)}")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (1024: 3)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--json", type=Path, help="also write raw results here")
    p.add_argument("--write-docs", action="store_true", help="update docs/performance.md")
    p.add_argument("--record", action="store_true", help="with --model: medians into card.json")
    args = p.parse_args()
    if args.record and not args.model:
        p.error("--record needs --model")
    torch.set_num_threads(args.threads)
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        p.error(f"unknown modes {sorted(unknown)}")
    results: list[dict] = []
    if args.model:
        model_dir = model_dir_for(args.models_dir, args.model)
        G, card = load_generator(model_dir)
        results += bench_size(G, modes, args.repeats, args.warmup, f"{args.model}")
        section = f"generator-{args.model}"
    else:
        for size in (int(s) for s in args.sizes.split(",")):
            G = Generator(GeneratorConfig(img_resolution=size)).eval().requires_grad_(False)
            repeats = args.repeats if size <= 512 else max(3, math.ceil(args.repeats / 2))
            results += bench_size(G, modes, repeats, min(args.warmup, 1 if size > 512 else 2),
                                  f"config-f {size}")  # fmt: skip
        section = "generator-config-f"
    when = datetime.date.today().isoformat()
    runs = f"{args.repeats} runs"
    if not args.model and any(int(s) > 512 for s in args.sizes.split(",")):
        runs += f" ({max(3, math.ceil(args.repeats / 2))} above 512 px)"
    body = (
        f"Measured {when} on {machine()}. Batch 1, medians of {runs} after warm-up; "
        "errors against `float32`.\n\n" + table(results) + "\n\n" + ratios(results)
    )
    print("\n" + body)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.write_docs:
        write_docs(section, body)
        print(f"\nwrote {DOC}")
    if args.record:
        speed = {
            "measured": when,
            "machine": machine(),
            "batch": 1,
            "benchmark": "benchmarks/generator.py",
            "modes": {
                r["mode"]: {
                    "fwd_ms": round(r["fwd_s"] * 1e3, 1),
                    "fwd_bwd_ms": round(r["fwd_bwd_s"] * 1e3, 1),
                }
                for r in results
            },
        }
        save_card(model_dir, card.model_copy(update={"speed": speed}))
        print(f"recorded in {model_dir / 'card.json'}")


if __name__ == "__main__":
    main()
