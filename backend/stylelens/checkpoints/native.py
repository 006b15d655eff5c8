"""The native model format: ``models/<id>/card.json`` + ``generator.safetensors`` (G_ema)
and optionally ``discriminator.safetensors``.

The server and the CLI load only this format: tensors through safetensors, never pickles.
Every state dict is checked key by key and shape by shape before it reaches a module.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from stylelens.data.framing import Framing
from stylelens.errors import CheckpointError, ModelNotFound
from stylelens.networks.discriminator import Discriminator, DiscriminatorConfig
from stylelens.networks.stylegan2 import Generator, GeneratorConfig, channel_schedule

CARD_FILE = "card.json"
GENERATOR_FILE = "generator.safetensors"
DISCRIMINATOR_FILE = "discriminator.safetensors"
MODEL_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class SourceInfo(BaseModel):
    """Where the weights came from."""

    format: Literal["nvidia-pkl", "rosinality-pt", "native"]
    file: str = ""  # the converted file's name
    sha256: str = ""
    converted_at: str = ""  # ISO 8601, UTC


class ModelCard(BaseModel):
    """``card.json``: the architecture plus provenance. Unknown extra fields are kept."""

    model_config = ConfigDict(extra="allow")

    format_version: int = 1
    id: str = Field(pattern=MODEL_ID_PATTERN)
    name: str = ""
    description: str = ""
    architecture: Literal["stylegan2"] = "stylegan2"
    generator: GeneratorConfig
    discriminator: DiscriminatorConfig | None = None
    # Derived from `generator`, written for readers of the file; checked on load.
    resolutions: list[int] = []
    channels: dict[int, int] = {}
    num_ws: int = 0
    source: SourceInfo
    license: str = ""
    # How the training faces sit in the frame; uploads are aligned to match. A card without
    # it: ffhq, or synthfaces when its training data is SynthFaces (see _default_framing).
    framing: Framing = Framing()

    @model_validator(mode="before")
    @classmethod
    def _default_framing(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("framing") is None:
            kind = "synthfaces" if training_source(data) == "synthfaces" else "ffhq"
            data = {**data, "framing": {"kind": kind}}
        return data

    @model_validator(mode="after")
    def _derived_fields(self) -> ModelCard:
        derived = {
            "resolutions": self.generator.block_resolutions,
            "channels": self.generator.channels,
            "num_ws": self.generator.num_ws,
        }
        for name, value in derived.items():
            given = getattr(self, name)
            if given and given != value:
                raise ValueError(f"{name}={given} does not match the generator config ({value})")
            setattr(self, name, value)
        return self


def training_source(card: dict[str, Any] | ModelCard) -> str | None:
    """The training data's ``source`` (e.g. ``synthfaces``) from a card written by
    ``stylelens train``'s export; None for converted checkpoints."""
    raw = card if isinstance(card, dict) else (card.model_extra or {})
    training = raw.get("training")
    data = training.get("data") if isinstance(training, dict) else None
    source = data.get("source") if isinstance(data, dict) else None
    return source if isinstance(source, str) else None


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (recorded in ``SourceInfo.sha256``)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


# ----------------------------------------------------------------------------
# State-dict checks shared by the loaders and converters


def check_state_dict(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Raise CheckpointError unless ``state`` has exactly the module's keys and shapes."""
    expected = module.state_dict()
    unknown = [k for k in state if k not in expected]
    missing = [k for k in expected if k not in state]
    problems = []
    if unknown:
        problems.append(f"unknown keys {_preview(unknown)}")
    if missing:
        problems.append(f"missing keys {_preview(missing)}")
    for key in expected.keys() & state.keys():
        got, want = tuple(state[key].shape), tuple(expected[key].shape)
        if got != want:
            problems.append(f"{key!r} has shape {list(got)}, the architecture needs {list(want)}")
    if problems:
        raise CheckpointError(f"{what}: " + "; ".join(problems[:6]))


def _preview(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(repr(k) for k in keys[:n])
    return f"[{shown}{', ...' if len(keys) > n else ''}] ({len(keys)} in all)"


def load_into(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> nn.Module:
    """Check ``state`` against ``module`` and load it strictly (float32)."""
    check_state_dict(module, state, what)
    module.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return module.eval().requires_grad_(False)


def infer_channel_schedule(
    channels: dict[int, int], *, hint_base: int | None = None, hint_max: int | None = None
) -> tuple[int, int]:
    """Find (channel_base, channel_max) that reproduce ``channels`` {resolution: maps}.

    Prefers the hints (from the source's own config) when they fit.
    Raises CheckpointError when no NVIDIA-style schedule matches.
    """
    top = max(channels)
    if (
        hint_base
        and hint_max
        and channel_schedule(top, channel_base=hint_base, channel_max=hint_max) == channels
    ):
        return hint_base, hint_max
    cmax = max(channels.values())
    lo, hi = 1, 1 << 30
    for res, ch in channels.items():
        if ch < cmax:  # channel_base // res == ch
            lo, hi = max(lo, ch * res), min(hi, ch * res + res - 1)
        else:
            lo = max(lo, cmax * res)
    if lo <= hi and channel_schedule(top, channel_base=lo, channel_max=cmax) == channels:
        return lo, cmax
    raise CheckpointError(
        f"channel counts {channels} do not follow min(channel_base // R, channel_max); "
        "this is not a StyleGAN2 channel schedule"
    )


# ----------------------------------------------------------------------------
# Save and load


def save_model(
    model_dir: Path,
    card: ModelCard,
    generator: dict[str, torch.Tensor],
    discriminator: dict[str, torch.Tensor] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write a native model directory after checking the weights against the card.

    Nothing is written unless every tensor fits; ``overwrite`` replaces an existing directory.
    """
    load_into(Generator(card.generator), generator, "generator")
    if discriminator is not None:
        if card.discriminator is None:
            raise ValueError("discriminator weights given but the card has no discriminator")
        load_into(Discriminator(card.discriminator), discriminator, "discriminator")
    if model_dir.exists():
        if not overwrite:
            raise CheckpointError(f"{model_dir} already exists; pass --overwrite to replace it")
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    meta = {"model_id": card.id}
    save_file(_contiguous(generator), str(model_dir / GENERATOR_FILE), metadata=meta)
    if discriminator is not None:
        save_file(_contiguous(discriminator), str(model_dir / DISCRIMINATOR_FILE), metadata=meta)
    for path in model_dir.glob("*.safetensors"):
        path.chmod(0o644)  # safetensors writes 0600; a server running as another user reads these
    save_card(model_dir, card)
    return model_dir


def save_card(model_dir: Path, card: ModelCard) -> None:
    """Write ``card.json`` atomically (a temporary file, then a rename)."""
    tmp = model_dir / f".{CARD_FILE}.tmp"
    tmp.write_text(card.model_dump_json(indent=2) + "\n")
    tmp.replace(model_dir / CARD_FILE)


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def is_valid_model_id(model_id: str) -> bool:
    """Lowercase letters, digits and ``._-``, at most 64 characters: safe as a directory name."""
    return re.match(MODEL_ID_PATTERN, model_id) is not None


def model_dir_for(models_dir: Path, model_id: str) -> Path:
    """The directory of ``model_id``; ModelNotFound (listing what exists) if there is none."""
    if not is_valid_model_id(model_id):
        raise ModelNotFound(
            f"{model_id!r} is not a valid model id (lowercase letters, digits, ._-)"
        )
    path = models_dir / model_id
    if not (path / CARD_FILE).is_file():
        known = ", ".join(list_models(models_dir))
        hint = (
            f"available: {known}" if known else "convert one with: stylelens convert FILE --id ID"
        )
        raise ModelNotFound(f"no model {model_id!r} in {models_dir} ({hint})")
    return path


def list_models(models_dir: Path) -> list[str]:
    if not models_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in models_dir.iterdir()
        if (p / CARD_FILE).is_file() and (p / GENERATOR_FILE).is_file()
    )


def load_card(model_dir: Path) -> ModelCard:
    path = model_dir / CARD_FILE
    try:
        raw = json.loads(path.read_text())
        if isinstance(raw, dict) and raw.get("kind", "generator") != "generator":
            raise CheckpointError(f"{model_dir.name} is an {raw['kind']}, not a generator model")
        return ModelCard.model_validate(raw)
    except (OSError, json.JSONDecodeError, ValidationError) as exc:
        raise CheckpointError(f"{path}: not a valid model card: {exc}") from exc


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path} is missing") from exc
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file: {exc}") from exc


def load_generator(
    model_dir: Path, *, device: torch.device | str = "cpu"
) -> tuple[Generator, ModelCard]:
    """Load ``generator.safetensors`` into a frozen, eval-mode Generator on ``device``."""
    card = load_card(model_dir)
    G = Generator(card.generator)
    load_into(G, _load_tensors(model_dir / GENERATOR_FILE), f"{model_dir / GENERATOR_FILE}")
    return G.to(device), card


def load_discriminator(
    model_dir: Path, *, device: torch.device | str = "cpu"
) -> tuple[Discriminator, ModelCard]:
    card = load_card(model_dir)
    if card.discriminator is None or not (model_dir / DISCRIMINATOR_FILE).is_file():
        raise CheckpointError(f"model {card.id!r} has no discriminator weights")
    D = Discriminator(card.discriminator)
    load_into(D, _load_tensors(model_dir / DISCRIMINATOR_FILE), str(model_dir / DISCRIMINATOR_FILE))
    return D.to(device), card


def describe(card: ModelCard) -> dict[str, Any]:
    """A one-screen summary of a card (used by the CLI)."""
    g = card.generator
    return {
        "id": card.id,
        "resolution": g.img_resolution,
        "z_dim": g.z_dim,
        "w_dim": g.w_dim,
        "num_ws": card.num_ws,
        "channels": card.channels,
        "discriminator": card.discriminator is not None,
        "source": card.source.format,
    }
