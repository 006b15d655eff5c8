"""``stylelens render``: images of a model's faces from seeds."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stylelens.cli_args import (
    Commands,
    UsageError,
    add_device,
    add_model,
    add_models_dir,
    check_writable,
    save_image,
)
from stylelens.settings import Settings


def register(commands: Commands, settings: Settings) -> None:
    p = commands.add("render", "use", help="render images from seeds")
    add_models_dir(p, settings)
    add_model(p, settings)
    p.add_argument(
        "--seeds", default="0-7", help="seeds, e.g. 0-7 or 1,5,9-11 (default: %(default)s)"
    )
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi (default: %(default)s)")
    p.add_argument("--trunc-cutoff", type=int, default=None, help="truncate only the first N ws")
    p.add_argument(
        "--noise-mode",
        choices=["const", "random", "none"],
        default="const",
        help="per-layer noise (default: %(default)s)",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--out", type=Path, help="write one grid image (default: grid.png)")
    out.add_argument("--outdir", type=Path, help="write one PNG per seed: seed0000.png, ...")
    p.add_argument("--cols", type=int, default=None, help="grid columns (default: square-ish)")
    add_device(p, settings)
    p.add_argument(
        "--precision",
        choices=["float32", "bfloat16"],
        default=settings.precision,
        help="bfloat16 autocast is ~2x faster on CPUs with AMX (default: %(default)s)",
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=settings.compile,
        help="torch.compile the synthesis network: faster for many seeds, slow first batch",
    )
    p.set_defaults(func=cmd_render)


def cmd_render(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from stylelens.checkpoints import load_generator, model_dir_for
    from stylelens.networks.runtime import resolve_device
    from stylelens.render import image_grid, parse_seeds, render_seeds

    try:
        seeds = parse_seeds(args.seeds)
        device = resolve_device(args.device)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if args.cols is not None and args.cols < 1:
        raise UsageError("--cols must be at least 1")
    out = args.out if args.out is not None or args.outdir is not None else Path("grid.png")
    if out is not None and out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise UsageError(f"--out {out}: use a .png, .jpg or .webp file name")
    check_writable(out.parent if out is not None else args.outdir)

    G, card = load_generator(model_dir_for(args.models_dir, args.model), device=device)
    if args.trunc_cutoff is not None and not 0 <= args.trunc_cutoff <= G.num_ws:
        raise UsageError(f"--trunc-cutoff must be between 0 and num_ws={G.num_ws}")
    images = []
    progress = tqdm(total=len(seeds), desc=f"render {card.id}", unit="img", file=sys.stderr)
    for seed, img in render_seeds(
        G,
        seeds,
        truncation_psi=args.trunc,
        truncation_cutoff=args.trunc_cutoff,
        noise_mode=args.noise_mode,
        precision=args.precision,
        compile=args.compile,
    ):
        if args.outdir is not None:
            save_image(image_grid([img]), args.outdir / f"seed{seed:04d}.png")
        else:
            images.append(img)
        progress.update()
    progress.close()
    if out is not None:
        save_image(image_grid(images, args.cols), out)
        print(f"wrote {out} ({len(images)} images, {card.generator.img_resolution}px)")
    else:
        print(f"wrote {len(seeds)} images to {args.outdir}")
