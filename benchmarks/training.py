"""Training speed: images per second of the whole StyleGAN2 training step.

Each resolution runs ``stylelens.training.loop.train`` for ``--warmup`` + ``--ticks`` ticks of
``--steps`` minibatches and reports the median img/s of the ticks after the warm-up, as
written in the run's ``metrics.csv``. A step is everything a real run does per minibatch: G
main, D main, the lazy regularisers at their intervals (path length every 4th, R1 every 16th
minibatch; a tick of 16 steps meets both), style mixing, augmentation when asked, the G_ema
update. Images come from memory (``--data random``) so that only training is timed, or from
the SynthFaces renderer (``--data synthfaces``, 64 px and up) to include data loading.

    python benchmarks/training.py --res 32,64                          # quick check
    python benchmarks/training.py --res 64,128,256 --small --write-docs
    python benchmarks/training.py --res 64,256 --small --precision float32,bfloat16 \
        --data synthfaces --write-docs
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import statistics
import tempfile
from pathlib import Path

import torch
from common import machine, write_docs

from stylelens.data.sources import TrainingData, open_dataset
from stylelens.networks.runtime import resolve_device
from stylelens.networks.stylegan2 import channel_schedule
from stylelens.training.augment import AugmentConfig
from stylelens.training.config import TrainConfig
from stylelens.training.loop import METRICS_FILE, resolve_precision, train

SMALL = {"channel_base": 4096, "channel_max": 256}  # --small: a CPU-sized channel schedule


class RandomImages(torch.utils.data.Dataset[torch.Tensor]):
    """Fixed random uint8 images held in memory: data loading costs nothing."""

    def __init__(self, resolution: int, n: int = 64) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (n, 3, resolution, resolution), generator=g,
                                    dtype=torch.uint8)  # fmt: skip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def bench(res: int, precision: str, args: argparse.Namespace) -> dict:
    config = TrainConfig(
        resolution=res,
        precision=precision,
        batch=args.batch,
        channel_base=args.channel_base,
        channel_max=args.channel_max,
        augment=AugmentConfig() if args.aug else None,
        pl_weight=args.pl_weight,
        channels_last=args.channels_last,
        device=args.device,
        num_workers=args.workers,
        tick_kimg=args.batch * args.steps / 1000,
        snapshot_kimg=1e9,
        kimg=args.batch * args.steps * (args.warmup + args.ticks) / 1000,
    ).resolved()
    if args.data == "synthfaces":
        data = open_dataset("synthfaces", res)
    else:
        data = TrainingData(RandomImages(res), {"source": "random"}, "random images")
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        print(f"[{res}px] {args.warmup} + {args.ticks} ticks of {args.steps} steps ...", flush=True)
        state = train(config, run_dir=run_dir, data=data, progress=False, log=lambda msg: None)
        with (run_dir / METRICS_FILE).open() as f:
            rows = list(csv.DictReader(f))
    rates = [float(r["images_per_s"]) for r in rows[args.warmup :]]
    channels = channel_schedule(res, channel_base=config.channel_base or 0,
                                channel_max=config.channel_max)  # fmt: skip
    n_params = sum(p.numel() for p in state.G.parameters())
    d_params = sum(p.numel() for p in state.D.parameters())
    result = {
        "res": res,
        "channels": f"{channels[4]}-{channels[res]}",
        "params": f"{n_params / 1e6:.2f}M / {d_params / 1e6:.2f}M",
        "batch": config.batch,
        "img_s": statistics.median(rates),
        "img_s_all": rates,
        "device": state.device.type,
        "precision": resolve_precision(config.precision, state.device),
    }
    print(f"[{res}px] {result['img_s']:.1f} img/s (ticks: {', '.join(f'{r:.1f}' for r in rates)})")
    return result


def table(results: list[dict]) -> str:
    lines = [
        "| res | channels (4 px - res) | params G / D | batch | device | img/s | s per kimg |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['res']} | {r['channels']} | {r['params']} | {r['batch']} "
            f"| {r['device']} {r['precision']} | {r['img_s']:.1f} | {1000 / r['img_s']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--res", default="64,128,256", help="resolutions (default: 64,128,256)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--small", action="store_true",
                   help=f"channel_base {SMALL['channel_base']}, channel_max "
                   f"{SMALL['channel_max']} (default: NVIDIA's auto schedule)")  # fmt: skip
    p.add_argument("--channel-base", type=int, default=None)
    p.add_argument("--channel-max", type=int, default=512)
    p.add_argument("--steps", type=int, default=16, help="minibatches per tick (default: 16)")
    p.add_argument("--ticks", type=int, default=3, help="timed ticks (default: 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed ticks first (default: 1)")
    p.add_argument("--data", choices=["random", "synthfaces"], default="random")
    p.add_argument("--aug", action="store_true", help="with the default augmentation")
    p.add_argument("--pl-weight", type=float, default=2.0, help="0 turns path length off")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="networks channels-last (default, as stylelens train)")  # fmt: skip
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: auto)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument(
        "--precision",
        default="auto",
        help="comma list of auto, float32, bfloat16 (a row each; bfloat16 on a CPU needs "
        "AVX-512-BF16 or AMX)",
    )
    p.add_argument("--write-docs", action="store_true", help="update docs/performance.md")
    args = p.parse_args()
    if args.small:
        args.channel_base, args.channel_max = SMALL["channel_base"], SMALL["channel_max"]
    torch.set_num_threads(args.threads)
    results = [
        bench(int(r), precision, args)
        for r in args.res.split(",")
        for precision in args.precision.split(",")
    ]
    device = resolve_device(args.device)
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else machine()
    body = (
        f"Measured {datetime.date.today().isoformat()} on {hardware}. "
        f"Median img/s of {args.ticks} ticks of {args.steps} minibatches after {args.warmup} "
        f"warm-up tick(s); data: {args.data}; path length {'on' if args.pl_weight else 'off'}, "
        f"augmentation {'on' if args.aug else 'off'}, "
        f"{'channels-last' if args.channels_last else 'NCHW'}.\n\n" + table(results)
    )
    print("\n" + body)
    if args.write_docs:
        write_docs("training", body)
        print("\nwrote docs/performance.md")


if __name__ == "__main__":
    main()
