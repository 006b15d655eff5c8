"""Preview quality per resolution: PSNR of each preview against the downsampled final image.

Four variants (seed 000, Fig. 4 b-e, as numbers): the raw skip image, instance norm in front of
the generator's own toRGB, the fitted head, the fitted head + per-image AdaIN colour fit. For
the embedded model (its shipped ``preview_heads.safetensors``) and for a random-weight
FFHQ-shaped generator whose heads this script fits itself. Writes the table into
``docs/preview-heads.md`` and a picture strip into ``docs/images/preview-heads.png``.

    python benchmarks/preview_heads.py --write-docs
"""

from __future__ import annotations

import argparse
import datetime
import time
from typing import Any

import numpy as np
import torch
from common import ROOT, machine, write_docs
from PIL import Image

from stylelens.checkpoints import load_generator, model_dir_for
from stylelens.checkpoints.preview_heads import load_preview_heads
from stylelens.evaluation.preview_heads import VARIANTS, evaluate_preview_heads, preview_variants
from stylelens.networks.preview import (
    FitConfig,
    PreviewHeads,
    downsample_to,
    fit_preview_heads,
    preview_targets,
    sample_ws,
)
from stylelens.networks.stylegan2 import Generator, GeneratorConfig
from stylelens.render import to_uint8

DOC = ROOT / "docs" / "preview-heads.md"
LABELS = {
    "raw": "raw skip image",
    "instance_norm": "instance norm only",
    "fitted": "fitted head",
    "fitted_adain": "fitted head + AdaIN fit",
}


def table_md(table: dict[int, dict[str, float]]) -> str:
    lines = [
        "| resolution | " + " | ".join(LABELS[v] for v in VARIANTS) + " |",
        "|---|" + "---|" * len(VARIANTS),
    ]
    for r, row in table.items():
        best = max(row, key=lambda k: row[k])
        cells = [f"**{row[v]:.2f}**" if v == best else f"{row[v]:.2f}" for v in VARIANTS]
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def strip(G: Generator, heads: PreviewHeads, seed: int, cell: int = 96) -> Image.Image:
    """Rows: the four variants and the downsampled final image; columns: resolutions."""
    gen = torch.Generator().manual_seed(seed)
    untrained = PreviewHeads(G, heads.resolutions).requires_grad_(False)
    with torch.no_grad():
        ws = sample_ws(G, 1, psi_range=(0.7, 0.7), generator=gen)
        outs, img = preview_targets(G, ws, heads.resolutions)
    cols = []
    for r, out in outs.items():
        target = downsample_to(img, r)
        images = preview_variants(G, heads, untrained, out, ws, target)
        col = [images[v] for v in VARIANTS] + [target]
        cols.append([_cell(t, cell) for t in col])
    sheet = Image.new("RGB", (cell * len(cols), cell * len(cols[0])), "white")
    for i, col in enumerate(cols):
        for j, im in enumerate(col):
            sheet.paste(im, (i * cell, j * cell))
    return sheet


def _cell(t: torch.Tensor, size: int) -> Image.Image:
    arr = to_uint8(t.clamp(-1, 1))[0]
    return Image.fromarray(arr).resize((size, size), Image.Resampling.NEAREST)


def random_ffhq(resolution: int, fit_steps: int, batch: int) -> tuple[dict, float, GeneratorConfig]:
    """Random FFHQ-shaped generator (NVIDIA's config for that resolution): fit heads, evaluate."""
    base = 16384 if resolution <= 256 else 32768
    cfg = GeneratorConfig(img_resolution=resolution, channel_base=base, mapping_layers=8)
    torch.manual_seed(0)
    G = Generator(cfg).eval().requires_grad_(False)
    heads = PreviewHeads(G)
    t0 = time.perf_counter()
    fit_preview_heads(G, heads, FitConfig(steps=fit_steps, batch=batch), progress=True)
    seconds = time.perf_counter() - t0
    return evaluate_preview_heads(G, heads, samples=4), seconds, cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="synthfaces-256")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--ffhq-res", type=int, default=256)
    ap.add_argument("--ffhq-fit-steps", type=int, default=100)
    ap.add_argument("--ffhq-batch", type=int, default=2)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    torch.set_grad_enabled(True)
    model_dir = model_dir_for(ROOT / "models", args.model)
    G, card = load_generator(model_dir)
    heads = load_preview_heads(model_dir, G)
    if heads is None:
        raise SystemExit(f"{args.model} has no preview heads: run stylelens fit-preview-heads")
    table = evaluate_preview_heads(G, heads, samples=args.samples)
    print(table_md(table))
    sheet = strip(G, heads, seed=3)
    ffhq, ffhq_s, ffhq_cfg = random_ffhq(args.ffhq_res, args.ffhq_fit_steps, args.ffhq_batch)
    print(table_md(ffhq))
    if not args.write_docs:
        return
    (ROOT / "docs" / "images").mkdir(exist_ok=True)
    sheet.save(ROOT / "docs" / "images" / "preview-heads.png")
    fit: dict[str, Any] = dict(card.model_extra or {}).get("preview_heads", {})
    body = "\n".join(
        [
            f"Measured {datetime.date.today()} on {machine()} with "
            "`python benchmarks/preview_heads.py --write-docs`: mean PSNR (dB) over "
            f"{args.samples} fresh samples (random z, psi ~ U(0.5, 1)) of each resolution's "
            "preview against the final image box-downsampled to that resolution; best per "
            "row in bold.",
            "",
            f"**{card.id}** (heads fitted with `stylelens fit-preview-heads`: "
            f"{fit.get('steps', '?')} steps, batch {fit.get('batch', '?')}, lr "
            f"{fit.get('lr', '?')}, {fit.get('seconds', '?')} s; the skip image is used "
            f"without the AdaIN fit at {fit.get('raw_resolutions', [])}):",
            "",
            table_md(table),
            "",
            f"**Random-weight FFHQ-shaped generator** ({ffhq_cfg.img_resolution} px, "
            f"channel_base {ffhq_cfg.channel_base}, channel_max {ffhq_cfg.channel_max}, "
            f"{ffhq_cfg.mapping_layers} mapping layers; heads fitted here for "
            f"{args.ffhq_fit_steps} steps at batch {args.ffhq_batch} in {ffhq_s:.0f} s; "
            "4 samples):",
            "",
            table_md(ffhq),
            "",
            "![preview strip](images/preview-heads.png)",
            "",
            f"The strip: one sample of {card.id} (psi 0.7); columns are the resolutions "
            f"{heads.resolutions}; rows, top to bottom: raw skip image, instance norm only, "
            "fitted head, fitted head + AdaIN fit, and the final image downsampled (the "
            "target of every row).",
        ]
    )
    write_docs("preview-heads-table", body, doc=DOC)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
