"""``stylelens edit``'s region options (``--mask``, ``--preset``, ``--blend-res``, ``--feather``)
and the local render they ask for; the edit itself is ``stylelens.directions.cli.cmd_edit``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from stylelens.editing.local import (
    LocalEditError,
    OriginalRun,
    check_blend_res,
    default_blend_res,
    default_feather,
    feather_mask,
    render_local,
)
from stylelens.editing.regions import PRESETS


def add_region_options(p: argparse.ArgumentParser) -> None:
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
