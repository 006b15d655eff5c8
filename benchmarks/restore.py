"""Restoration with the multi-code GAN prior (seed 004) against single-code inversion and a
classical baseline, on held-out SynthFaces with ground truth.

Every target is a SynthFace from the seed range FAD holds out (never trained on), degraded here:
gray (colorize); box-down-scaled x4, x8 or x16 (super-resolution, the scale cycling over the
faces); a hole of one of three shapes, mouth box, eyes band or brush strokes (inpaint, cycling
too). Side by side, one process:

* ``mganprior``: the product's restoration (the task's defaults: codes, composing layer, steps);
* ``single``: one code, its importance fixed at 1 (a W+ inversion: one w for the blocks up to
  the composing layer, free W+ styles after it) under the same task loss, steps and finish;
* ``classical``: the gray image itself; bicubic up-scaling; OpenCV's Telea inpainting (a blurred
  fill where OpenCV is not installed).

Both GAN methods get the task's finish (the photo's luma, its known pixels kept). Metrics
against the ground truth: PSNR, the perceptual distance of the model's discriminator features
(``d-features``, also the loss's perceptual term) and 1 - MS-SSIM (used by no method).

* ``ablation`` (the paper's): plain multi-code reconstruction of 4 other held-out faces with N
  in {1, 5, 10, 20, 30} at three composing layers;
* ``time``: seconds per restoration and to the first preview with the defaults, on a quiet
  machine (run it alone).

    OMP_NUM_THREADS=2 python benchmarks/restore.py --write-docs      # ~70 min, 2 cores
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from common import ROOT, machine, write_docs
from PIL import Image, ImageDraw

from stylelens.checkpoints import load_generator, model_dir_for
from stylelens.data.synthfaces import render_face
from stylelens.evaluation.eval_model import HELD_OUT_FIRST_SEED
from stylelens.inversion.multicode import MultiCodeConfig, MultiCodeEngine
from stylelens.losses import load_perceptual
from stylelens.losses.msssim import MSSSIMDistance
from stylelens.networks.preview import psnr
from stylelens.render import to_uint8
from stylelens.restoration.engine import restoration_config
from stylelens.restoration.tasks import Task, downscale, gray, make_task

DOC = ROOT / "docs" / "restoration.md"
PERF = ROOT / "docs" / "performance.md"
IMAGES = ROOT / "docs" / "images"
LOG = ROOT / "docs" / "logs" / "restore.jsonl"
CELLS = Path(tempfile.gettempdir()) / "stylelens-restore-cells"  # the picture sheet's images
SCALES = (4, 8, 16)
MASKS = ("mouth box", "eyes band", "strokes")
TABLE_SEED = HELD_OUT_FIRST_SEED + 90_000
ABLATION_SEED = HELD_OUT_FIRST_SEED + 91_000
ABLATION_CODES = (1, 5, 10, 20, 30)
ABLATION_LAYERS = (4, 6, 8)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="synthfaces-256")
    p.add_argument("--models-dir", type=Path, default=ROOT / "models")
    p.add_argument("--faces", type=int, default=32)
    p.add_argument("--ablation-faces", type=int, default=4)
    p.add_argument("--steps", type=int, default=None, help="default: the product's")
    p.add_argument("--part", action="append", choices=("table", "ablation", "time"))
    p.add_argument("--log", type=Path, default=LOG, help="results, one JSON per line (resumed)")
    p.add_argument("--write-docs", action="store_true")
    return p.parse_args()


def face(seed: int, resolution: int) -> torch.Tensor:
    arr, _ = render_face(seed, resolution)
    return torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 127.5 - 1


def hole_mask(kind: str, resolution: int, seed: int) -> torch.Tensor:
    """A hole [1, 1, R, R] (1: fill in) of one of :data:`MASKS`."""
    R = resolution
    im = Image.new("L", (R, R), 0)
    d = ImageDraw.Draw(im)
    if kind == "mouth box":
        d.rectangle([0.32 * R, 0.60 * R, 0.68 * R, 0.80 * R], fill=255)
    elif kind == "eyes band":
        d.rectangle([0.18 * R, 0.38 * R, 0.82 * R, 0.54 * R], fill=255)
    else:
        rng = np.random.default_rng(seed)
        for _ in range(4):
            x0, y0, x1, y1 = (rng.uniform(0.15, 0.85, 4) * R).tolist()
            d.line([x0, y0, x1, y1], fill=255, width=max(2, round(0.06 * R)))
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)[None, None]


def degrade(name: str, gt: torch.Tensor, *, scale: int = 8, hole: torch.Tensor | None = None):
    """(task, observation) for ground truth ``gt``."""
    task = make_task(name, scale=scale, mask=hole)
    if name == "colorize":
        return task, gray(gt)
    if name == "superres":
        return task, downscale(gt, scale)
    return task, task.degrade(gt)


def classical(task: Task, observed: torch.Tensor, resolution: int) -> tuple[torch.Tensor, str]:
    if task.name == "colorize":
        return observed.expand(-1, 3, -1, -1).clone(), "the gray image"
    if task.name == "superres":
        up = F.interpolate(observed, size=(resolution,) * 2, mode="bicubic", align_corners=False)
        return up.clamp(-1, 1), "bicubic"
    hole = 1 - task.known  # type: ignore[attr-defined]
    try:
        import cv2

        img = to_uint8(observed)[0][:, :, ::-1].copy()
        m = (hole[0, 0].numpy() > 0.5).astype(np.uint8) * 255
        out = cv2.inpaint(img, m, 5, cv2.INPAINT_TELEA)[:, :, ::-1].copy()
        t = torch.from_numpy(out).permute(2, 0, 1)[None].float() / 127.5 - 1
        return t, "OpenCV Telea"
    except ImportError:  # a blurred fill: the known pixels' local mean, spread into the hole
        known = task.known  # type: ignore[attr-defined]
        x = observed
        k = torch.ones(1, 1, 9, 9) / 81
        num = F.conv2d(x.reshape(3, 1, *x.shape[-2:]), k, padding=4).reshape_as(x)
        den = F.conv2d(known, k, padding=4)
        for _ in range(20):
            fill = num / den.clamp_min(1e-6)
            x = observed * known + fill * (1 - known)
            num = F.conv2d(x.reshape(3, 1, *x.shape[-2:]), k, padding=4).reshape_as(x)
            den = torch.ones_like(den)
        return x.clamp(-1, 1), "blurred fill"


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.model_dir = model_dir_for(args.models_dir, args.model)
        self.G, self.card = load_generator(self.model_dir)
        self.G.requires_grad_(False)
        self.R = self.G.img_resolution
        self.perceptual = load_perceptual(
            "d-features", models_dir=args.models_dir, model_dir=self.model_dir
        )
        self.msssim = MSSSIMDistance()
        self.engine = MultiCodeEngine(self.G, perceptual=self.perceptual)
        self.done: dict[str, dict[str, Any]] = {}
        if args.log.exists():
            for line in args.log.read_text().splitlines():
                row = json.loads(line)
                self.done[row["key"]] = row

    def record(self, row: dict[str, Any]) -> dict[str, Any]:
        self.done[row["key"]] = row
        self.args.log.parent.mkdir(parents=True, exist_ok=True)
        with self.args.log.open("a") as f:
            f.write(json.dumps(row) + "\n")
        return row

    def metrics(self, out: torch.Tensor, gt: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            return {
                "psnr": float(psnr(out, gt)[0]),
                "d_features": float(self.perceptual(out, gt)[0]),
                "ms_ssim_dist": float(self.msssim(out, gt)[0]),
            }

    def restore(self, config: MultiCodeConfig, observed: torch.Tensor):
        state = self.engine.start(observed, config)
        first = None
        t0 = time.perf_counter()
        while not state.done:
            self.engine.step(state)
            first = first if first is not None else time.perf_counter() - t0
        result = self.engine.result(state)
        raw = self.engine.image(state)
        return result, raw, time.perf_counter() - t0, first

    def config(self, task: Task, **kw: Any) -> MultiCodeConfig:
        cfg = restoration_config(
            task, self.R, **({"steps": self.args.steps} if self.args.steps else {})
        )
        return MultiCodeConfig(**{**cfg.__dict__, **kw})

    # parts ---------------------------------------------------------------------------------

    def table(self) -> list[dict[str, Any]]:
        rows = []
        for i in range(self.args.faces):
            seed = TABLE_SEED + i
            gt = face(seed, self.R)
            jobs = [
                ("colorize", "gray", {}),
                ("superres", f"x{SCALES[i % 3]}", {"scale": SCALES[i % 3]}),
                ("inpaint", MASKS[i % 3], {"hole": hole_mask(MASKS[i % 3], self.R, seed)}),
            ]
            for name, kind, kw in jobs:
                task, observed = degrade(name, gt, **kw)
                for method in ("classical", "single", "mganprior"):
                    key = f"table/{seed}/{name}/{method}"
                    cached = self.done.get(key)
                    # the first four faces also make the picture sheet: redo a logged run
                    # only when its picture is missing (the log keeps the measured row)
                    pictured = i >= 4 or (CELLS / f"{seed}-{name}-{method}.png").exists()
                    if cached is not None and pictured:
                        rows.append(cached)
                        continue
                    row: dict[str, Any] = {"key": key, "seed": seed, "task": name, "kind": kind,
                                           "method": method}  # fmt: skip
                    if method == "classical":
                        out, how = classical(task, observed, self.R)
                        row.update(how=how, **self.metrics(out, gt))
                    else:
                        cfg = self.config(task)
                        if method == "single":
                            cfg = MultiCodeConfig(
                                **{**cfg.__dict__, "codes": 1, "learn_alpha": False}
                            )
                        result, raw, seconds, first = self.restore(cfg, observed)
                        out = result.image
                        assert out is not None
                        row.update(seconds=seconds, first_preview=first, codes=cfg.codes)
                        row.update(layer=cfg.layer, steps=cfg.steps, **self.metrics(out, gt))
                        row["raw_psnr"] = float(psnr(raw.clamp(-1, 1), gt)[0])
                    if i < 4:
                        shown = observed
                        if name == "superres":
                            shown = F.interpolate(observed, size=(self.R,) * 2, mode="nearest")
                        elif name == "colorize":
                            shown = observed.expand(-1, 3, -1, -1)
                        sheet_dir = CELLS
                        sheet_dir.mkdir(parents=True, exist_ok=True)
                        for label, img in (("gt", gt), ("input", shown), (method, out)):
                            Image.fromarray(to_uint8(img)[0]).save(
                                sheet_dir / f"{seed}-{name}-{label}.png"
                            )
                    rows.append(cached if cached is not None else self.record(row))
                    print(f"{key}: psnr {row['psnr']:.2f} d {row['d_features']:.4f} "
                          f"ms-ssim-dist {row['ms_ssim_dist']:.4f}", flush=True)  # fmt: skip
        return rows

    def ablation(self) -> list[dict[str, Any]]:
        rows = []
        configs = [(n, 6) for n in ABLATION_CODES] + [(20, L) for L in ABLATION_LAYERS if L != 6]
        for i in range(self.args.ablation_faces):
            seed = ABLATION_SEED + i
            gt = face(seed, self.R)
            for codes, layer in configs:
                key = f"ablation/{seed}/{codes}/{layer}"
                if key in self.done:
                    rows.append(self.done[key])
                    continue
                task = make_task("reconstruct")
                cfg = self.config(task, codes=codes, layer=layer, learn_alpha=codes > 1)
                result, _, seconds, _ = self.restore(cfg, gt)
                assert result.image is not None
                row = {"key": key, "seed": seed, "codes": codes, "layer": layer,
                       "seconds": seconds, **self.metrics(result.image, gt)}  # fmt: skip
                rows.append(self.record(row))
                print(f"{key}: psnr {row['psnr']:.2f}", flush=True)
        return rows

    def timing(self) -> list[dict[str, Any]]:
        rows = []
        for i in range(3):
            seed = TABLE_SEED + 500 + i
            gt = face(seed, self.R)
            hole = hole_mask(MASKS[0], self.R, seed)
            for name, kw in (
                ("colorize", {}),
                ("superres", {"scale": 8}),
                ("inpaint", {"hole": hole}),
            ):
                task, observed = degrade(name, gt, **kw)
                _, _, seconds, first = self.restore(self.config(task), observed)
                rows.append({"task": name, "seconds": seconds, "first_preview": first})
                print(f"time {name}: {seconds:.1f} s, first preview {first:.3f} s", flush=True)
        return rows


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def table_md(rows: list[dict[str, Any]]) -> str:
    out = [
        "| task | faces | classical: PSNR / d-feat / 1-MS-SSIM | single code | mGANprior | "
        "mGANprior time |",
        "|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["task"], "all"), []).append(r)
        if r["task"] != "colorize":
            groups.setdefault((r["task"], r["kind"]), []).append(r)
    for (task, kind), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "all")):
        cells = []
        for method in ("classical", "single", "mganprior"):
            m = [r for r in rs if r["method"] == method]
            cells.append(
                f"{med([r['psnr'] for r in m]):.2f} / {med([r['d_features'] for r in m]):.4f} / "
                f"{med([r['ms_ssim_dist'] for r in m]):.4f}"
            )
        n = len({r["seed"] for r in rs})
        t = med([r["seconds"] for r in rs if r["method"] == "mganprior"])
        label = task if kind == "all" else f"{task}, {kind}"
        bold = "**" if kind == "all" else ""
        out.append(f"| {bold}{label}{bold} | {n} | {' | '.join(cells)} | {t:.1f} s |")
    return "\n".join(out)


def wins(rows: list[dict[str, Any]]) -> str:
    lines = []
    for task in ("colorize", "superres", "inpaint"):
        by = {}
        for method in ("classical", "single", "mganprior"):
            by[method] = {r["seed"]: r for r in rows if r["task"] == task and r["method"] == method}
        seeds = sorted(by["mganprior"])
        beat = {
            k: sum(by["mganprior"][s][m] < by[o][s][m] if m != "psnr" else
                   by["mganprior"][s][m] > by[o][s][m] for s in seeds)
            for k, (o, m) in {
                "single d-feat": ("single", "d_features"),
                "single PSNR": ("single", "psnr"),
                "classical d-feat": ("classical", "d_features"),
                "classical 1-MS-SSIM": ("classical", "ms_ssim_dist"),
            }.items()
        }  # fmt: skip
        lines.append(f"| {task} | " + " | ".join(f"{v}/{len(seeds)}" for v in beat.values()) + " |")
    head = (
        "| task | beats single code, d-feat | single code, PSNR | classical, d-feat | "
        "classical, 1-MS-SSIM |\n|---|---|---|---|---|"
    )
    return head + "\n" + "\n".join(lines)


def ablation_md(rows: list[dict[str, Any]]) -> str:
    cells: dict[tuple[int, int], list[float]] = {}
    secs: dict[tuple[int, int], list[float]] = {}
    for r in rows:
        cells.setdefault((r["codes"], r["layer"]), []).append(r["psnr"])
        secs.setdefault((r["codes"], r["layer"]), []).append(r["seconds"])
    out = ["| codes N | layer 4 (8 px) | layer 6 (16 px) | layer 8 (32 px) |", "|---|---|---|---|"]
    for n in ABLATION_CODES:
        row = [f"{med(cells[(n, L)]):.2f} dB ({med(secs[(n, L)]):.0f} s)" if (n, L) in cells else ""
               for L in ABLATION_LAYERS]  # fmt: skip
        out.append(f"| {n} | " + " | ".join(row) + " |")
    return "\n".join(out)


def picture_sheet(rows: list[dict[str, Any]]) -> None:
    cells = CELLS
    seeds = sorted({r["seed"] for r in rows})[:4]
    cols = ("gt", "input", "classical", "single", "mganprior")
    tasks = ("colorize", "superres", "inpaint")
    S = 160
    sheet = Image.new("RGB", (S * len(cols), S * len(seeds) * len(tasks) + 24), "white")
    d = ImageDraw.Draw(sheet)
    for j, c in enumerate(("ground truth", "input", "classical", "single code", "mGANprior")):
        d.text((j * S + 6, 6), c, fill="black")
    y = 24
    for task in tasks:
        for seed in seeds:
            for j, c in enumerate(cols):
                p = cells / f"{seed}-{task}-{c}.png"
                if p.exists():
                    sheet.paste(Image.open(p).resize((S, S), Image.Resampling.LANCZOS), (j * S, y))
            y += S
    sheet.save(IMAGES / "restoration.jpg", quality=88)


def ablation_plot(rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=110)
    by_n = sorted({r["codes"] for r in rows if r["layer"] == 6})
    at6 = [med([r["psnr"] for r in rows if r["codes"] == n and r["layer"] == 6]) for n in by_n]
    ax.plot(by_n, at6, "o-", label="layer 6 (16 px)")
    for L in (4, 8):
        v = [r["psnr"] for r in rows if r["codes"] == 20 and r["layer"] == L]
        if v:
            ax.plot([20], [med(v)], "s", label=f"layer {L} ({2 ** (L // 2 + 1)} px), N = 20")
    ax.set_xlabel("codes N")
    ax.set_ylabel("reconstruction PSNR (dB), median")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(IMAGES / "restoration-ablation.png")


def main() -> None:
    args = parse()
    parts = args.part or ["table", "ablation", "time"]
    bench = Bench(args)
    stamp = f"Measured {datetime.date.today()} on {machine()}, model {args.model}"
    results: dict[str, Any] = {}
    if "table" in parts:
        results["table"] = bench.table()
    if "ablation" in parts:
        results["ablation"] = bench.ablation()
    if "time" in parts:
        results["time"] = bench.timing()
    if not args.write_docs:
        return
    if "table" in parts:
        rows = results["table"]
        how = next(r["how"] for r in rows if r["method"] == "classical" and r["task"] == "inpaint")
        steps = next(r["steps"] for r in rows if r["method"] == "mganprior")
        body = (
            f"{stamp}, `python benchmarks/restore.py --part table --write-docs`. "
            f"{args.faces} held-out SynthFaces; {steps} steps for both GAN methods; classical: "
            f"the gray image, bicubic, {how}. Medians against the ground truth: PSNR (dB, higher "
            "is better) / discriminator-feature distance (lower) / 1 - MS-SSIM (lower).\n\n"
            + table_md(rows)
            + "\n\nFaces on which mGANprior beats the other method:\n\n"
            + wins(rows)
        )
        write_docs("restore-table", body, DOC)
        picture_sheet(rows)
    if "ablation" in parts:
        body = (
            f"{stamp}, `python benchmarks/restore.py --part ablation --write-docs`. Plain "
            f"multi-code reconstruction of {args.ablation_faces} other held-out SynthFaces; "
            "median PSNR against the face (and seconds per inversion).\n\n"
            + ablation_md(results["ablation"])
        )
        write_docs("restore-ablation", body, DOC)
        ablation_plot(results["ablation"])
    if "time" in parts:
        t = results["time"]
        lines = [
            "| task | seconds per restoration, median | first preview, median |",
            "|---|---|---|",
        ]
        for task in ("colorize", "superres", "inpaint"):
            rs = [r for r in t if r["task"] == task]
            lines.append(
                f"| {task} | {med([r['seconds'] for r in rs]):.1f} s | "
                f"{med([r['first_preview'] for r in rs]):.3f} s |"
            )
        body = (
            f"{stamp}, `python benchmarks/restore.py --part time --write-docs` (alone on the "
            "machine; 3 faces per task; the defaults)\n\n" + "\n".join(lines)
        )
        write_docs("restore-time", body, DOC)
        write_docs("restore-time", body, PERF)


if __name__ == "__main__":
    main()
