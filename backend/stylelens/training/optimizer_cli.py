"""``stylelens train-optimizer``: argparse wiring only."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from stylelens.cli_args import Commands, add_model, add_models_dir, add_training_run
from stylelens.errors import StyleLensError, TrainingError
from stylelens.settings import Settings


def register(commands: Commands, settings: Settings) -> None:
    from stylelens.losses import PERCEPTUAL_BACKENDS
    from stylelens.training.optimizer import OptimizerTrainConfig

    p = commands.add(
        "train-optimizer",
        "training",
        help="train the model's learned optimizer (seed 001; the 'learned' engines; resumable)",
    )
    add_models_dir(p, settings)
    add_model(p, settings)
    d = OptimizerTrainConfig()
    p.add_argument(
        "--images",
        type=int,
        default=d.images,
        help="training targets at most, each inverted --trajectory steps (default: %(default)s)",
    )
    p.add_argument("--batch", type=int, default=d.batch, help="inversions side by side (8)")
    p.add_argument("--trajectory", type=int, default=d.trajectory, help="steps per target (50)")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam on the weights (default: 1e-3)")
    p.add_argument(
        "--eval-every", type=int, default=d.eval_every, help="images between evaluations (100)"
    )
    p.add_argument(
        "--patience",
        type=int,
        default=d.patience,
        help="stop after this many images without a better test score (default: 1000)",
    )
    p.add_argument(
        "--perceptual",
        choices=PERCEPTUAL_BACKENDS,
        default="auto",
        help="perceptual loss, as for invert; auto: LPIPS if installed, else the model's "
        "discriminator features, else MS-SSIM (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the run (default: 0)")
    add_training_run(p, settings, "runs/optimizer-<model>.pt")
    p.set_defaults(func=cmd_train_optimizer)


def cmd_train_optimizer(args: argparse.Namespace) -> None:
    from stylelens.checkpoints import load_generator, model_dir_for
    from stylelens.encoders.store import load_encoder
    from stylelens.losses import load_perceptual
    from stylelens.networks.runtime import resolve_device
    from stylelens.training.optimizer import (
        OptimizerTrainConfig,
        save_trained_optimizer,
        train_optimizer,
    )

    try:
        device = resolve_device(args.device)
        config = dataclasses.replace(
            OptimizerTrainConfig(),
            images=args.images,
            batch=args.batch,
            trajectory=args.trajectory,
            lr=args.lr,
            eval_every=args.eval_every,
            patience=args.patience,
            perceptual=args.perceptual,
            seed=args.seed,
        )
    except ValueError as exc:
        raise StyleLensError(f"invalid option: {exc}") from exc
    model_dir = model_dir_for(args.models_dir, args.model)
    G, card = load_generator(model_dir, device=device)
    perceptual = load_perceptual(
        config.perceptual, models_dir=args.models_dir, model_dir=model_dir, device=device
    )
    encoder = load_encoder(model_dir, device=device)
    state_path = args.out_state or Path("runs") / f"optimizer-{card.id}.pt"
    starts = "the encoder" if encoder is not None else "w_avg (no encoder installed)"
    print(f"{card.id}: {G.num_ws} ws, perceptual {perceptual.name}, starts from {starts}, "
          f"random latents; state {state_path}")  # fmt: skip
    try:
        state = train_optimizer(
            G,
            perceptual,
            config,
            state_path=state_path,
            encoder=encoder,
            resume=args.resume,
            progress=args.progress,
        )
    except KeyboardInterrupt:
        raise TrainingError(
            f"interrupted; continue with: stylelens train-optimizer --model {card.id} "
            f"--out-state {state_path} --resume"
        ) from None
    path = save_trained_optimizer(model_dir, state, G, perceptual, encoder is not None)
    why = "stopped early" if state.stopped_early else "reached --images"
    print(
        f"wrote {path}: {state.images} images, {state.iterations} iterations, "
        f"{state.seconds:.0f} s ({why}); best test log-loss {state.best_score:.4f} at "
        f"{state.best_images} images (untrained, i.e. Adam: {state.curve[0][1]:.4f})"
    )
