"""Read rosinality/stylegan2-pytorch ``.pt`` checkpoints and rename them to NVIDIA's names.

The file is a ``torch.save`` dict (``g_ema``, optionally ``g``, ``d``, optimiser states, ``args``,
``latent_avg``) loaded with ``weights_only=True``. Weight storage conventions are the same as
NVIDIA's (equalised-lr weights at N(0, 1) scale, the up-convolution stored in the same
orientation), so the conversion is a rename plus reshapes. rosinality's vocabulary
(``style_dim``, ``n_latent``) stays inside this module.
"""

from __future__ import annotations

import argparse
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from stylelens.errors import CheckpointError
from stylelens.networks import ops

Transform = Callable[[torch.Tensor], torch.Tensor]


def _conv(j: int) -> str:
    """rosinality ``convs.{j}`` -> NVIDIA layer (two per block from 8x8 up)."""
    return f"synthesis.b{2 ** (j // 2 + 3)}.conv{j % 2}"


def _noise(i: int) -> str:
    """rosinality ``noises.noise_{i}`` -> NVIDIA ``noise_const`` owner."""
    return "synthesis.b4.conv1" if i == 0 else _conv(i - 1)


def _first(t: torch.Tensor) -> torch.Tensor:
    return t[0]


def _scalar(t: torch.Tensor) -> torch.Tensor:
    return t.reshape([])


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1)


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _noise_map(t: torch.Tensor) -> torch.Tensor:
    return t[0, 0]


# (rosinality key regex, NVIDIA name from the match, transform); None name: a fixed blur kernel.
GENERATOR_RULES: list[tuple[str, Callable[[re.Match[str]], str | None], Transform]] = [
    (r"style\.(\d+)\.(weight|bias)", lambda m: f"mapping.fc{int(m[1]) - 1}.{m[2]}", _same),
    (r"input\.input", lambda m: "synthesis.b4.const", _first),
    (r"conv1\.conv\.weight", lambda m: "synthesis.b4.conv1.weight", _first),
    (
        r"conv1\.conv\.modulation\.(weight|bias)",
        lambda m: f"synthesis.b4.conv1.affine.{m[1]}",
        _same,
    ),
    (r"conv1\.noise\.weight", lambda m: "synthesis.b4.conv1.noise_strength", _scalar),
    (r"conv1\.activate\.bias", lambda m: "synthesis.b4.conv1.bias", _same),
    (r"to_rgb1\.conv\.weight", lambda m: "synthesis.b4.torgb.weight", _first),
    (
        r"to_rgb1\.conv\.modulation\.(weight|bias)",
        lambda m: f"synthesis.b4.torgb.affine.{m[1]}",
        _same,
    ),
    (r"to_rgb1\.bias", lambda m: "synthesis.b4.torgb.bias", _flat),
    (r"convs\.(\d+)\.conv\.weight", lambda m: f"{_conv(int(m[1]))}.weight", _first),
    (
        r"convs\.(\d+)\.conv\.modulation\.(weight|bias)",
        lambda m: f"{_conv(int(m[1]))}.affine.{m[2]}",
        _same,
    ),
    (r"convs\.(\d+)\.noise\.weight", lambda m: f"{_conv(int(m[1]))}.noise_strength", _scalar),
    (r"convs\.(\d+)\.activate\.bias", lambda m: f"{_conv(int(m[1]))}.bias", _same),
    (
        r"to_rgbs\.(\d+)\.conv\.weight",
        lambda m: f"synthesis.b{2 ** (int(m[1]) + 3)}.torgb.weight",
        _first,
    ),
    (
        r"to_rgbs\.(\d+)\.conv\.modulation\.(weight|bias)",
        lambda m: f"synthesis.b{2 ** (int(m[1]) + 3)}.torgb.affine.{m[2]}",
        _same,
    ),
    (r"to_rgbs\.(\d+)\.bias", lambda m: f"synthesis.b{2 ** (int(m[1]) + 3)}.torgb.bias", _flat),
    (r"noises\.noise_(\d+)", lambda m: f"{_noise(int(m[1]))}.noise_const", _noise_map),
    (r"convs\.\d+\.conv\.blur\.kernel|to_rgbs\.\d+\.upsample\.kernel", lambda m: None, _same),
]


def _d_block(k: int, size: int) -> str:
    return f"b{size >> (k - 1)}"


def discriminator_rules(
    size: int,
) -> list[tuple[str, Callable[[re.Match[str]], str | None], Transform]]:
    """Rules for a ``size`` x ``size`` rosinality Discriminator."""
    blk = _d_block
    return [
        (r"convs\.0\.0\.weight", lambda m: f"b{size}.fromrgb.weight", _same),
        (r"convs\.0\.1\.bias", lambda m: f"b{size}.fromrgb.bias", _same),
        (
            r"convs\.(\d+)\.conv1\.0\.weight",
            lambda m: f"{blk(int(m[1]), size)}.conv0.weight",
            _same,
        ),
        (r"convs\.(\d+)\.conv1\.1\.bias", lambda m: f"{blk(int(m[1]), size)}.conv0.bias", _same),
        (
            r"convs\.(\d+)\.conv2\.1\.weight",
            lambda m: f"{blk(int(m[1]), size)}.conv1.weight",
            _same,
        ),
        (r"convs\.(\d+)\.conv2\.2\.bias", lambda m: f"{blk(int(m[1]), size)}.conv1.bias", _same),
        (r"convs\.(\d+)\.skip\.1\.weight", lambda m: f"{blk(int(m[1]), size)}.skip.weight", _same),
        (r"final_conv\.0\.weight", lambda m: "b4.conv.weight", _same),
        (r"final_conv\.1\.bias", lambda m: "b4.conv.bias", _same),
        (r"final_linear\.0\.(weight|bias)", lambda m: f"b4.fc.{m[1]}", _same),
        (r"final_linear\.1\.(weight|bias)", lambda m: f"b4.out.{m[1]}", _same),
        (r"convs\.\d+\.(conv2|skip)\.0\.kernel", lambda m: None, _same),
    ]


def rename(
    state: dict[str, torch.Tensor],
    rules: list[tuple[str, Callable[[re.Match[str]], str | None], Transform]],
    *,
    what: str,
    kernel_sum: float,
) -> dict[str, torch.Tensor]:
    """Apply the rule table; unknown keys and non-standard blur kernels are errors."""
    out: dict[str, torch.Tensor] = {}
    expected_kernel = ops.setup_filter() * kernel_sum
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{what}: {key!r} is not a tensor")
        for pattern, name_of, transform in rules:
            m = re.fullmatch(pattern, key)
            if m is None:
                continue
            name = name_of(m)
            if name is None:
                if value.shape != expected_kernel.shape or not torch.allclose(
                    value.float(), expected_kernel, atol=1e-6
                ):
                    raise CheckpointError(
                        f"{what}: {key!r} is not the [1, 3, 3, 1] blur kernel StyleGAN2 uses"
                    )
            elif name in out:
                raise CheckpointError(f"{what}: {key!r} maps onto {name!r} twice")
            else:
                out[name] = transform(value.detach().float())
            break
        else:
            raise CheckpointError(
                f"{what}: {key!r} is not a rosinality StyleGAN2 parameter "
                "(only stylegan2-pytorch's Generator/Discriminator are supported)"
            )
    return out


def read_rosinality_pt(
    path: Path,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None, dict[str, Any]]:
    """Read a rosinality checkpoint.

    Returns:
        (generator state dict, discriminator state dict or None, hints), both with NVIDIA names;
        ``mapping.w_avg`` is present only when the file has ``latent_avg``. There are no hints:
        rosinality's ``channel_multiplier`` is read off the shapes like everything else.

    Raises:
        CheckpointError: unreadable, unsafe, or not a rosinality StyleGAN2 checkpoint.
    """
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(
            f"{path.name}: refused to load: the file needs objects beyond plain tensors "
            f"({first_line}); it is not a rosinality checkpoint or may be unsafe"
        ) from exc
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path.name}: truncated or not a torch checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("g_ema"), dict):
        raise CheckpointError(
            f"{path.name}: not a rosinality stylegan2-pytorch checkpoint (no 'g_ema' state dict)"
        )
    g = rename(ckpt["g_ema"], GENERATOR_RULES, what=f"{path.name} g_ema", kernel_sum=4.0)
    latent_avg = ckpt.get("latent_avg")
    if isinstance(latent_avg, torch.Tensor):
        g["mapping.w_avg"] = latent_avg.detach().float().reshape(-1)
    d = None
    if isinstance(ckpt.get("d"), dict):
        size = max(int(m[1]) for k in g if (m := re.match(r"synthesis\.b(\d+)\.", k)))
        d = rename(ckpt["d"], discriminator_rules(size), what=f"{path.name} d", kernel_sum=1.0)
    return g, d, {}  # the architecture comes from the shapes; `args` adds nothing to them
