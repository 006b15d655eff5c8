"""``stylelens train-encoder``: argparse wiring only."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from stylelens.cli_args import Commands, add_model, add_models_dir, add_training_run
from stylelens.errors import StyleLensError, TrainingError
from stylelens.settings import Settings


def register(commands: Commands, settings: Settings) -> None:
    from stylelens.losses import PERCEPTUAL_BACKENDS

    p = commands.add(
        "train-encoder",
        "training",
        help="train the model's light encoder (one-pass init for inversion; resumable)",
    )
    add_models_dir(p, settings)
    add_model(p, settings)
    p.add_argument("--kimg", type=float, default=10.0, help="images in total, thousands (10)")
    p.add_argument("--batch", type=int, default=8, help="images per step (default: 8)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: 5e-4)")
    p.add_argument(
        "--real-fraction",
        type=float,
        default=None,
        help="share of each batch drawn by the SynthFaces renderer (default: 0.25)",
    )
    p.add_argument(
        "--perceptual",
        choices=PERCEPTUAL_BACKENDS,
        default="auto",
        help="perceptual loss; auto: LPIPS if installed, else the model's discriminator "
        "features, else MS-SSIM (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the run (default: 0)")
    p.add_argument(
        "--warm-start",
        action="store_true",
        help="start from the model's installed light encoder (its weights, a new Adam, every "
        "delta free); the card keeps its earlier runs. Give it again with --resume",
    )
    add_training_run(p, settings, "runs/encoder-<model>.pt")
    p.set_defaults(func=cmd_train_encoder)


def cmd_train_encoder(args: argparse.Namespace) -> None:
    from stylelens.checkpoints import load_generator, model_dir_for
    from stylelens.encoders.store import load_encoder
    from stylelens.losses import load_perceptual
    from stylelens.networks.runtime import resolve_device
    from stylelens.training.encoder import (
        EncoderTrainConfig,
        save_trained_encoder,
        train_encoder,
    )

    try:
        device = resolve_device(args.device)
        config = EncoderTrainConfig(
            kimg=args.kimg,
            batch=args.batch,
            seed=args.seed,
            perceptual=args.perceptual,
            warm_start=args.warm_start,
            unlock_kimg=None if args.warm_start else EncoderTrainConfig.unlock_kimg,
        )
        knobs = {"lr": args.lr, "real_fraction": args.real_fraction}
        config = dataclasses.replace(config, **{k: v for k, v in knobs.items() if v is not None})
    except ValueError as exc:
        raise StyleLensError(f"invalid option: {exc}") from exc
    model_dir = model_dir_for(args.models_dir, args.model)
    G, card = load_generator(model_dir, device=device)
    perceptual = load_perceptual(
        config.perceptual, models_dir=args.models_dir, model_dir=model_dir, device=device
    )
    state_path = args.out_state or Path("runs") / f"encoder-{card.id}.pt"
    print(f"{card.id}: {G.num_ws} ws, perceptual {perceptual.name}, state {state_path}")
    init, previous = None, None
    if args.warm_start:
        previous = (card.model_extra or {}).get("encoder")
        if not previous or previous.get("architecture") != "light":
            raise TrainingError(
                f"--warm-start: model {card.id!r} has no light encoder installed; "
                "train one without --warm-start first"
            )
        init = load_encoder(model_dir)
    try:
        state = train_encoder(
            G,
            perceptual,
            config,
            state_path=state_path,
            resume=args.resume,
            init=init,
            progress=args.progress,
        )
    except KeyboardInterrupt:
        raise TrainingError(
            f"interrupted; continue with: stylelens train-encoder --model {card.id} "
            f"--out-state {state_path} --resume"
        ) from None
    path = save_trained_encoder(model_dir, state, perceptual, G, previous)
    losses = ", ".join(f"{k} {v:.4f}" for k, v in state.last.items() if k != "active")
    print(f"wrote {path} after {state.cur_nimg / 1000:.3f} kimg ({state.seconds:.0f} s): {losses}")
