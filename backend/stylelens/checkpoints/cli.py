"""``stylelens convert``, ``convert-encoder`` and ``models``: model directories from
checkpoints, and the list of installed models."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stylelens.cli_args import Commands, UsageError, add_models_dir
from stylelens.settings import Settings


def register(commands: Commands, settings: Settings) -> None:
    p = commands.add(
        "convert", "models", help="convert an NVIDIA .pkl or rosinality .pt into a model directory"
    )
    p.add_argument(
        "src", type=Path, help="stylegan2-ada-pytorch .pkl or rosinality stylegan2-pytorch .pt"
    )
    p.add_argument("--id", required=True, dest="model_id", help="model id, e.g. ffhq-1024")
    add_models_dir(p, settings)
    p.add_argument("--name", default="", help="human-readable name for the model card")
    p.add_argument("--license", default=None, dest="license_note", help="licence note for the card")
    p.add_argument("--no-discriminator", action="store_true", help="do not convert D")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model directory")
    p.set_defaults(func=cmd_convert)

    p = commands.add(
        "convert-encoder",
        "models",
        help="install an official pSp/e4e encoder (.pt) for a model (its encoder.safetensors)",
    )
    p.add_argument("src", type=Path, help="e.g. e4e_ffhq_encode.pt or psp_ffhq_encode.pt")
    p.add_argument("--model", required=True, help="id of the model whose ws it makes")
    p.add_argument(
        "--other-generator",
        action="store_true",
        help="install it even though the generator in the file is not the model's",
    )
    add_models_dir(p, settings)
    p.set_defaults(func=cmd_convert_encoder)

    p = commands.add("models", "models", help="list the models in the models directory")
    add_models_dir(p, settings)
    p.set_defaults(func=cmd_models)


def cmd_convert(args: argparse.Namespace) -> None:
    from stylelens.checkpoints.convert import convert_checkpoint
    from stylelens.checkpoints.native import describe

    if not args.src.is_file():
        raise UsageError(f"{args.src}: no such file")
    card = convert_checkpoint(
        args.src,
        model_id=args.model_id,
        models_dir=args.models_dir,
        name=args.name,
        license_note=args.license_note,
        with_discriminator=not args.no_discriminator,
        overwrite=args.overwrite,
    )
    print(f"wrote {args.models_dir / card.id}")
    print(json.dumps(describe(card), indent=2))


def cmd_convert_encoder(args: argparse.Namespace) -> None:
    from stylelens.checkpoints.encoder_pt import convert_encoder
    from stylelens.checkpoints.native import model_dir_for

    if not args.src.is_file():
        raise UsageError(f"{args.src}: no such file")
    path = convert_encoder(
        args.src,
        model_dir=model_dir_for(args.models_dir, args.model),
        other_generator=args.other_generator,
    )
    print(f"wrote {path}")


def cmd_models(args: argparse.Namespace) -> None:
    from stylelens.checkpoints import list_models, load_card
    from stylelens.checkpoints.native import describe

    ids = list_models(args.models_dir)
    if not ids:
        print(f"no models in {args.models_dir}")
    for model_id in ids:
        card = load_card(args.models_dir / model_id)
        print(json.dumps(describe(card)))
