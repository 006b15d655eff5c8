"""Grow a model to a higher resolution: train coarse first, then add the fine blocks.

On a CPU a StyleGAN2 at 256 px trains at about a quarter of the speed it trains at 64 px, and
most of what it must learn first (pose, face shape, hair, colours) is visible at 64 px. So a
64 px model is trained first and then grown: the grown model keeps every weight of the source
(mapping network, w_avg, synthesis blocks up to the source resolution) and adds new synthesis
blocks above it whose toRGB layers start at zero. The skip generator sums the upsampled skip
image of every block, so with zero toRGB the grown generator renders exactly the source image,
upsampled by the generator's own FIR filter; training then only has to add detail (usually
with the copied blocks frozen: ``stylelens train --init GROWN --freeze-g mapping,b4,...``).

The discriminator grows the other way: its new blocks sit at the image input, and every source
block whose weights fit is copied. The source's input block keeps its convolutions but loses
its fromRGB layer (only the first block of a resnet discriminator reads the image).

This is the progressive-growing idea of Karras et al., "Progressive Growing of GANs" (ICLR
2018), done once with a skip generator instead of a fade-in schedule.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from stylelens.checkpoints.native import (
    DISCRIMINATOR_FILE,
    GENERATOR_FILE,
    ModelCard,
    SourceInfo,
    is_valid_model_id,
    load_card,
    load_discriminator,
    load_generator,
    now_iso,
    save_model,
    sha256_file,
)
from stylelens.errors import TrainingError
from stylelens.networks.discriminator import Discriminator
from stylelens.networks.stylegan2 import Generator
from stylelens.training.config import generator_parts


def _transfer(
    target: torch.nn.Module, source: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``target``'s state with every same-named, same-shaped tensor of ``source`` copied in.

    Returns the new state and the names that were *not* copied (new weights)."""
    state = target.state_dict()
    fresh = []
    for name, value in state.items():
        if name in source and source[name].shape == value.shape:
            state[name] = source[name].clone()
        else:
            fresh.append(name)
    return state, fresh


def grow_model(
    source_dir: Path,
    *,
    resolution: int,
    model_id: str,
    models_dir: Path,
    seed: int = 0,
    overwrite: bool = False,
) -> ModelCard:
    """Write ``models_dir/model_id``: the model in ``source_dir`` grown to ``resolution``.

    Args:
        source_dir: a native model directory (its discriminator, if any, is grown too).
        resolution: the new image size, a power of two above the source's.
        model_id: id of the new model.
        models_dir: where to write it.
        seed: seeds the new blocks' random initial weights.
        overwrite: replace an existing model of that id.

    Raises:
        TrainingError: an invalid id or resolution.
        CheckpointError: the source is not a readable model, or the target exists.
    """
    if not is_valid_model_id(model_id):
        raise TrainingError(
            f"{model_id!r} is not a valid model id (lowercase letters, digits, ._-)"
        )
    card = load_card(source_dir)
    src_res = card.generator.img_resolution
    if resolution <= src_res or resolution & (resolution - 1) or resolution > 1024:
        raise TrainingError(
            f"--res {resolution}: grow to a power of two above the model's {src_res} px "
            "(at most 1024)"
        )
    G_src, _ = load_generator(source_dir)
    g_config = dataclasses.replace(card.generator, img_resolution=resolution)
    torch.manual_seed(seed)
    G = Generator(g_config)
    g_state, g_fresh = _transfer(G, G_src.state_dict())
    for res in G.synthesis.block_resolutions:
        if res > src_res:  # toRGB at zero: the grown model renders the source image
            g_state[f"synthesis.b{res}.torgb.weight"].zero_()
            g_state[f"synthesis.b{res}.torgb.bias"].zero_()
    new_blocks = tuple(f"synthesis.b{r}." for r in G.synthesis.block_resolutions if r > src_res)
    carried_over = [n for n in g_fresh if not n.startswith(new_blocks)]
    if carried_over:  # cannot happen for a valid card: the channel schedule is shared
        raise TrainingError(f"{source_dir}: weights do not carry over: {carried_over[:5]}")

    d_config = d_state = None
    d_fresh: list[str] = []
    if card.discriminator is not None and (source_dir / DISCRIMINATOR_FILE).is_file():
        D_src, _ = load_discriminator(source_dir)
        d_config = dataclasses.replace(card.discriminator, img_resolution=resolution)
        d_state, d_fresh = _transfer(Discriminator(d_config), D_src.state_dict())

    grown = ModelCard.model_validate(
        {
            "id": model_id,
            "name": f"{card.name or card.id} grown to {resolution} px",
            "description": card.description,
            "generator": g_config,
            "discriminator": d_config,
            "source": SourceInfo(
                format="native",
                file=GENERATOR_FILE,
                sha256=sha256_file(source_dir / GENERATOR_FILE),
                converted_at=now_iso(),
            ),
            "license": card.license,
            "grown_from": {
                "id": card.id,
                "resolution": src_res,
                "new_generator_blocks": [
                    f"b{r}" for r in G.synthesis.block_resolutions if r > src_res
                ],
                "generator_tensors_copied": len(g_state) - len(g_fresh),
                "discriminator_tensors_new": d_fresh,
                "training": getattr(card, "training", None),
                "grown_from": getattr(card, "grown_from", None),
            },
        }
    )
    save_model(models_dir / model_id, grown, g_state, d_state, overwrite=overwrite)
    return grown


def frozen_parts(source_resolution: int) -> list[str]:
    """The generator parts a grown model inherits: mapping and blocks up to the source's."""
    return [p for p in generator_parts(source_resolution) if p != "synthesis"]
