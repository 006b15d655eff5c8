"""``stylelens train``, ``export`` and ``grow``: argparse wiring only.

Options default to None so that a resumed run takes every setting from its ``config.json`` and
only what is given on the command line is compared with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from stylelens.cli_args import Commands, add_device
from stylelens.errors import TrainingError
from stylelens.settings import Settings

# flag -> (TrainConfig field, type, help)
_OPTIONS: dict[str, tuple[str, type, str]] = {
    "--res": ("resolution", int, "image size, a power of two (default 256; --init: the model's)"),
    "--batch": ("batch", int, "images per minibatch (default min(4096 / res, 32))"),
    "--kimg": ("kimg", float, "train until this many thousand images (default 25000)"),
    "--gamma": ("r1_gamma", float, "R1 weight (default 0.0002 * res^2 / batch; 0: off)"),
    "--pl-weight": ("pl_weight", float, "path-length regularisation weight (default 2; 0: off)"),
    "--mixing": ("style_mixing_prob", float, "style-mixing probability (default 0.9)"),
    "--ema-kimg": ("ema_kimg", float, "G_ema half-life in kimg (default batch * 10 / 32)"),
    "--freeze-d": ("freeze_d", int, "FreezeD: D blocks to freeze from the image side (default 0)"),
    "--z-dim": ("z_dim", int, "latent Z size (default 512)"),
    "--w-dim": ("w_dim", int, "latent W size (default 512)"),
    "--mapping-layers": ("mapping_layers", int, "mapping network depth (default 2)"),
    "--channel-base": ("channel_base", int, "channels at res R: min(base / R, max) (16384)"),
    "--channel-max": ("channel_max", int, "most channels of any layer (default 512)"),
    "--seed": ("seed", int, "seed of weights, latents, noise, data order (default 0)"),
    "--tick-kimg": (
        "tick_kimg",
        float,
        "metrics row and checkpoint every N kimg (default: 1 on CPU, 10 on CUDA)",
    ),
    "--snapshot-kimg": ("snapshot_kimg", float, "sample grid every N kimg (default 10)"),
    "--supervise-res": (
        "supervise_res",
        int,
        "compare the supervised faces only at this many px (default: full size plus a quarter)",
    ),
    "--supervise-detail": (
        "supervise_detail",
        float,
        "weight of a full-size comparison of the eyes, mouth and chin in the supervised phase "
        "(default 0: none)",
    ),
    "--mapping-lr-factor": (
        "mapping_lr_factor",
        float,
        "the mapping network's learning rate relative to the rest of G (default 1)",
    ),
    "--supervise": (
        "supervise",
        float,
        "synthfaces only: weight of the loss that G, given a face's parameters as z, draws that "
        "face (default 0: off; see stylelens fit-mapping)",
    ),
    "--condition-mismatch": (
        "condition_mismatch",
        float,
        "with --condition-d: weight of D also seeing each real face with another face's "
        "parameters, as fake (default 0: off)",
    ),
    "--workers": ("num_workers", int, "data-loading processes (default: 2 on CUDA, 0 on CPU)"),
}


def register(commands: Commands, settings: Settings) -> None:
    """``train``, ``export`` and ``grow``; and ``train-encoder`` and ``train-optimizer``, whose
    modules are beside this one."""
    from stylelens.training import encoder_cli, optimizer_cli

    p = commands.add("train", "training", help="train or fine-tune a StyleGAN2 (CPU or CUDA)")
    p.add_argument("--data", help="'synthfaces' or a folder of images (png, jpg, webp, bmp)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--outdir", type=Path, help="new run directory, e.g. runs/faces64")
    where.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue this run exactly")
    p.add_argument("--init", metavar="MODEL", help="fine-tune from a model directory or id")
    p.add_argument("--models-dir", type=Path, default=settings.models_dir,
                   help="where --init ids are looked up (default: %(default)s)")  # fmt: skip
    for flag, (_, kind, text) in _OPTIONS.items():
        p.add_argument(flag, type=kind, default=None, help=text)
    p.add_argument("--lr", type=float, help="Adam learning rate of G and D (default 0.0025)")
    p.add_argument("--freeze-g", metavar="PARTS",
                   help="generator parts to freeze, e.g. mapping,b4,b8 (or synthesis)")  # fmt: skip
    p.add_argument("--aug", action=argparse.BooleanOptionalAction, default=None,
                   help="differentiable augmentation (default: on for folders, off for "
                   "synthfaces)")  # fmt: skip
    p.add_argument("--aug-p", type=float, help="augmentation probability per group (0.5)")
    add_device(p, settings)
    p.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default=None,
                   help="auto: bfloat16 autocast on CUDA, float32 on CPU; bfloat16 on a CPU "
                   "with AVX-512-BF16 or AMX trains about 1.5x faster at 256 px")  # fmt: skip
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="networks in the channels-last memory format (default: on; the same "
                   "maths, 1.2x faster on a CPU in bfloat16, 1.6x in float32)")  # fmt: skip
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile G and D for the main phases (default: off; about "
                   "1.4x faster on a CPU after 1.5-3 minutes of compiling; needs g++ "
                   "there)")  # fmt: skip
    p.add_argument("--condition-d", action=argparse.BooleanOptionalAction, default=None,
                   help="synthfaces only: D also sees each face's parameters (a projection "
                   "discriminator), so G is punished for a face that does not match them; "
                   "needs --mixing 0 (default: off)")  # fmt: skip
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress bar with img/s")  # fmt: skip
    p.set_defaults(func=cmd_train)

    p = commands.add("export", "models", help="write a training run's G_ema as a model")
    p.add_argument("run_dir", type=Path, help="the run directory (stylelens train --outdir)")
    p.add_argument("--id", required=True, dest="model_id", help="new model id, e.g. faces-64")
    p.add_argument("--models-dir", type=Path, default=settings.models_dir,
                   help="one folder per model (default: %(default)s)")  # fmt: skip
    p.add_argument("--name", default="", help="human-readable name for the model card")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model")
    p.add_argument("--float16", action="store_true",
                   help="store the weights in float16 (half the size; refused if any pixel of "
                   "seeds 0-15 changes by more than 1/255)")  # fmt: skip
    p.set_defaults(func=cmd_export)

    p = commands.add(
        "grow",
        "training",
        help="add higher-resolution blocks to a model (train coarse first, then fine)",
    )
    p.add_argument("model", metavar="MODEL", help="model id or directory to grow")
    p.add_argument("--res", type=int, required=True, help="new resolution, e.g. 256")
    p.add_argument("--id", required=True, dest="model_id", help="id of the grown model")
    p.add_argument("--models-dir", type=Path, default=settings.models_dir,
                   help="one folder per model (default: %(default)s)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the new blocks' weights")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model")
    p.set_defaults(func=cmd_grow)

    p = commands.add(
        "fit-mapping",
        "training",
        help="re-fit a SynthFaces model's mapping so that z holds the faces' parameters "
        "(the warm start of stylelens train --supervise)",
    )
    p.add_argument("model", metavar="MODEL", help="model id or directory (with an encoder)")
    p.add_argument("--id", required=True, dest="model_id", help="id of the new model")
    p.add_argument("--models-dir", type=Path, default=settings.models_dir,
                   help="one folder per model (default: %(default)s)")  # fmt: skip
    p.add_argument("--images", type=int, default=12000, help="faces to fit on (default 12000)")
    p.add_argument("--held-out", type=int, default=1000,
                   help="further faces that measure the fit (default 1000)")  # fmt: skip
    p.add_argument("--steps", type=int, default=4000, help="Adam steps (default 4000)")
    p.add_argument("--lr", type=float, default=0.1, help="Adam learning rate (default 0.1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model")
    p.set_defaults(func=cmd_fit_mapping)
    encoder_cli.register(commands, settings)
    optimizer_cli.register(commands, settings)


def _overrides(args: argparse.Namespace, base: Any) -> dict[str, Any]:
    """TrainConfig fields given on the command line."""
    from stylelens.training.augment import AugmentConfig

    out = {
        field: getattr(args, flag[2:].replace("-", "_"))
        for flag, (field, _, _) in _OPTIONS.items()
        if getattr(args, flag[2:].replace("-", "_")) is not None
    }
    out["device"] = args.device
    if args.lr is not None:
        out["lr_g"] = out["lr_d"] = args.lr
    if args.freeze_g is not None:
        out["freeze_g"] = tuple(s.strip() for s in args.freeze_g.split(",") if s.strip())
    if args.precision is not None:
        out["precision"] = args.precision
    if args.channels_last is not None:
        out["channels_last"] = args.channels_last
    if args.compile is not None:
        out["compile"] = args.compile
    if args.condition_d is not None:
        out["condition_d"] = args.condition_d
    if args.aug is False:
        out["augment"] = None
    elif args.aug or args.aug_p is not None:
        aug = base.augment or AugmentConfig()
        out["augment"] = aug if args.aug_p is None else dataclasses.replace(aug, p=args.aug_p)
    return out


def _init_dir(spec: str, models_dir: Path) -> Path:
    from stylelens.checkpoints.native import CARD_FILE, model_dir_for

    path = Path(spec).expanduser()
    if (path / CARD_FILE).is_file():
        return path.resolve()
    return model_dir_for(models_dir, spec).resolve()


def cmd_train(args: argparse.Namespace) -> None:
    from stylelens.checkpoints.native import load_card
    from stylelens.data.sources import SYNTHFACES, open_dataset
    from stylelens.training.augment import AugmentConfig
    from stylelens.training.config import TrainConfig, architecture_of
    from stylelens.training.loop import read_run, train

    resume = args.resume is not None
    if resume:
        record = read_run(args.resume)
        base, source, run_dir = record.config, args.data or record.data["source"], args.resume
        if args.data is not None and args.data != SYNTHFACES:
            source = str(Path(args.data).expanduser().resolve())
    else:
        if args.data is None or args.outdir is None:
            raise TrainingError("a new run needs --data (synthfaces or a folder) and --outdir")
        base, source, run_dir = TrainConfig(), args.data, args.outdir
        if args.aug is None and args.aug_p is None and source != SYNTHFACES:
            base = dataclasses.replace(base, augment=AugmentConfig())  # small data: augment
    if args.init is not None:
        init = _init_dir(args.init, args.models_dir)
        card = load_card(init)
        if not resume:
            arch = architecture_of(card.generator, card.discriminator)
            base = dataclasses.replace(base, **arch)
        base = dataclasses.replace(base, init=str(init))
    try:
        config = dataclasses.replace(base, **_overrides(args, base))
    except ValueError as exc:
        raise TrainingError(f"invalid option: {exc}") from exc
    data = open_dataset(
        source, config.resolution, param_latents=config.supervise > 0 or config.condition_d
    )
    try:
        state = train(config, run_dir=run_dir, data=data, resume=resume, progress=args.progress)
    except KeyboardInterrupt:
        raise TrainingError(
            f"interrupted; continue from the last tick with: stylelens train --resume {run_dir}"
        ) from None
    print(f"trained {state.cur_nimg / 1000:.3f} kimg in {run_dir}")
    print(f"make it a model with: stylelens export {run_dir} --id ID")


def cmd_grow(args: argparse.Namespace) -> None:
    from stylelens.checkpoints.native import describe
    from stylelens.training.grow import frozen_parts, grow_model

    source = _init_dir(args.model, args.models_dir)
    card = grow_model(
        source,
        resolution=args.res,
        model_id=args.model_id,
        models_dir=args.models_dir,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(f"wrote {args.models_dir / card.id}")
    print(json.dumps(describe(card), indent=2))
    parts = ",".join(frozen_parts(card.grown_from["resolution"]))  # type: ignore[attr-defined]
    print(f"train its new blocks with: stylelens train --data DATA --init {card.id} "
          f"--freeze-g {parts} --outdir RUN")  # fmt: skip


def cmd_fit_mapping(args: argparse.Namespace) -> None:
    import dataclasses as dc

    from stylelens.checkpoints.native import is_valid_model_id
    from stylelens.training.supervise import fit_param_mapping, load_for_fit, write_param_model

    source = _init_dir(args.model, args.models_dir)
    if not is_valid_model_id(args.model_id):  # refused before minutes of fitting, not after
        raise TrainingError(f"{args.model_id!r} is not a valid model id (lowercase, digits, ._-)")
    if (args.models_dir / args.model_id).exists() and not args.overwrite:
        raise TrainingError(f"{args.models_dir / args.model_id} exists; pass --overwrite")
    G, encoder = load_for_fit(source)
    fit = fit_param_mapping(G, encoder, images=args.images, held_out=args.held_out,
                            steps=args.steps, lr=args.lr, log=print)  # fmt: skip
    card = write_param_model(source, G, fit, model_id=args.model_id, models_dir=args.models_dir,
                             overwrite=args.overwrite)  # fmt: skip
    print(json.dumps(dc.asdict(fit), indent=2))
    print(f"wrote {args.models_dir / card.id}")
    print(f"train it with: stylelens train --data synthfaces --init {card.id} --supervise 10 "
          "--outdir RUN")  # fmt: skip


def cmd_export(args: argparse.Namespace) -> None:
    from stylelens.checkpoints.native import describe
    from stylelens.training.export import export_run

    card = export_run(
        args.run_dir,
        model_id=args.model_id,
        models_dir=args.models_dir,
        name=args.name,
        overwrite=args.overwrite,
        storage="float16" if args.float16 else "float32",
    )
    print(f"wrote {args.models_dir / card.id}")
    print(json.dumps(describe(card), indent=2))
