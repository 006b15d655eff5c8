"""``stylelens edit``: directions, style mixing and truncation applied to a latent file, on the
whole face or, with ``--mask`` / ``--preset``, only inside a region (a local edit)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stylelens.cli_args import Commands, add_device, add_model, add_models_dir
from stylelens.directions.core import DirectionError
from stylelens.editing.regions import PRESETS
from stylelens.errors import LocalEditError
from stylelens.settings import Settings

if TYPE_CHECKING:
    import torch

DIR_SPEC = re.compile(r"^([a-z0-9][a-z0-9_.-]*)=([+-]?(?:\d+(?:\.\d*)?|\.\d+))$")


def register(commands: Commands, settings: Settings) -> None:
    p = commands.add(
        "edit", "use", help="apply directions, style mixing and truncation to a latent file"
    )
    p.add_argument(
        "latent", type=Path, help="latent .safetensors (from inversion or --save-latent)"
    )
    add_model(p, settings)
    add_models_dir(p, settings)
    add_device(p, settings)
    p.add_argument(
        "--dir",
        action="append",
        default=[],
        metavar="NAME=AMOUNT",
        help="move a slider, in units (sd), e.g. smile=+2; repeatable",
    )
    p.add_argument(
        "--mix",
        action="append",
        default=[],
        metavar="REF:LAYERS",
        help="take coarse|middle|fine|all (or ws indices) from another face: a latent file or "
        "seed=N; with --mask or --preset, only inside the region (region transfer)",
    )
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi toward w_avg")
    p.add_argument("--out", type=Path, required=True, help="edited image, e.g. edited.png")
    p.add_argument("--save-latent", type=Path, default=None, help="also write the edited latent")
    _add_region_options(p)
    p.set_defaults(func=cmd_edit)


def _add_region_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--mask",
        type=Path,
        default=None,
        help="edit only inside this region: a square image, white (or opaque) where the edit "
        "applies, at the model's resolution or a whole multiple of it",
    )
    p.add_argument(
        "--preset",
        choices=PRESETS,
        default=None,
        help="edit only inside a region found on the face (needs the align extra)",
    )
    p.add_argument(
        "--blend-res",
        type=int,
        default=None,
        help="resolution from which the original and the edit are blended (default: 1/8 of the "
        "model's resolution; lower: softer seam, weaker edit near the edge)",
    )
    p.add_argument(
        "--feather",
        type=int,
        default=None,
        help="pixels over which the edit fades out beyond the region (default: 8 per 256 px)",
    )


def region_mask(args: argparse.Namespace, G: Any, original_image: torch.Tensor) -> torch.Tensor:
    """The binary region [1, 1, R, R] that ``--mask`` or ``--preset`` asks for (notes printed)."""
    import torch
    from PIL import Image, UnidentifiedImageError

    from stylelens.editing.regions import preset_mask
    from stylelens.masks import MaskError, read_mask
    from stylelens.render import to_uint8

    R = G.img_resolution
    if args.mask is not None and args.preset is not None:
        raise LocalEditError("give --mask or --preset, not both")
    if args.preset is not None:
        face = Image.fromarray(to_uint8(original_image)[0])
        return torch.from_numpy(preset_mask(args.preset, face)).float()[None, None]
    try:
        with Image.open(args.mask) as im:
            image = im.convert("RGBA" if "A" in im.getbands() else "L")
    except FileNotFoundError:
        raise LocalEditError(f"--mask {args.mask}: no such file") from None
    except (UnidentifiedImageError, OSError) as e:
        raise LocalEditError(f"--mask {args.mask}: not an image we can read ({e})") from None
    try:
        mask = read_mask(
            image, R, marks="the region to edit", whole="that is the plain edit: drop --mask"
        )
    except MaskError as e:
        raise LocalEditError(f"--mask {args.mask}: {e}") from None
    for note in mask.notes:
        print(f"note: {note}", file=sys.stderr)
    return mask.hole


def local_render(
    args: argparse.Namespace,
    G: Any,
    ws_original: torch.Tensor,
    ws_edited: torch.Tensor,
    noise: dict[str, torch.Tensor] | None,
) -> torch.Tensor | None:
    """The local edit's image, or None when no region was asked for (a plain edit)."""
    from stylelens.editing.local import (
        OriginalRun,
        check_blend_res,
        default_blend_res,
        default_feather,
        feather_mask,
        render_local,
    )

    if args.mask is None and args.preset is None:
        if args.blend_res is not None or args.feather is not None:
            raise LocalEditError("--blend-res and --feather need a region: add --mask or --preset")
        return None
    R = G.img_resolution
    blend_res = check_blend_res(
        G.synthesis, args.blend_res if args.blend_res is not None else default_blend_res(R)
    )
    feather = args.feather if args.feather is not None else default_feather(R)
    original = OriginalRun.compute(G.synthesis, ws_original, blend_res, noise=noise)
    region = region_mask(args, G, original.image).to(ws_edited.device)
    weights = feather_mask(region, feather)
    return render_local(G.synthesis, ws_edited, original, weights, noise=noise)


def parse_dir_spec(spec: str) -> tuple[str, float]:
    """``"smile=+2"`` -> ("smile", 2.0); DirectionError for anything else."""
    m = DIR_SPEC.match(spec.strip())
    if m is None:
        raise DirectionError(f"--dir {spec!r}: use NAME=AMOUNT, e.g. smile=+2 or age=-1.5")
    return m[1], float(m[2])


def cmd_edit(args: argparse.Namespace) -> None:
    import torch

    from stylelens.directions.edit import apply_directions, style_mix, truncate_toward
    from stylelens.directions.store import load_direction
    from stylelens.latents import Latent, load_latent, save_latent
    from stylelens.render import image_grid, to_uint8, z_from_seed

    specs = [parse_dir_spec(s) for s in args.dir]
    mixes = []
    for m in args.mix:
        ref, sep, layers = m.rpartition(":")
        if not sep or not ref or not layers:
            raise DirectionError(f"--mix {m!r}: use REF:LAYERS, e.g. ref.safetensors:coarse")
        seed = re.fullmatch(r"seed=(\d+)", ref)
        mixes.append((int(seed[1]) if seed else Path(ref), layers))
    if args.out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise DirectionError(f"--out {args.out}: use a .png, .jpg or .webp file name")
    from stylelens.checkpoints import load_generator, model_dir_for
    from stylelens.networks.runtime import resolve_device

    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise DirectionError(str(exc)) from exc
    model_dir = model_dir_for(args.models_dir, args.model)
    G, _ = load_generator(model_dir, device=device)
    latent = load_latent(args.latent)
    latent.check_fits(num_ws=G.num_ws, w_dim=G.w_dim, model_id=args.model)
    edits = [(load_direction(model_dir, name), amount) for name, amount in specs]
    ws = latent.ws
    for ref, layers in mixes:
        if isinstance(ref, int):
            with torch.no_grad():
                ref_ws = G.mapping(z_from_seed(ref, G.z_dim).float().to(G.mapping.w_avg)).cpu()
        else:
            ref_latent = load_latent(ref)
            ref_latent.check_fits(num_ws=G.num_ws, w_dim=G.w_dim, model_id=args.model)
            ref_ws = ref_latent.ws
        ws = style_mix(ws, ref_ws, layers)
    if args.trunc != 1.0:
        ws = truncate_toward(ws, G.mapping.w_avg.cpu(), args.trunc)
    ws = apply_directions(ws, edits)
    noise = {k: v.to(device) for k, v in latent.noise.items()}
    with torch.no_grad():
        img = local_render(args, G, latent.ws.to(device), ws.to(device), noise or None)
        if img is None:
            img = G.synthesis(ws.to(device), noise=noise or None)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        image_grid([to_uint8(img)[0]]).save(args.out)
    except (OSError, ValueError) as exc:
        raise DirectionError(f"cannot write {args.out}: {exc}") from exc
    print(f"wrote {args.out}")
    if args.save_latent is not None:
        if args.mask is not None or args.preset is not None:
            print(
                "note: the saved latent is the whole-face edit; a local edit is the original "
                "latent, the edited one and the mask together (re-run this command to render it)",
                file=sys.stderr,
            )
        meta = {
            **latent.metadata,
            "model": args.model,
            "edit": json.dumps({"dir": args.dir, "mix": args.mix, "trunc": args.trunc}),
        }
        save_latent(args.save_latent, Latent(ws=ws, noise=latent.noise, metadata=meta))
        print(f"wrote {args.save_latent}")
