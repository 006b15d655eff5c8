"""``stylelens convert``: NVIDIA ``.pkl`` or rosinality ``.pt`` -> a native model directory.

Both readers return NVIDIA-named state dicts; this module derives the architecture from the
tensor shapes (the source's own config is only a hint), checks every key and shape against our
networks, and writes ``models/<id>/``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import torch

from stylelens.checkpoints.native import (
    ModelCard,
    SourceInfo,
    infer_channel_schedule,
    is_valid_model_id,
    load_into,
    now_iso,
    save_model,
    sha256_file,
)
from stylelens.checkpoints.nvidia_pkl import read_nvidia_pkl
from stylelens.checkpoints.rosinality_pt import read_rosinality_pt
from stylelens.data.framing import FFHQ
from stylelens.errors import CheckpointError
from stylelens.networks import ops
from stylelens.networks.discriminator import DiscriminatorConfig
from stylelens.networks.stylegan2 import Generator, GeneratorConfig

SourceFormat = Literal["nvidia-pkl", "rosinality-pt"]
W_AVG_SAMPLES = 10_000  # samples for w_avg when a rosinality file has no latent_avg

LICENSE_NOTES = {
    "nvidia-pkl": (
        "Converted from an NVIDIA stylegan2-ada-pytorch pickle. NVIDIA's pretrained networks are "
        "released under the NVIDIA Source Code License-NC (non-commercial use only); check the "
        "terms of the file you converted."
    ),
    "rosinality-pt": (
        "Converted from a rosinality stylegan2-pytorch checkpoint. Weights keep the licence of "
        "the network they came from (FFHQ networks converted from NVIDIA's are non-commercial); "
        "check the terms of the file you converted."
    ),
}


def sniff_format(path: Path) -> SourceFormat:
    """'nvidia-pkl' (raw pickle) or 'rosinality-pt' (torch.save zip or legacy torch.save)."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if head.startswith(b"PK\x03\x04"):
        return "rosinality-pt"
    # Legacy torch.save starts with a pickled magic number (PROTO 2, LONG1): a raw pickle of
    # a snapshot dict starts with PROTO then EMPTY_DICT / FRAME instead.
    if head[:3] == b"\x80\x02\x8a":
        return "rosinality-pt"
    if head[:1] == b"\x80":
        return "nvidia-pkl"
    if not head:
        raise CheckpointError(f"{path.name} is empty")
    raise CheckpointError(
        f"{path.name} is neither an NVIDIA .pkl (pickle) nor a torch .pt file; "
        "expected a stylegan2-ada-pytorch snapshot or a rosinality stylegan2-pytorch checkpoint"
    )


def _hint(hints: dict[str, Any], *path: str) -> Any:
    value: Any = hints
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _as_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _as_float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def strip_resample_filters(state: dict[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """Drop NVIDIA's fixed ``resample_filter`` buffers after checking they are [1, 3, 3, 1]."""
    expected = ops.setup_filter()
    out = {}
    for key, value in state.items():
        if key == "resample_filter" or key.endswith(".resample_filter"):
            if value.shape != expected.shape or not torch.allclose(
                value.float(), expected, atol=1e-6
            ):
                raise CheckpointError(
                    f"{what}: {key!r} is not the [1, 3, 3, 1] filter StyleGAN2 uses"
                )
        else:
            out[key] = value
    return out


def generator_config(state: dict[str, torch.Tensor], hints: dict[str, Any]) -> GeneratorConfig:
    """Architecture of an NVIDIA-named generator state dict, from its shapes."""
    if any(k.startswith("mapping.embed.") for k in state):
        raise CheckpointError("conditional generators (c_dim > 0) are not supported")
    fcs = sorted(int(m[1]) for k in state if (m := re.fullmatch(r"mapping\.fc(\d+)\.weight", k)))
    res = sorted(
        int(m[1]) for k in state if (m := re.fullmatch(r"synthesis\.b(\d+)\.conv1\.weight", k))
    )
    if not fcs or not res:
        raise CheckpointError("no StyleGAN2 mapping/synthesis weights found")
    syn = _hint(hints, "synthesis_kwargs") or hints  # stylegan3-repo pickles use flat kwargs
    base, cmax = infer_channel_schedule(
        {r: state[f"synthesis.b{r}.conv1.weight"].shape[0] for r in res},
        hint_base=_as_int(_hint(syn, "channel_base")),
        hint_max=_as_int(_hint(syn, "channel_max")),
    )
    lr_mul = _as_float(_hint(hints, "mapping_kwargs", "lr_multiplier"))
    try:
        return GeneratorConfig(
            z_dim=state["mapping.fc0.weight"].shape[1],
            w_dim=state[f"mapping.fc{fcs[-1]}.weight"].shape[0],
            img_resolution=res[-1],
            img_channels=state[f"synthesis.b{res[-1]}.torgb.weight"].shape[0],
            mapping_layers=len(fcs),
            mapping_lr_multiplier=0.01 if lr_mul is None else lr_mul,
            channel_base=base,
            channel_max=cmax,
            conv_clamp=_as_float(_hint(syn, "conv_clamp")),
        )
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"cannot derive the generator architecture: {exc}") from exc


def discriminator_config(
    state: dict[str, torch.Tensor], hints: dict[str, Any]
) -> DiscriminatorConfig:
    """Architecture of an NVIDIA-named resnet discriminator state dict, from its shapes."""
    if any(k.startswith("mapping.") for k in state):
        raise CheckpointError("conditional discriminators (c_dim > 0) are not supported")
    rgb = [int(m[1]) for k in state if (m := re.fullmatch(r"b(\d+)\.fromrgb\.weight", k))]
    if len(rgb) != 1 or not any(k.endswith(".skip.weight") for k in state):
        raise CheckpointError("only the resnet discriminator architecture is supported")
    size = rgb[0]
    try:
        channels = {4: state["b4.conv.weight"].shape[0]}
        r = size
        while r > 4:
            channels[r] = state[f"b{r}.conv0.weight"].shape[0]
            r //= 2
        base, cmax = infer_channel_schedule(
            dict(sorted(channels.items())),
            hint_base=_as_int(hints.get("channel_base")),
            hint_max=_as_int(hints.get("channel_max")),
        )
        group = _as_int(_hint(hints, "epilogue_kwargs", "mbstd_group_size"))
        return DiscriminatorConfig(
            img_resolution=size,
            img_channels=state[f"b{size}.fromrgb.weight"].shape[1],
            channel_base=base,
            channel_max=cmax,
            conv_clamp=_as_float(hints.get("conv_clamp")),
            mbstd_group_size=4 if group is None else group,
            mbstd_num_channels=state["b4.conv.weight"].shape[1] - channels[4],
        )
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"cannot derive the discriminator architecture: {exc}") from exc


@torch.no_grad()
def estimate_w_avg(G: Generator, num_samples: int = W_AVG_SAMPLES) -> torch.Tensor:
    """Mean of mapping(z) over ``num_samples`` fixed-seed z (for files without w_avg)."""
    z = torch.randn(num_samples, G.z_dim, generator=torch.Generator().manual_seed(0))
    return G.mapping(z)[:, 0].mean(dim=0)


def convert_checkpoint(
    src: Path,
    *,
    model_id: str,
    models_dir: Path,
    name: str = "",
    license_note: str | None = None,
    with_discriminator: bool = True,
    overwrite: bool = False,
) -> ModelCard:
    """Convert ``src`` into ``models_dir/model_id``. Returns the written card.

    Raises:
        CheckpointError: the file is unreadable, unsafe or unsupported, or the target exists.
    """
    if not is_valid_model_id(model_id):
        raise CheckpointError(
            f"{model_id!r} is not a valid model id: use lowercase letters, digits, '.', '_', '-'"
        )
    target = models_dir / model_id
    if target.exists() and not overwrite:
        raise CheckpointError(f"{target} already exists; pass --overwrite to replace it")
    fmt = sniff_format(src)
    reader = read_nvidia_pkl if fmt == "nvidia-pkl" else read_rosinality_pt
    g_state, d_state, hints = reader(src)
    g_hints = hints.get("G", {}) if fmt == "nvidia-pkl" else {}
    g_state = strip_resample_filters(g_state, "generator")
    g_config = generator_config(g_state, g_hints)
    description = f"Converted from {src.name}."
    if "mapping.w_avg" not in g_state:  # rosinality files without latent_avg
        G = Generator(g_config)
        load_into(G, {**g_state, "mapping.w_avg": torch.zeros(g_config.w_dim)}, "generator")
        g_state["mapping.w_avg"] = estimate_w_avg(G)
        description += f" w_avg estimated from {W_AVG_SAMPLES} samples (the file has none)."
    d_config = None
    if with_discriminator and d_state is not None:
        d_state = strip_resample_filters(d_state, "discriminator")
        d_config = discriminator_config(d_state, hints.get("D", {}) if fmt == "nvidia-pkl" else {})
    else:
        d_state = None
    card = ModelCard(
        id=model_id,
        name=name or model_id,
        description=description,
        generator=g_config,
        discriminator=d_config,
        source=SourceInfo(
            format=fmt, file=src.name, sha256=sha256_file(src), converted_at=now_iso()
        ),
        license=license_note or LICENSE_NOTES[fmt],
        framing=FFHQ,  # what the published StyleGAN2 face weights (and fetch's) were trained on
    )
    save_model(target, card, g_state, d_state, overwrite=overwrite)
    return card
