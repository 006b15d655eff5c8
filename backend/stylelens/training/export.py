"""A training run -> a native model directory (``models/<id>/``) the app can load.

The model's generator is the run's G_ema (the weights NVIDIA ships as ``G_ema`` too), its
discriminator the run's D (kept for fine-tuning and discriminator-feature losses). The card
records how the weights were made in a ``training`` field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

from stylelens.checkpoints.native import (
    ModelCard,
    SourceInfo,
    is_valid_model_id,
    now_iso,
    save_model,
    sha256_file,
)
from stylelens.data.framing import Framing
from stylelens.data.sources import SYNTHFACES
from stylelens.errors import TrainingError
from stylelens.networks.stylegan2 import Generator
from stylelens.render import to_uint8, z_from_seed
from stylelens.training.loop import read_run
from stylelens.training.state import CHECKPOINT_FILE, read_checkpoint


def _license(data: dict[str, Any], init_model: dict[str, Any] | None) -> str:
    if data.get("source") == SYNTHFACES:
        text = "Trained by StyleLens on SynthFaces, procedurally drawn faces (no photographs)."
    else:
        text = (
            f"Trained on the images in {data.get('source')}; the weights carry the terms of "
            "those images."
        )
    if init_model is not None:
        text += (
            f" Fine-tuned from {init_model.get('id')!r}, whose terms still apply: "
            f"{init_model.get('license') or 'unknown'}"
        )
    return text


def _framing(data: dict[str, Any]) -> Framing | None:
    """SynthFaces runs: the renderer's framing, derived now, so the card keeps the one its
    faces were drawn in; other data: None (the card's default, FFHQ's)."""
    if data.get("source") != SYNTHFACES:
        return None
    from stylelens.data.synthfaces.framing import derive_framing

    return derive_framing()


def export_run(
    run_dir: Path,
    *,
    model_id: str,
    models_dir: Path,
    name: str = "",
    description: str = "",
    overwrite: bool = False,
    storage: Literal["float32", "float16"] = "float32",
) -> ModelCard:
    """Write ``models_dir/model_id`` from the run's latest checkpoint.

    Args:
        run_dir: a training run (``config.json`` and ``checkpoint.pt``).
        model_id: the new model's id (lowercase letters, digits, ``._-``).
        models_dir: where model directories live.
        name, description: for the card (a name is made up from the run when empty).
        overwrite: replace an existing model directory of that id.
        storage: "float16" halves the files; it is refused when it changes the rendering of
            seeds 0-15 by more than 1/255 in any pixel (the card records the largest change).

    Returns:
        The card written.

    Raises:
        TrainingError: not a run, no checkpoint yet, an invalid model id, or float16 storage
            that would change the images.
        CheckpointError: the model directory exists (without ``overwrite``).
    """
    run_dir = Path(run_dir)
    if not is_valid_model_id(model_id):
        raise TrainingError(
            f"{model_id!r} is not a valid model id (lowercase letters, digits, ._-)"
        )
    record = read_run(run_dir)
    ckpt_path = run_dir / CHECKPOINT_FILE
    payload = read_checkpoint(ckpt_path)
    cfg, progress = record.config, payload["progress"]
    kimg = round(progress["cur_nimg"] / 1000, 3)
    training = {
        "data": record.data,
        "kimg": kimg,
        "batch": cfg.batch,
        "resolution": cfg.resolution,
        "seconds": round(progress["seconds"], 1),
        "hardware": progress["hardware"],
        "metrics": payload["metrics"],
        "freeze_d": cfg.freeze_d,
        "freeze_g": list(cfg.freeze_g),
        "init": record.init_model,
        "augment": cfg.augment is not None,
        "r1_gamma": cfg.r1_gamma,
        "pl_weight": cfg.pl_weight,
        "supervise": cfg.supervise,
        "supervise_res": cfg.supervise_res,
        "supervise_detail": cfg.supervise_detail,
        "mapping_lr_factor": cfg.mapping_lr_factor,
        "style_mixing_prob": cfg.style_mixing_prob,
        "condition_mismatch": cfg.condition_mismatch,  # condition_d: discriminator.c_dim > 0
        "precision": cfg.precision,
        "seed": cfg.seed,
        "run": str(run_dir.resolve()),
        "started": record.created,
    }
    card = ModelCard.model_validate(
        {
            "id": model_id,
            "name": name or f"{run_dir.name} ({kimg} kimg)",
            "description": description,
            "generator": cfg.generator,
            "discriminator": cfg.discriminator,
            "source": SourceInfo(
                format="native",
                file=CHECKPOINT_FILE,
                sha256=sha256_file(ckpt_path),
                converted_at=now_iso(),
            ),
            "license": _license(record.data, record.init_model),
            "framing": _framing(record.data),
            "training": training,  # an extra field: the card keeps unknown fields
        }
    )
    G_state, D_state = payload["G_ema"], payload["D"]
    if storage == "float16":
        diff = float16_render_change(cfg.generator, G_state)
        if diff > 1:
            raise TrainingError(
                f"float16 storage would change the rendering by up to {diff:.0f}/255; export "
                "in float32"
            )
        G_state, D_state = _half(G_state, FLOAT32_KEPT), _half(D_state)
        stored = {"dtype": "float16", "float32": [f"{p}*" for p in FLOAT32_KEPT],
                   "max_render_change_255": diff}  # fmt: skip
        card = card.model_copy(update={"storage": stored})
    save_model(models_dir / model_id, card, G_state, D_state, overwrite=overwrite)
    return card


# Kept in float32 under float16 storage: every w passes through the mapping network, so its
# rounding reaches every layer (a mapping trained with --mapping-lr-factor 20 changed seeds
# 0-15 by 3/255 in float16), and it is small (2 x 512 x 512 weights: 1 MB more).
FLOAT32_KEPT = ("mapping.",)


def _half(state: dict[str, torch.Tensor], keep: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    return {
        k: v.half() if v.is_floating_point() and not k.startswith(keep) else v
        for k, v in state.items()
    }


@torch.no_grad()
def float16_render_change(config: Any, state: dict[str, torch.Tensor], seeds: int = 16) -> int:
    """Largest change (in 1/255 steps) float16 storage makes to the images of seeds 0..n-1."""
    G32, G16 = Generator(config).eval(), Generator(config).eval()
    G32.load_state_dict({k: v.float() for k, v in state.items()})
    G16.load_state_dict({k: v.float() for k, v in _half(state, FLOAT32_KEPT).items()})
    z = torch.cat([z_from_seed(s, config.z_dim) for s in range(seeds)]).float()
    a, b = to_uint8(G32(z)).astype(int), to_uint8(G16(z)).astype(int)
    return int(abs(a - b).max())
