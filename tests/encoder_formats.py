"""Writers of pSp / e4e checkpoints in the official on-disk structure.

``torch.save`` of the training coach's dict: ``state_dict`` (the whole pSp module's state: the
encoder under ``encoder.``, the rosinality generator under ``decoder.``), ``opts`` (``vars()``
of the argparse options: plain strings, numbers, booleans, None, lists) and ``latent_avg``
(``[num_ws, w_dim]``, or ``[w_dim]`` in files trained from a latent_avg that was not repeated).
The encoder names are spelled out here from the official module layout, independently of
:mod:`stylelens.encoders.psp`, so the converter is checked against a second spelling.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from tests.formats import TINY_G, tiny_weights, to_rosinality_generator

TINY_CHANNELS = (16, 24, 28, 32)  # strictly increasing, >= 16 (SE), last = TINY_G.w_dim
TINY_RESOLUTION = 32
IR_SE50_UNITS = (3, 4, 14, 3)


def _bn(prefix: str, c: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.weight": 1 + 0.1 * torch.randn(c, generator=g),
        f"{prefix}.bias": 0.1 * torch.randn(c, generator=g),
        f"{prefix}.running_mean": 0.1 * torch.randn(c, generator=g),
        f"{prefix}.running_var": 0.5 + torch.rand(c, generator=g),
        f"{prefix}.num_batches_tracked": torch.tensor(1000),
    }


def _conv(shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=g) / math.sqrt(fan_in)


def official_encoder_state(
    *,
    num_ws: int = TINY_G.num_ws,
    channels: tuple[int, ...] = TINY_CHANNELS,
    resolution: int = TINY_RESOLUTION,
    seed: int = 0,
    meta: bool = False,
) -> dict[str, torch.Tensor]:
    """GradualStyleEncoder / Encoder4Editing(50, 'ir_se') state dict (the two are the same).

    ``meta``: shapes only (empty tensors on the meta device), for the full-size layout.
    """
    g = torch.Generator().manual_seed(seed)
    s: dict[str, torch.Tensor] = {"input_layer.0.weight": _conv((channels[0], 3, 3, 3), g)}
    s.update(_bn("input_layer.1", channels[0], g))
    s["input_layer.2.weight"] = 0.25 + 0.05 * torch.randn(channels[0], generator=g)
    i, depth_in = 0, channels[0]
    for n, depth in zip(IR_SE50_UNITS, channels, strict=True):
        for k in range(n):
            cin = depth_in if k == 0 else depth
            p = f"body.{i}"
            if cin != depth:
                s[f"{p}.shortcut_layer.0.weight"] = _conv((depth, cin, 1, 1), g)
                s.update(_bn(f"{p}.shortcut_layer.1", depth, g))
            s.update(_bn(f"{p}.res_layer.0", cin, g))
            s[f"{p}.res_layer.1.weight"] = _conv((depth, cin, 3, 3), g)
            s[f"{p}.res_layer.2.weight"] = 0.25 + 0.05 * torch.randn(depth, generator=g)
            s[f"{p}.res_layer.3.weight"] = _conv((depth, depth, 3, 3), g)
            s.update(_bn(f"{p}.res_layer.4", depth, g))
            s[f"{p}.res_layer.5.fc1.weight"] = _conv((depth // 16, depth, 1, 1), g)
            s[f"{p}.res_layer.5.fc2.weight"] = _conv((depth, depth // 16, 1, 1), g)
            i += 1
        depth_in = depth
    w = channels[-1]
    for j in range(num_ws):
        spatial = resolution // (16 if j < 3 else 8 if j < 7 else 4)
        for k in range(int(math.log2(spatial))):
            s[f"styles.{j}.convs.{2 * k}.weight"] = _conv((w, w, 3, 3), g)
            s[f"styles.{j}.convs.{2 * k}.bias"] = 0.1 * torch.randn(w, generator=g)
        s[f"styles.{j}.linear.weight"] = torch.randn(w, w, generator=g)  # EqualLinear: N(0, 1)
        s[f"styles.{j}.linear.bias"] = 0.1 * torch.randn(w, generator=g)
    s["latlayer1.weight"] = _conv((w, channels[2], 1, 1), g)
    s["latlayer1.bias"] = 0.1 * torch.randn(w, generator=g)
    s["latlayer2.weight"] = _conv((w, channels[1], 1, 1), g)
    s["latlayer2.bias"] = 0.1 * torch.randn(w, generator=g)
    if meta:
        return {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in s.items()}
    return s


def official_opts(encoder_type: str) -> dict[str, Any]:
    """``vars(opts)`` as the FFHQ encode trainings save it (the fields that matter, plus a few
    that do not, with their real types)."""
    return {
        "exp_dir": "experiments/ffhq_encode",
        "dataset_type": "ffhq_encode",
        "encoder_type": encoder_type,
        "input_nc": 3,
        "label_nc": 0,
        "batch_size": 8,
        "learning_rate": 0.0001,
        "optim_name": "ranger",
        "train_decoder": False,
        "start_from_latent_avg": True,
        "lpips_lambda": 0.8,
        "id_lambda": 0.1,
        "l2_lambda": 1.0,
        "stylegan_weights": "pretrained_models/stylegan2-ffhq-config-f.pt",
        "stylegan_size": 1024,
        "checkpoint_path": None,
        "max_steps": 300000,
        "progressive_steps": [0, 20000, 22000] if encoder_type == "Encoder4Editing" else None,
        "device": "cuda:0",
    }


def write_encoder_pt(
    path: Path,
    encoder_type: str = "Encoder4Editing",
    *,
    encoder: dict[str, torch.Tensor] | None = None,
    latent_avg: torch.Tensor | None = None,
    opts: dict[str, Any] | None = None,
    seed: int = 0,
) -> Path:
    """A ``best_model.pt`` / ``e4e_ffhq_encode.pt``-style file for the tiny generator."""
    enc = official_encoder_state(seed=seed) if encoder is None else encoder
    g_state, _ = tiny_weights(seed)
    state = {f"encoder.{k}": v for k, v in enc.items()}
    state.update({f"decoder.{k}": v for k, v in to_rosinality_generator(g_state).items()})
    if latent_avg is None:
        w = g_state["mapping.w_avg"]
        latent_avg = w.repeat(TINY_G.num_ws, 1)  # pSp repeats it to [num_ws, w_dim]
    torch.save(
        {
            "state_dict": state,
            "opts": official_opts(encoder_type) if opts is None else opts,
            "latent_avg": latent_avg,
        },
        path,
    )
    return path
