"""Supervision from SynthFaces' parameters: a generator whose z *is* the face's parameters.

SynthFaces knows every training face's parameters, and ``param_latent`` carries them to a
standard-normal vector. Putting that vector in z's first ``PARAM_DIMS`` entries (noise in the
rest) turns each training image into a target for one z, so the generator can *learn to draw
the renderer* with a reconstruction loss, besides fooling D. Because the parameter latents
are N(0, I), sampling ordinary Gaussian z still draws the SynthFaces distribution.

Two pieces:

* ``fit_param_mapping`` re-fits a trained generator's mapping network so that
  ``mapping([param_latent(seed), noise])`` lands where the model's image encoder puts
  ``render_face(seed)``: a warm start that costs no synthesis pass (a regression in W).
  ``write_param_model`` stores the result as a model to ``stylelens train --init`` from.
* ``supervised_latents`` / ``reconstruction_loss``: the trainer's extra G phase
  (``TrainConfig.supervise``, ``stylelens train --supervise``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stylelens.checkpoints.native import (
    DISCRIMINATOR_FILE,
    GENERATOR_FILE,
    ModelCard,
    SourceInfo,
    load_card,
    load_discriminator,
    load_generator,
    now_iso,
    save_model,
    sha256_file,
)
from stylelens.data.synthfaces.draw import landmarks
from stylelens.data.synthfaces.latent import PARAM_DIMS, param_latent
from stylelens.data.synthfaces.params import sample_params
from stylelens.errors import TrainingError
from stylelens.networks.stylegan2 import Generator

__all__ = [
    "MappingFit",
    "detail_mask",
    "fit_param_mapping",
    "reconstruction_loss",
    "supervised_latents",
    "write_param_model",
]


def supervised_latents(
    param_z: torch.Tensor, z_dim: int, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """z [N, z_dim]: the parameter latents [N, PARAM_DIMS] followed by N(0, 1) noise."""
    n, k = param_z.shape
    if k > z_dim:
        raise ValueError(f"{k} parameter dimensions do not fit in z_dim {z_dim}")
    noise = torch.randn(n, z_dim - k, generator=generator).to(param_z.device)
    return torch.cat([param_z.float(), noise], dim=1)


def reconstruction_loss(
    img: torch.Tensor,
    target: torch.Tensor,
    *,
    resolution: int | None = None,
    detail: float = 0.0,
) -> torch.Tensor:
    """Mean absolute error of images [N, 3, R, R] in [-1, 1].

    ``resolution`` None: at full size plus at a quarter of it (the quarter-size term weighs
    shape and colour over texture). ``resolution`` r < R: only at r px (area-averaged), so
    that the parameters teach layout, shape and colour, and the texture they do not decide
    (SynthFaces' texture seed stays in z's noise) is left to the adversarial loss instead of
    being pulled toward its blurred mean. ``detail`` > 0 adds that weight times the full-size
    error inside ``detail_mask`` (eyes, mouth, chin): the parts the parameters draw exactly
    and a pooled comparison blurs away.
    """
    img, target = img.float(), target.float()
    size = img.shape[-1]
    extra: torch.Tensor | float = 0.0
    if detail > 0:
        mask = detail_mask(size).to(img.device)
        per_pixel = (img - target).abs().mean(dim=1)  # [N, R, R]
        extra = detail * (per_pixel * mask).sum(dim=(1, 2)).mean() / mask.sum()
    if resolution is not None and resolution < size:
        k = size // resolution
        return (F.avg_pool2d(img, k) - F.avg_pool2d(target, k)).abs().mean() + extra
    full = (img - target).abs().mean()
    if resolution is not None or size < 16:
        return full + extra
    small = (F.avg_pool2d(img, 4) - F.avg_pool2d(target, 4)).abs().mean()
    return full + small + extra


# Gaussian spread of each part's weight, as a fraction of the image's side (the eye's almond
# is about 0.07 wide at the mean placement, the mouth 0.12).
_EYE_SIGMA, _MOUTH_SIGMA, _CHIN_SIGMA = 0.035, 0.05, 0.05


@functools.lru_cache(maxsize=8)
def detail_mask(resolution: int, *, draws: int = 1024) -> torch.Tensor:
    """Where SynthFaces draws eyes, mouths and chins: float32 [R, R] in [0, 1], the average
    over ``draws`` parameter draws (seeds 0..draws-1) of Gaussian blobs around each face's
    eye centres, mouth centre and chin (below the mouth by 0.3 of the eye-to-mouth distance),
    normalised to a peak of 1. Fixed per resolution, so the trainer needs no per-face
    landmarks; it covers the spread of placements (scale, roll, shift) of the data."""
    if resolution < 1 or draws < 1:
        raise ValueError(f"resolution {resolution} and draws {draws} must be positive")
    pts = np.stack([landmarks(sample_params(seed)) for seed in range(draws)])  # [D, 4, 2]
    eyes, mouth = pts[:, :2], pts[:, 2:].mean(axis=1)
    chin = mouth + 0.3 * (mouth - eyes.mean(axis=1))
    centres = [(eyes[:, 0], _EYE_SIGMA), (eyes[:, 1], _EYE_SIGMA), (mouth, _MOUTH_SIGMA),
               (chin, _CHIN_SIGMA)]  # fmt: skip
    grid = (np.arange(resolution) + 0.5) / resolution
    mask = np.zeros((resolution, resolution))
    for xy, sigma in centres:
        gx = np.exp(-((grid[None, :] - xy[:, :1]) ** 2) / (2 * sigma**2))  # [D, R]
        gy = np.exp(-((grid[None, :] - xy[:, 1:]) ** 2) / (2 * sigma**2))
        mask = np.maximum(mask, np.einsum("dy,dx->yx", gy, gx) / len(xy))
    return torch.from_numpy(mask / mask.max()).float()


# ----------------------------------------------------------------------------
# Warm start: the mapping network re-fitted to the encoder's latents


@dataclass(frozen=True)
class MappingFit:
    """What ``fit_param_mapping`` did: sizes, time, and how well W is predicted."""

    images: int
    held_out: int
    steps: int
    seconds: float
    r2_train: float  # share of the variance of the encoder's w the mapping predicts
    r2_held_out: float  # the same on seeds the fit never saw
    loss_first: float
    loss_last: float


def _encoder_targets(
    encoder: torch.nn.Module, seeds: list[int], resolution: int, batch: int
) -> torch.Tensor:
    """The encoder's w (mean over its per-layer ws) for ``render_face(seed)``: [N, w_dim]."""
    from stylelens.data.synthfaces.draw import MIN_RESOLUTION, render_face
    from stylelens.encoders.encode import encoder_input

    resolution = max(resolution, MIN_RESOLUTION)  # the encoder resizes to its input anyway
    out = []
    with torch.no_grad():
        for i in range(0, len(seeds), batch):
            imgs = np.stack([render_face(s, resolution)[0] for s in seeds[i : i + batch]])
            x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1
            out.append(encoder(encoder_input(encoder, x)).float().mean(dim=1))
    return torch.cat(out)


def _r2(pred: torch.Tensor, target: torch.Tensor) -> float:
    residual = (pred - target).square().sum()
    total = (target - target.mean(dim=0)).square().sum()
    return float(1 - residual / total.clamp_min(1e-12))


def fit_param_mapping(
    G: Generator,
    encoder: torch.nn.Module,
    *,
    images: int = 12000,
    held_out: int = 1000,
    first_seed: int = 0,
    steps: int = 4000,
    batch: int = 256,
    lr: float = 0.1,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> MappingFit:
    """Re-fit ``G.mapping`` in place so that mapping([param_latent(s), noise]) predicts the
    encoder's w of ``render_face(s)``; then set ``w_avg`` to the mean of mapping(N(0, I)).

    Seeds ``first_seed .. + images`` train the fit, the next ``held_out`` measure it. The
    noise dimensions are redrawn at every step, so the mapping learns to ignore them.
    Adam's ``lr`` is in units of the effective weights (the stored ones are divided by the
    mapping's lr multiplier, so the step on them is ``lr / lr_multiplier``).

    Raises:
        TrainingError: the generator's z is too small for the parameters, or too few images.
    """
    say = log or (lambda msg: None)
    if G.z_dim < PARAM_DIMS:
        raise TrainingError(f"z_dim {G.z_dim} is smaller than the {PARAM_DIMS} parameters")
    if images < 16 or held_out < 1:
        raise TrainingError("fit the mapping on at least 16 images with at least 1 held out")
    if steps < 1 or batch < 1 or not (lr > 0 and math.isfinite(lr)):
        raise TrainingError(
            f"steps and batch must be at least 1 and lr a positive number "
            f"(got steps {steps}, batch {batch}, lr {lr})"
        )
    t0 = time.perf_counter()
    seeds = list(range(first_seed, first_seed + images + held_out))
    say(f"encoding {len(seeds)} SynthFaces faces")
    targets = _encoder_targets(encoder, seeds, G.img_resolution, batch=32)
    params = torch.from_numpy(np.stack([param_latent(s) for s in seeds]))
    train_p, test_p = params[:images], params[images:]
    train_w, test_w = targets[:images], targets[images:]

    mapping = G.mapping
    mapping.requires_grad_(True)
    weights = [p for n, p in mapping.named_parameters()]
    # the stored weights are scaled by 1 / the mapping's lr multiplier (its bias gain)
    lr_multiplier = float(getattr(mapping.fc0, "bias_gain"))  # noqa: B009
    opt = torch.optim.Adam(weights, lr=lr / lr_multiplier, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    rng = torch.Generator().manual_seed(seed)
    first = last = math.nan
    for step in range(steps):
        idx = torch.randint(0, images, (min(batch, images),), generator=rng)
        z = supervised_latents(train_p[idx], G.z_dim, generator=rng)
        loss = (mapping(z)[:, 0] - train_w[idx]).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        first = loss.item() if step == 0 else first
        last = loss.item()
        if step % 500 == 0 or step == steps - 1:
            say(f"step {step}: loss {last:.5f}")
    mapping.requires_grad_(False)
    if not all(torch.isfinite(p).all() for p in weights):
        raise TrainingError(f"the mapping fit diverged (lr {lr}); try a smaller --lr")
    with torch.no_grad():
        pred = mapping(supervised_latents(train_p, G.z_dim, generator=rng))[:, 0]
        pred_test = mapping(supervised_latents(test_p, G.z_dim, generator=rng))[:, 0]
        mapping.w_avg.copy_(mapping(torch.randn(8192, G.z_dim, generator=rng))[:, 0].mean(0))
    return MappingFit(
        images=images,
        held_out=held_out,
        steps=steps,
        seconds=round(time.perf_counter() - t0, 1),
        r2_train=round(_r2(pred, train_w), 4),
        r2_held_out=round(_r2(pred_test, test_w), 4),
        loss_first=round(first, 6),
        loss_last=round(last, 6),
    )


_KEPT_CARD_FIELDS = {"description", "generator", "discriminator", "license", "framing"}


def write_param_model(
    source_dir: Path,
    G: Generator,
    fit: MappingFit,
    *,
    model_id: str,
    models_dir: Path,
    overwrite: bool = False,
) -> ModelCard:
    """Save ``G`` (its mapping re-fitted) with the source's discriminator as a new model whose
    card records the fit under ``param_mapping``."""
    card = load_card(source_dir)
    d_state = None
    if card.discriminator is not None and (source_dir / DISCRIMINATOR_FILE).is_file():
        d_state = load_discriminator(source_dir)[0].state_dict()
    extra: dict[str, Any] = {
        "param_mapping": {
            "from": card.id,
            "param_dims": PARAM_DIMS,
            **dataclasses.asdict(fit),
            "training": getattr(card, "training", None),
        }
    }
    new = ModelCard.model_validate(
        {
            **card.model_dump(include=_KEPT_CARD_FIELDS),
            "id": model_id,
            "name": f"{card.name or card.id}, mapping fitted to SynthFaces parameters",
            "source": SourceInfo(
                format="native",
                file=GENERATOR_FILE,
                sha256=sha256_file(source_dir / GENERATOR_FILE),
                converted_at=now_iso(),
            ),
            **extra,
        }
    )
    state = {k: v.float() for k, v in G.state_dict().items()}
    save_model(models_dir / model_id, new, state, d_state, overwrite=overwrite)
    return new


def load_for_fit(source_dir: Path) -> tuple[Generator, torch.nn.Module]:
    """The model's generator (float32, trainable copy) and its encoder.

    Raises:
        TrainingError: the model has no encoder (``stylelens train-encoder`` makes one).
    """
    from stylelens.encoders.store import load_encoder

    G, _ = load_generator(source_dir)
    G = G.float()
    encoder = load_encoder(source_dir)
    if encoder is None:
        raise TrainingError(
            f"{source_dir} has no encoder; the warm start needs one (stylelens train-encoder)"
        )
    return G, encoder.float().eval()
