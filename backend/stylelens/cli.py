"""The ``stylelens`` command.

User mistakes (unknown model, malformed seeds, unwritable output, bad checkpoint) print one
clear line to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from stylelens import __version__
from stylelens.api.cli import register as register_serve
from stylelens.cli_args import add_device, add_model, add_models_dir
from stylelens.data.align_cli import register as register_align
from stylelens.directions.cli import register as register_directions
from stylelens.errors import StyleLensError
from stylelens.fetch.cli import register as register_fetch
from stylelens.inversion.cli import register as register_inversion
from stylelens.restoration.cli import register as register_restoration
from stylelens.settings import Settings
from stylelens.training.cli import register as register_training
from stylelens.training.encoder_cli import register as register_encoder_training
from stylelens.training.optimizer_cli import register as register_optimizer_training

EXIT_USAGE = 2


class UsageError(StyleLensError):
    """A command-line mistake; exit status 2."""


def _add_model_args(p: argparse.ArgumentParser, settings: Settings) -> None:
    add_models_dir(p, settings)


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stylelens", description="StyleLens: StyleGAN2 face editing from the command line."
    )
    parser.add_argument("--version", action="version", version=f"stylelens {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("render", help="render images from seeds")
    _add_model_args(p, settings)
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

    p = sub.add_parser(
        "convert", help="convert an NVIDIA .pkl or rosinality .pt into a model directory"
    )
    p.add_argument(
        "src", type=Path, help="stylegan2-ada-pytorch .pkl or rosinality stylegan2-pytorch .pt"
    )
    p.add_argument("--id", required=True, dest="model_id", help="model id, e.g. ffhq-1024")
    _add_model_args(p, settings)
    p.add_argument("--name", default="", help="human-readable name for the model card")
    p.add_argument("--license", default=None, dest="license_note", help="licence note for the card")
    p.add_argument("--no-discriminator", action="store_true", help="do not convert D")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model directory")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser(
        "convert-encoder",
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

    p = sub.add_parser(
        "synthfaces", help="render procedural faces with attribute labels into a folder"
    )
    p.add_argument("--n", type=int, required=True, help="number of faces")
    p.add_argument("--res", type=int, default=256, help="resolution, 64-512 (default: %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="output folder (PNGs + labels.jsonl)")
    p.add_argument("--first-seed", type=int, default=0, help="seed of the first face (default: 0)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.set_defaults(func=cmd_synthfaces)

    p = sub.add_parser(
        "train-attributes", help="train the attribute network on SynthFaces (labels + FAD features)"
    )
    _add_model_args(p, settings)
    p.add_argument("--id", default="attributes-synthfaces", dest="model_id", help="model id")
    p.add_argument("--n", type=int, default=30_000, help="training faces (default: %(default)s)")
    p.add_argument("--val", type=int, default=2_000, help="held-out faces (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=10, help="epochs (default: %(default)s)")
    p.add_argument("--batch", type=int, default=64, help="batch size (default: %(default)s)")
    p.add_argument("--res", type=int, default=128, help="input resolution (default: %(default)s)")
    p.add_argument(
        "--precision",
        choices=["float32", "bfloat16"],
        default="bfloat16",
        help="CPU autocast; bfloat16 is ~3.5x faster with AMX (default: %(default)s)",
    )
    p.add_argument("--workers", type=int, default=None, help="render processes (default: all)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model directory")
    p.set_defaults(func=cmd_train_attributes)

    p = sub.add_parser(
        "eval-model", help="FAD and attribute coverage of a model against held-out SynthFaces"
    )
    _add_model_args(p, settings)
    add_model(p, settings)
    p.add_argument(
        "--attributes",
        default="attributes-synthfaces",
        help="attribute network model id (default: %(default)s)",
    )
    p.add_argument("--n", type=int, default=5000, help="samples per set (default: %(default)s)")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi (default: %(default)s)")
    p.add_argument("--batch", type=int, default=16, help="generator batch (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated z (default: 0)")
    add_device(p, settings)
    p.add_argument("--precision", choices=["float32", "bfloat16"], default=settings.precision)
    p.add_argument("--workers", type=int, default=None, help="render processes (default: all)")
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    p.add_argument(
        "--record",
        action="store_true",
        help="store the report in the model's card.json (field 'evaluation')",
    )
    p.set_defaults(func=cmd_eval_model)

    register_training(sub, settings)  # train, export
    register_encoder_training(sub, settings)  # train-encoder
    register_optimizer_training(sub, settings)  # train-optimizer
    register_align(sub, settings)  # align
    register_directions(sub, settings)  # directions compute|import|list|sheet, edit
    register_inversion(sub, settings)  # invert, fit-preview-heads
    register_restoration(sub, settings)  # restore
    register_serve(sub, settings)  # serve
    register_fetch(sub, settings)  # fetch

    p = sub.add_parser("models", help="list the models in the models directory")
    _add_model_args(p, settings)
    p.set_defaults(func=cmd_models)
    return parser


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
    _check_writable(out.parent if out is not None else args.outdir)

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
            _save(image_grid([img]), args.outdir / f"seed{seed:04d}.png")
        else:
            images.append(img)
        progress.update()
    progress.close()
    if out is not None:
        _save(image_grid(images, args.cols), out)
        print(f"wrote {out} ({len(images)} images, {card.generator.img_resolution}px)")
    else:
        print(f"wrote {len(seeds)} images to {args.outdir}")


def _check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".stylelens-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write to {directory}: {exc.strerror or exc}") from exc


def _save(image: object, path: Path) -> None:
    try:
        image.save(path)  # type: ignore[attr-defined]
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc


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


def cmd_synthfaces(args: argparse.Namespace) -> None:
    from stylelens.data.synthfaces import write_folder

    if args.first_seed < 0:
        raise UsageError("--first-seed must be >= 0")
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    _check_writable(args.out)
    try:
        labels = write_folder(
            args.out,
            n=args.n,
            resolution=args.res,
            first_seed=args.first_seed,
            workers=args.workers,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(f"wrote {args.n} faces ({args.res}px) and {labels}")


def cmd_train_attributes(args: argparse.Namespace) -> None:
    from stylelens.checkpoints.attribute_net import save_attribute_net
    from stylelens.checkpoints.native import is_valid_model_id
    from stylelens.networks.attributes import AttributeNetConfig
    from stylelens.training.attributes import (
        AttributeTrainConfig,
        fit_attribute_model,
        summarize,
    )

    if not is_valid_model_id(args.model_id):
        raise UsageError(f"--id {args.model_id!r}: use lowercase letters, digits and ._-")
    out = args.models_dir / args.model_id
    if out.exists() and not args.overwrite:
        raise UsageError(f"{out} already exists; pass --overwrite to replace it")
    if args.n < args.batch or args.val < 1 or args.epochs < 1 or args.batch < 2:
        raise UsageError("need --n >= --batch >= 2, --val >= 1 and --epochs >= 1")
    try:
        net_config = AttributeNetConfig(resolution=args.res)
    except ValueError as exc:
        raise UsageError(f"--res {args.res}: {exc}") from exc
    _check_writable(args.models_dir)
    config = AttributeTrainConfig(
        n_train=args.n,
        n_val=args.val,
        epochs=args.epochs,
        batch=args.batch,
        precision=args.precision,
    )
    net, card = fit_attribute_model(
        config, net_config, model_id=args.model_id, workers=args.workers
    )
    save_attribute_net(out, card, net, overwrite=args.overwrite)
    print(summarize(card.metrics))
    print(f"wrote {out}")


def cmd_eval_model(args: argparse.Namespace) -> None:
    from stylelens.checkpoints import load_generator, model_dir_for
    from stylelens.checkpoints.attribute_net import load_attribute_net
    from stylelens.evaluation.eval_model import EvalConfig, evaluate_model, format_report
    from stylelens.networks.runtime import resolve_device

    if args.n < 2 or args.batch < 1:
        raise UsageError("need --n >= 2 and --batch >= 1")
    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    model_dir = model_dir_for(args.models_dir, args.model)
    G, card = load_generator(model_dir, device=device)
    if G.img_resolution < 64:
        raise UsageError(f"{card.id} is {G.img_resolution}px; eval-model needs 64px or more")
    net, _ = load_attribute_net(args.models_dir / args.attributes)
    config = EvalConfig(
        n=args.n,
        truncation_psi=args.trunc,
        seed=args.seed,
        batch=args.batch,
        precision=args.precision,
    )
    report = evaluate_model(G, net, config, workers=args.workers)
    report["model"] = card.id
    print(format_report(report))
    if args.json is not None:
        _check_writable(args.json.parent)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.record:
        from stylelens.checkpoints.native import CARD_FILE, save_card

        save_card(model_dir, card.model_copy(update={"evaluation": report}))
        print(f"recorded in {model_dir / CARD_FILE}")


def cmd_models(args: argparse.Namespace) -> None:
    from stylelens.checkpoints import list_models, load_card
    from stylelens.checkpoints.native import describe

    ids = list_models(args.models_dir)
    if not ids:
        print(f"no models in {args.models_dir}")
    for model_id in ids:
        card = load_card(args.models_dir / model_id)
        print(json.dumps(describe(card)))


def main(argv: Sequence[str] | None = None) -> int:
    settings = Settings()
    parser = build_parser(settings)
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        func(args)
    except StyleLensError as exc:
        print(f"stylelens {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
