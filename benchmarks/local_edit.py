"""Local edits (seed 002) against the same edits on the whole face, on held-out faces.

The faces are what a user edits: 32 held-out SynthFaces (seeds the model never saw, as the
directions benchmark draws them) encoded by the model's encoder, one pass each. On each face,
three regions found on its own render (the eyes, mouth and hair presets) and three directions
(smile, age, hair lightness, +2 units each), side by side with the unmasked edit, at every
blend resolution:

* ``outside``: mean absolute change outside the region, the feather band excluded, in 1/255
  (goal <= 1, moonshot <= 0.5);
* ``inside``: the change inside the region as a share of the unmasked edit's change there
  (goal >= 80 %);
* ``seam``: the gradient energy of the edit's change image (edited - original) on a 3-px ring around
  the region's border over that inside the region, for the local edit and the unmasked edit; a
  hard paste (no feather, blended only at the output) is measured too, so that soft and hard
  blends can be compared (a step at the border raises it);
* ``time``: a local render (the original's run cached, as the app does) against a plain render
  of the edit, medians, interleaved; and the app's slider latency with and without a region
  (``stylelens serve`` on a free port; p50/p95, moves interleaved).

    OMP_NUM_THREADS=2 python benchmarks/local_edit.py --write-docs      # ~10 min, 2 cores
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from common import ROOT, machine, write_docs
from PIL import Image, ImageDraw

from stylelens.checkpoints import load_generator, model_dir_for
from stylelens.directions.edit import apply_directions, style_mix
from stylelens.directions.store import load_direction
from stylelens.editing.local import (
    OriginalRun,
    default_blend_res,
    default_feather,
    feather_mask,
    render_local,
)
from stylelens.editing.regions import preset_regions
from stylelens.encoders.store import load_encoder
from stylelens.evaluation.encoded import ENCODED_FIRST_SEED, encode_synthfaces
from stylelens.render import to_uint8, z_from_seed

DOC = ROOT / "docs" / "local-editing.md"
PERF = ROOT / "docs" / "performance.md"
IMAGES = ROOT / "docs" / "images"
LOG = ROOT / "docs" / "logs" / "local_edit.jsonl"
MASKS = ("eyes", "mouth", "hair")
DIRECTIONS = ("smile", "age", "hair_lightness")
AMOUNT = 2.0


def to255(x: torch.Tensor) -> torch.Tensor:
    return x * 127.5  # images in [-1, 1]


def grad_energy(img: torch.Tensor) -> torch.Tensor:
    """Squared gradient magnitude [H, W] of an image [1, 3, H, W] (forward differences)."""
    gx = F.pad(img[..., :, 1:] - img[..., :, :-1], (0, 1, 0, 0))
    gy = F.pad(img[..., 1:, :] - img[..., :-1, :], (0, 0, 0, 1))
    return (to255(gx) ** 2 + to255(gy) ** 2).sum(1)[0]


def border_ring(region: torch.Tensor, width: int) -> torch.Tensor:
    """Pixels within ``width`` of the region's border, on either side: bool [H, W]."""
    r = region.float()
    grown = F.max_pool2d(r, 2 * width + 1, stride=1, padding=width)
    shrunk = -F.max_pool2d(-r, 2 * width + 1, stride=1, padding=width)
    return ((grown - shrunk) > 0)[0, 0]


def seam(change: torch.Tensor, ring: torch.Tensor, core: torch.Tensor) -> float:
    """Gradient energy of an edit's change image on the ring around the region's border over
    that inside the region away from the border: a step at the border (a pasted edit) raises
    it, an edit that fades in smoothly does not."""
    e = grad_energy(change)
    return float(e[ring].mean() / e[core].mean().clamp_min(1e-6))


def measure(G: Any, ws: torch.Tensor, n_faces: int, model_dir: Path) -> list[dict[str, Any]]:
    R = G.img_resolution
    feather = default_feather(R)
    dirs = {d: load_direction(model_dir, d) for d in DIRECTIONS}
    resolutions = [r for r in G.synthesis.block_resolutions if r > 4]
    rows = []
    for i in range(n_faces):
        w = ws[i : i + 1]
        with torch.no_grad():
            original = G.synthesis(w)
        try:
            regions = preset_regions(Image.fromarray(to_uint8(original)[0]))
        except Exception as e:  # no face found on this render: said in the table
            rows.append({"face": i, "error": str(e)})
            continue
        runs = {br: OriginalRun.compute(G.synthesis, w, br) for br in resolutions}
        for mask_name in MASKS:
            region = torch.from_numpy(regions[mask_name]).float()[None, None]
            if not region.any():
                rows.append({"face": i, "mask": mask_name, "error": "empty region"})
                continue
            weights = feather_mask(region, feather)
            outside = (weights[0, 0] == 0).expand(3, -1, -1)
            inside = (region[0, 0] > 0).expand(3, -1, -1)
            ring = border_ring(region, 3)
            core = (region[0, 0] > 0) & ~ring
            hard = feather_mask(region, 0)
            for dname in DIRECTIONS:
                we = apply_directions(w, [(dirs[dname], AMOUNT)])
                with torch.no_grad():
                    whole = G.synthesis(we)
                whole_in = float(to255((whole - original).abs())[0][inside].mean())
                row: dict[str, Any] = {
                    "face": i,
                    "mask": mask_name,
                    "direction": dname,
                    "area": float(region.mean()),
                    "whole_inside": whole_in,
                    "whole_outside": float(to255((whole - original).abs())[0][outside].mean()),
                    "seam_whole": seam(whole - original, ring, core),
                }
                for br in resolutions:
                    local = render_local(G.synthesis, we, runs[br], weights)
                    diff = to255((local - original).abs())[0]
                    row[f"outside_{br}"] = float(diff[outside].mean())
                    row[f"inside_{br}"] = float(diff[inside].mean()) / max(whole_in, 1e-6)
                    row[f"seam_{br}"] = seam(local - original, ring, core)
                pasted = render_local(G.synthesis, we, runs[R], hard)
                row["seam_hard"] = seam(pasted - original, ring, core)
                rows.append(row)
        print(f"face {i + 1}/{n_faces}", flush=True)
    return rows


def median(xs: list[float]) -> float:
    """The median of the defined values (a seam is undefined on a region too thin to have an
    inside away from its border)."""
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def quality_table(rows: list[dict[str, Any]], resolutions: list[int], default: int) -> str:
    ok = [r for r in rows if "error" not in r]
    failed = sorted({r["face"] for r in rows if "error" in r and "mask" not in r})
    lines = [
        "| blend from | outside change (1/255), median / max | inside, share of the unmasked "
        "edit's change, median (p10) | seam: the change's gradient energy, border ring / "
        "inside, median |",
        "|---|---|---|---|",
    ]
    for br in resolutions:
        out = [r[f"outside_{br}"] for r in ok]
        ins = [r[f"inside_{br}"] for r in ok]
        sm = [r[f"seam_{br}"] for r in ok]
        name = f"**{br} px (default)**" if br == default else f"{br} px"
        lines.append(
            f"| {name} | {median(out):.3f} / {max(out):.3f} | {median(ins) * 100:.0f} % "
            f"({np.percentile(ins, 10) * 100:.0f} %) | {median(sm):.2f} |"
        )
    lines.append(
        f"| hard paste (no feather, at {resolutions[-1]} px) | - | - | "
        f"{median([r['seam_hard'] for r in ok]):.2f} |"
    )
    lines.append(
        f"| unmasked edit | {median([r['whole_outside'] for r in ok]):.2f} / "
        f"{max(r['whole_outside'] for r in ok):.2f} | 100 % | "
        f"{median([r['seam_whole'] for r in ok]):.2f} |"
    )
    per = [
        "",
        f"At the default ({default} px), per region and direction: inside share, median "
        "(unmasked edit's change inside, median, 1/255).",
        "",
        "| region | " + " | ".join(DIRECTIONS) + " |",
        "|---|" + "---|" * len(DIRECTIONS),
    ]
    for m in MASKS:
        cells = []
        for d in DIRECTIONS:
            sel = [r for r in ok if r["mask"] == m and r["direction"] == d]
            cells.append(
                f"{median([r[f'inside_{default}'] for r in sel]) * 100:.0f} % "
                f"({median([r['whole_inside'] for r in sel]):.1f})"
            )
        per.append(f"| {m} | " + " | ".join(cells) + " |")
    thin = sum(1 for r in ok if r[f"seam_{default}"] != r[f"seam_{default}"])
    note = (
        f"\n\nFaces where no region could be placed (no face found on the render): {len(failed)}"
        f" of {len({r['face'] for r in rows})}. Edits whose region is too thin to have an inside "
        f"away from its border (no seam measured): {thin} of {len(ok)}."
    )
    return "\n".join(lines + per) + note


def plot(rows: list[dict[str, Any]], resolutions: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if "error" not in r]
    fig, ax1 = plt.subplots(figsize=(6, 3.4), dpi=110)
    ins = [median([r[f"inside_{br}"] for r in ok]) * 100 for br in resolutions]
    sm = [median([r[f"seam_{br}"] for r in ok]) for br in resolutions]
    ax1.plot(resolutions, ins, "o-", color="#2563a8", label="inside: % of the unmasked edit")
    ax1.axhline(80, color="#2563a8", ls=":", lw=1)
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(resolutions, [str(r) for r in resolutions])
    ax1.set_xlabel("blend from (px)")
    ax1.set_ylabel("inside (%)", color="#2563a8")
    ax2 = ax1.twinx()
    ax2.plot(resolutions, sm, "s--", color="#b5452b", label="seam: border ring / inside")
    ax2.axhline(median([r["seam_hard"] for r in ok]), color="#b5452b", ls=":", lw=1)
    ax2.set_ylabel("seam (hard paste: dotted)", color="#b5452b")
    fig.legend(loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path)
    plt.close(fig)


def timing(G: Any, ws: torch.Tensor, model_dir: Path, repeats: int) -> dict[str, float]:
    """Local render (original cached) vs plain render of the same edit, interleaved."""
    R = G.img_resolution
    smile = load_direction(model_dir, "smile")
    w = ws[:1]
    with torch.no_grad():
        regions = preset_regions(Image.fromarray(to_uint8(G.synthesis(w))[0]))
    weights = feather_mask(torch.from_numpy(regions["mouth"]).float()[None, None], 8)
    run = OriginalRun.compute(G.synthesis, w, default_blend_res(R))
    plain, local, first = [], [], []
    for k in range(repeats):
        we = apply_directions(w, [(smile, ((k % 7) - 3) * 0.5)])
        t0 = time.perf_counter()
        with torch.no_grad():
            G.synthesis(we)
        t1 = time.perf_counter()
        render_local(G.synthesis, we, run, weights)
        t2 = time.perf_counter()
        OriginalRun.compute(G.synthesis, w, default_blend_res(R))  # what a new face costs
        t3 = time.perf_counter()
        plain.append(t1 - t0)
        local.append(t2 - t1)
        first.append(t3 - t2)
    return {
        "plain_ms": median(plain) * 1000,
        "local_ms": median(local) * 1000,
        "original_run_ms": median(first) * 1000,
        "ratio": median(local) / median(plain),
    }


async def app_sliders(moves: int, gap_s: float) -> dict[str, float]:
    """Slider latency in the real app, with and without a region, moves interleaved."""
    import httpx
    from app import Session, pct, serve, wait_up

    from stylelens.sessions.protocol import Frame

    with serve(None) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            await wait_up(http)
            s = Session(http, url.replace("http", "ws", 1))
            await s.open()
            await s.send({"type": "random_face", "seed": 12})
            await s.until("done", "random")
            await s.send({"type": "region_preset", "preset": "mouth"})
            found, _ = await s.until("done", "region")
            region = {"mask": found["mask"]}

            async def once(scales: dict[str, float], with_region: bool) -> float:
                msg: dict[str, Any] = {"type": "render_edit", "scales": scales}
                if with_region:
                    msg["region"] = region
                t0 = time.perf_counter()
                await s.send(msg)
                queued, _ = await s.until("queued", "render")
                while True:
                    raw = await s.ws.recv()
                    if isinstance(raw, bytes) and Frame.decode(raw).job == queued["job"]:
                        return time.perf_counter() - t0

            for k in range(4):  # warm-up, both kinds
                await once({"smile": 0.5 * k}, k % 2 == 0)
            lat: dict[bool, list[float]] = {True: [], False: []}
            for i in range(2 * moves):
                await asyncio.sleep(gap_s)
                lat[i % 2 == 0].append(await once({"smile": ((i % 7) - 3) * 0.5}, i % 2 == 0))
            await s.ws.close()
    return {
        "region_p50_ms": pct(lat[True], 0.5) * 1000,
        "region_p95_ms": pct(lat[True], 0.95) * 1000,
        "plain_p50_ms": pct(lat[False], 0.5) * 1000,
        "plain_p95_ms": pct(lat[False], 0.95) * 1000,
    }


def label(img: Image.Image, text: str) -> Image.Image:
    out = Image.new("RGB", (img.width, img.height + 18), "white")
    out.paste(img, (0, 18))
    ImageDraw.Draw(out).text((4, 3), text, fill="black")
    return out


def outline(img: np.ndarray, region: np.ndarray) -> Image.Image:
    """The image with the region's border drawn in."""
    r = torch.from_numpy(region).float()[None, None]
    ring = border_ring(r, 1).numpy() & ~region
    out = img.copy()
    out[ring] = (255, 40, 40)
    return Image.fromarray(out)


def picture(G: Any, ws: torch.Tensor, model_dir: Path, path: Path) -> None:
    """Rows: faces; columns: original with the region, unmasked edit, local edit, and for the
    first row a hair transfer from another face; a blend-resolution strip at the bottom."""
    R = G.img_resolution
    dirs = {d: load_direction(model_dir, d) for d in DIRECTIONS}
    plan = [(0, "mouth", "smile", 3.0), (1, "hair", "hair_lightness", 3.0), (2, "eyes", "age", 3.0)]
    rows = []
    for face, mask_name, dname, amount in plan:
        w = ws[face : face + 1]
        with torch.no_grad():
            original = G.synthesis(w)
        o8 = to_uint8(original)[0]
        region = preset_regions(Image.fromarray(o8))[mask_name]
        weights = feather_mask(torch.from_numpy(region).float()[None, None], default_feather(R))
        we = apply_directions(w, [(dirs[dname], amount)])
        with torch.no_grad():
            whole = G.synthesis(we)
        run = OriginalRun.compute(G.synthesis, w, default_blend_res(R))
        local = render_local(G.synthesis, we, run, weights)
        cells = [
            label(outline(o8, region), f"original, {mask_name} region"),
            label(Image.fromarray(to_uint8(whole)[0]), f"{dname} +{amount:g}, whole face"),
            label(
                Image.fromarray(to_uint8(local)[0]), f"{dname} +{amount:g}, only the {mask_name}"
            ),
        ]
        rows.append(cells)
    # Region transfer: hair from another face (a seed), all its styles, inside the hair region.
    w = ws[3:4]
    with torch.no_grad():
        original = G.synthesis(w)
        ref = G.mapping(z_from_seed(7, G.z_dim).float(), truncation_psi=0.7)
        ref_img = G.synthesis(ref)
    o8 = to_uint8(original)[0]
    hair = preset_regions(Image.fromarray(o8))["hair"]
    weights = feather_mask(torch.from_numpy(hair).float()[None, None], default_feather(R))
    run = OriginalRun.compute(G.synthesis, w, default_blend_res(R))
    moved = render_local(G.synthesis, style_mix(w, ref, "all"), run, weights)
    rows.append(
        [
            label(outline(o8, hair), "original, hair region"),
            label(Image.fromarray(to_uint8(ref_img)[0]), "face B (seed 7)"),
            label(Image.fromarray(to_uint8(moved)[0]), "B's hair on the original"),
        ]
    )
    # Blend resolutions for the first row's edit.
    w = ws[:1]
    with torch.no_grad():
        o8 = to_uint8(G.synthesis(w))[0]
    region = preset_regions(Image.fromarray(o8))["mouth"]
    weights = feather_mask(torch.from_numpy(region).float()[None, None], default_feather(R))
    we = apply_directions(w, [(dirs["smile"], 3.0)])
    strip = []
    for br in (8, 32, R):
        run = OriginalRun.compute(G.synthesis, w, br)
        crop = to_uint8(render_local(G.synthesis, we, run, weights))[0]
        ys, xs = np.nonzero(region)
        cy, cx = int(ys.mean()), int(xs.mean())
        half = R // 6
        y0, x0 = max(0, cy - half), max(0, cx - half)
        zoom = Image.fromarray(crop[y0 : y0 + 2 * half, x0 : x0 + 2 * half]).resize(
            (R, R), Image.Resampling.NEAREST
        )
        strip.append(label(zoom, f"blend from {br} px (mouth, zoomed)"))
    rows.append(strip)
    cw, ch = rows[0][0].size
    sheet = Image.new("RGB", (cw * 3, ch * len(rows)), "white")
    for y, row in enumerate(rows):
        for x, cell in enumerate(row):
            sheet.paste(cell, (x * cw, y * ch))
    sheet.save(path, quality=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="synthfaces-256")
    ap.add_argument("--faces", type=int, default=32)
    ap.add_argument("--part", action="append", choices=["quality", "time", "app", "picture"])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--slider-moves", type=int, default=40)
    ap.add_argument("--slider-gap", type=float, default=0.15)
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument(
        "--from-log", action="store_true", help="quality: tabulate docs/logs/local_edit.jsonl"
    )
    args = ap.parse_args()
    parts = args.part or ["quality", "time", "app", "picture"]
    model_dir = model_dir_for(ROOT / "models", args.model)
    G, _ = load_generator(model_dir)
    G.eval().requires_grad_(False)
    encoder = load_encoder(model_dir)
    assert encoder is not None, f"{args.model} has no encoder"
    ws = encode_synthfaces(encoder, args.faces, G.img_resolution)
    R = G.img_resolution
    resolutions = [r for r in G.synthesis.block_resolutions if r > 4]
    default = default_blend_res(R)
    stamp = (
        f"Measured {datetime.date.today()} on {machine()}, model {args.model}, "
        f"`python benchmarks/local_edit.py"
    )
    faces = (
        f"{args.faces} held-out SynthFaces (seeds from {ENCODED_FIRST_SEED:,}) encoded by the "
        "model's encoder"
    )
    if "quality" in parts:
        if args.from_log:
            rows = [json.loads(line) for line in LOG.read_text().splitlines()]
        else:
            rows = measure(G, ws, args.faces, model_dir)
            LOG.parent.mkdir(exist_ok=True)
            LOG.write_text("".join(json.dumps(r) + "\n" for r in rows))
        table = quality_table(rows, resolutions, default)
        print(table)
        if args.write_docs:
            IMAGES.mkdir(exist_ok=True)
            plot(rows, resolutions, IMAGES / "local-editing-blend.png")
            write_docs(
                "local-quality",
                f"{stamp} --part quality --write-docs`. {faces}; regions eyes, mouth, hair found "
                f"on each face's render; directions {', '.join(DIRECTIONS)} at +{AMOUNT:g} units; "
                f"feather {default_feather(R)} px.\n\n{table}",
                DOC,
            )
    if "time" in parts:
        t = timing(G, ws, model_dir, args.repeats)
        print(t)
        if args.write_docs:
            body = (
                f"{stamp} --part time --write-docs` (medians of {args.repeats}, interleaved; "
                f"mouth region, blend from {default} px).\n\n"
                "| plain edit render | local edit render (original cached) | ratio | "
                "the original's run (once per face) |\n|---|---|---|---|\n"
                f"| {t['plain_ms']:.1f} ms | {t['local_ms']:.1f} ms | {t['ratio']:.2f}x "
                f"(goal <= 1.5x) | {t['original_run_ms']:.1f} ms |"
            )
            write_docs("local-time", body, DOC)
            write_docs("local-time", body, PERF)
    if "app" in parts:
        a = asyncio.run(app_sliders(args.slider_moves, args.slider_gap))
        print(a)
        if args.write_docs:
            body = (
                f"{stamp} --part app --write-docs` (`stylelens serve` with the embedded model, a "
                f"random face, its mouth preset; {args.slider_moves} moves each, "
                f"{args.slider_gap * 1000:.0f} ms apart, with and without the region "
                "interleaved).\n\n| slider move -> new frame | p50 | p95 |\n|---|---|---|\n"
                f"| with the region | {a['region_p50_ms']:.0f} ms | {a['region_p95_ms']:.0f} ms "
                "(goal <= 150 ms) |\n"
                f"| whole face | {a['plain_p50_ms']:.0f} ms | {a['plain_p95_ms']:.0f} ms |"
            )
            write_docs("local-app", body, DOC)
            write_docs("local-app", body, PERF)
    if "picture" in parts and args.write_docs:
        IMAGES.mkdir(exist_ok=True)
        picture(G, ws, model_dir, IMAGES / "local-editing.jpg")


if __name__ == "__main__":
    main()
