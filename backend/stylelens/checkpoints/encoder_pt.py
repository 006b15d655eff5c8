"""``stylelens convert-encoder``: an official pSp / e4e ``.pt`` -> the model's encoder file.

The file is the training coach's ``torch.save`` dict, read with ``weights_only=True``:

* ``state_dict``: the whole pSp module: ``encoder.*`` (GradualStyleEncoder or Encoder4Editing
  on IR-SE50, names equal to :mod:`stylelens.encoders.psp`'s, so the conversion is a copy) and
  ``decoder.*`` (the rosinality generator it was trained against: not installed, the model's
  own generator is what the ws are for, but compared with it, so that an encoder is not
  installed on another generator of the same shape, whose ws would mean something else);
* ``opts``: ``vars()`` of the training options, plain values (``encoder_type`` says pSp or
  e4e; ``start_from_latent_avg`` whether ``latent_avg`` is added to the output);
* ``latent_avg``: the generator's mean w, ``[num_ws, w_dim]`` (or ``[w_dim]``);
* in files saved to resume training: ``global_step``, ``optimizer``, ``best_val_loss`` and
  the latent discriminator's states, ignored.

The architecture (``num_ws``, ``w_dim``, stage widths, input resolution) is read off the
shapes; every key and shape is then checked against the module built from it.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any, NamedTuple

import torch

from stylelens.checkpoints.native import load_card, load_generator, load_into, now_iso, sha256_file
from stylelens.checkpoints.rosinality_pt import GENERATOR_RULES, rename
from stylelens.encoders.psp import IR_SE50_UNITS, E4EEncoder, PSPEncoder
from stylelens.encoders.store import save_encoder
from stylelens.errors import CheckpointError

# opts['encoder_type'] -> (our architecture name, class, source format recorded in the card)
ENCODER_TYPES: dict[str, tuple[str, type[PSPEncoder] | type[E4EEncoder], str]] = {
    "GradualStyleEncoder": ("psp", PSPEncoder, "psp-pt"),
    "Encoder4Editing": ("e4e", E4EEncoder, "e4e-pt"),
}
# (key regex in state_dict, our name from the match; None: not the encoder, dropped)
STATE_RULES: list[tuple[str, str | None]] = [
    (r"encoder\.(.+)", r"\1"),  # same names as ours
    (r"decoder\..+", None),  # the rosinality generator: not part of the encoder
]
USED_TOP_LEVEL = {"state_dict", "opts", "latent_avg"}
IGNORED_TOP_LEVEL = {  # training-resume state
    "global_step",
    "optimizer",
    "best_val_loss",
    "discriminator_state_dict",
    "discriminator_optimizer_state_dict",
}


def _load(path: Path) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(
            f"{path.name}: refused to load: the file needs objects beyond plain tensors and "
            f"values ({first_line}); it is not an official pSp/e4e checkpoint or may be unsafe"
        ) from exc
    except Exception as exc:  # a damaged file fails in many ways (zip reader, unpickler memo)
        raise CheckpointError(
            f"{path.name}: truncated or not a torch checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path.name}: not a pSp/e4e checkpoint (not a dict)")
    if "g_ema" in ckpt:
        raise CheckpointError(
            f"{path.name} is a rosinality generator checkpoint, not an encoder; "
            "convert it with `stylelens convert`"
        )
    if not isinstance(ckpt.get("state_dict"), dict) or not isinstance(ckpt.get("opts"), dict):
        raise CheckpointError(
            f"{path.name}: not a pSp/e4e checkpoint (expected a dict with 'state_dict' and "
            f"'opts'; found keys {sorted(map(str, ckpt))[:8]})"
        )
    unknown = set(ckpt) - USED_TOP_LEVEL - IGNORED_TOP_LEVEL
    if unknown:
        raise CheckpointError(f"{path.name}: unknown top-level entries {sorted(map(str, unknown))}")
    return ckpt


def encoder_state(state: dict[str, Any], what: str) -> dict[str, torch.Tensor]:
    """Apply :data:`STATE_RULES`: the encoder's tensors under our names; unknown keys fail."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for pattern, name in STATE_RULES:
            m = re.fullmatch(pattern, str(key))
            if m is None:
                continue
            if name is not None:
                if not isinstance(value, torch.Tensor):
                    raise CheckpointError(f"{what}: {key!r} is not a tensor")
                out[m.expand(name)] = value.detach()
            break
        else:
            raise CheckpointError(
                f"{what}: {key!r} is neither an encoder ('encoder.*') nor a generator "
                "('decoder.*') entry of a pSp/e4e checkpoint"
            )
    if not out:
        raise CheckpointError(f"{what}: no 'encoder.*' weights: this is not an encoder checkpoint")
    return out


def encoder_config(state: dict[str, torch.Tensor], what: str) -> dict[str, Any]:
    """Constructor keywords of the encoder whose (our-named) state dict this is, from shapes."""
    try:
        num_ws = len(
            {m[1] for k in state if (m := re.fullmatch(r"styles\.(\d+)\.linear\.weight", k))}
        )
        w_dim = int(state["styles.0.linear.weight"].shape[0])
        convs = sum(1 for k in state if re.fullmatch(r"styles\.0\.convs\.\d+\.weight", k))
        units = sorted(
            int(m[1]) for k in state if (m := re.fullmatch(r"body\.(\d+)\.res_layer\.1\.weight", k))
        )
        widths = [int(state[f"body.{i}.res_layer.1.weight"].shape[0]) for i in units]
    except (KeyError, IndexError) as exc:
        raise CheckpointError(f"{what}: not a GradualStyleEncoder/Encoder4Editing ({exc})") from exc
    stages: list[int] = []  # stage widths strictly increase: a new width starts a stage
    counts: list[int] = []
    for width in widths:
        if not stages or width != stages[-1]:
            stages.append(width)
            counts.append(0)
        counts[-1] += 1
    if tuple(counts) != IR_SE50_UNITS or num_ws == 0:
        raise CheckpointError(
            f"{what}: a backbone of {counts} units per stage and {num_ws} style heads; "
            f"only the IR-SE50 layout {list(IR_SE50_UNITS)} of the official encoders is supported"
        )
    return {
        "num_ws": num_ws,
        "w_dim": w_dim,
        "input_resolution": 16 * 2**convs,  # head 0 reads R/16 features down to 1x1
        "stage_units": list(counts),
        "stage_channels": stages,
    }


# Largest relative L2 difference between a decoder tensor and the model's own: float16
# storage of either side stays far below it, another training run far above.
SAME_GENERATOR_TOLERANCE = 1e-2


def compare_generator(state: dict[str, Any], model_dir: Path, what: str) -> dict[str, Any]:
    """Compare the file's ``decoder.*`` (a rosinality generator) with the model's generator.

    Returns:
        ``{"tensors": n, "max_relative_difference": d, "worst": name, "same": bool}``, or
        ``{"skipped": why}`` when the file has no comparable generator.
    """
    decoder = {str(k)[len("decoder.") :]: v for k, v in state.items()
               if str(k).startswith("decoder.") and isinstance(v, torch.Tensor)}  # fmt: skip
    if not decoder:
        return {"skipped": "the file holds no generator (decoder.*)"}
    try:
        theirs = rename(decoder, GENERATOR_RULES, what=f"{what} decoder", kernel_sum=4.0)
    except CheckpointError as exc:
        return {"skipped": f"its generator is not a standard rosinality one ({exc})"}
    G, _ = load_generator(model_dir)
    ours = G.state_dict()
    worst, diff, compared = "", 0.0, 0
    for name, value in theirs.items():
        if name.endswith("noise_const") or name not in ours:
            continue  # fixed noise maps are not weights; buffers the model lacks: nothing to say
        mine = ours[name].float()
        if tuple(value.shape) != tuple(mine.shape):
            return {"tensors": compared, "max_relative_difference": float("inf"),
                    "worst": name, "same": False}  # fmt: skip
        d = float((value.float() - mine).norm() / mine.norm().clamp_min(1e-12))
        compared += 1
        if d >= diff:
            worst, diff = name, d
    if compared == 0:
        return {"skipped": "no tensor of its generator is named like the model's"}
    return {"tensors": compared, "max_relative_difference": round(diff, 6), "worst": worst,
            "same": diff <= SAME_GENERATOR_TOLERANCE}  # fmt: skip


class EncoderFile(NamedTuple):
    """What :func:`read_encoder_pt` reads from an official file."""

    architecture: str  # "psp" | "e4e"
    encoder: torch.nn.Module  # loaded, in eval mode
    config: dict[str, Any]  # its constructor keywords
    opts: dict[str, Any]  # the file's training options
    format: str  # the source format the card records
    state: dict[str, Any]  # the whole state dict (decoder.* for :func:`compare_generator`)


def read_encoder_pt(path: Path) -> EncoderFile:
    """Read an official pSp/e4e checkpoint.

    Raises:
        CheckpointError: unreadable, truncated, unsafe, not an encoder, an encoder type other
            than GradualStyleEncoder/Encoder4Editing, or keys/shapes that do not fit.
    """
    ckpt = _load(path)
    opts: dict[str, Any] = ckpt["opts"]
    kind = opts.get("encoder_type")
    if kind not in ENCODER_TYPES:
        raise CheckpointError(
            f"{path.name}: encoder_type {kind!r} is not supported; "
            f"known: {sorted(ENCODER_TYPES)} (pSp's FFHQ encoder and e4e)"
        )
    if opts.get("input_nc", 3) != 3 or opts.get("label_nc", 0):
        raise CheckpointError(
            f"{path.name}: this pSp takes {opts.get('input_nc')}-channel inputs "
            f"(label_nc={opts.get('label_nc')}), not photos; only face encoders are supported"
        )
    architecture, cls, fmt = ENCODER_TYPES[kind]
    state = encoder_state(ckpt["state_dict"], path.name)
    config = encoder_config(state, path.name)
    encoder = cls(**config)
    state["latent_avg"] = _latent_avg(ckpt, opts, config, path.name)
    load_into(encoder, state, f"{path.name} ({kind})")
    return EncoderFile(architecture, encoder, config, opts, fmt, ckpt["state_dict"])


def _latent_avg(
    ckpt: dict[str, Any], opts: dict[str, Any], config: dict[str, Any], what: str
) -> torch.Tensor:
    """What pSp adds to the heads' output: ``latent_avg`` when ``start_from_latent_avg``."""
    num_ws, w_dim = config["num_ws"], config["w_dim"]
    if not opts.get("start_from_latent_avg", False):
        return torch.zeros(num_ws, w_dim)  # the heads' output is already absolute
    avg = ckpt.get("latent_avg")
    if not isinstance(avg, torch.Tensor):
        raise CheckpointError(f"{what}: start_from_latent_avg is set but there is no latent_avg")
    avg = avg.detach().float()
    if tuple(avg.shape) == (w_dim,):
        return avg.expand(num_ws, w_dim).clone()
    if tuple(avg.shape) != (num_ws, w_dim):
        raise CheckpointError(
            f"{what}: latent_avg has shape {list(avg.shape)}, expected [{num_ws}, {w_dim}]"
        )
    return avg


def convert_encoder(src: Path, *, model_dir: Path, other_generator: bool = False) -> Path:
    """Convert the official pSp/e4e checkpoint ``src`` into ``model_dir``'s encoder.

    Returns:
        the written ``encoder.safetensors``.

    Raises:
        CheckpointError: the file is refused (see :func:`read_encoder_pt`), its ws do not fit
            the model's generator, or (unless ``other_generator``) the generator it was
            trained against is not the model's.
    """
    card = load_card(model_dir)
    file = read_encoder_pt(src)
    config, opts = file.config, file.opts
    got = (config["num_ws"], config["w_dim"])
    want = (card.num_ws, card.generator.w_dim)
    if got != want:
        res = 2 ** ((got[0] + 2) // 2)
        raise CheckpointError(
            f"{src.name} makes ws of num_ws={got[0]}, w_dim={got[1]} (a {res} px generator's), "
            f"but model {card.id!r} takes num_ws={want[0]}, w_dim={want[1]}: "
            "install it on a model of the generator it was trained for"
        )
    check = compare_generator(file.state, model_dir, src.name)
    if check.get("same") is False and not other_generator:
        raise CheckpointError(
            f"{src.name} was trained against another generator than model {card.id!r}'s "
            f"({check['worst']} differs by {check['max_relative_difference']:.3g} relative to "
            f"the model's): its ws would not mean the same there. Install it on the model it "
            "was trained for (e4e/pSp FFHQ: `stylelens fetch ffhq-1024`), or pass "
            "--other-generator to install it anyway"
        )
    info = {
        "source": {
            "file": src.name,
            "sha256": sha256_file(src),
            "format": file.format,
            "converted_at": now_iso(),
        },
        "trained_for": {
            "dataset_type": opts.get("dataset_type"),
            "stylegan_size": opts.get("stylegan_size"),
        },
        "generator_check": check,
    }
    return save_encoder(
        model_dir, file.encoder, architecture=file.architecture, config=config, info=info
    )
