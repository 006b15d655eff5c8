"""Attribute-network model directories: ``models/<id>/card.json`` (``kind: attribute-net``)
plus ``attributes.safetensors``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors.torch import load_file, save_file

from stylelens.checkpoints.native import CARD_FILE, MODEL_ID_PATTERN, load_into
from stylelens.errors import CheckpointError
from stylelens.networks.attributes import AttributeNet, AttributeNetConfig

WEIGHTS_FILE = "attributes.safetensors"
DEFAULT_ATTRIBUTE_MODEL = "attributes-synthfaces"


class AttributeNetCard(BaseModel):
    """What an attribute network reads and how well (held-out metrics per attribute)."""

    model_config = ConfigDict(extra="allow")

    format_version: int = 1
    kind: Literal["attribute-net"] = "attribute-net"
    id: str = Field(pattern=MODEL_ID_PATTERN)
    description: str = ""
    config: AttributeNetConfig
    metrics: dict[str, dict[str, float]] = {}  # attribute -> {"r2": ...} or {"accuracy": ...}
    training: dict[str, Any] = {}


def save_attribute_net(
    model_dir: Path, card: AttributeNetCard, net: AttributeNet, *, overwrite: bool = False
) -> Path:
    if model_dir.exists():
        if not overwrite:
            raise CheckpointError(f"{model_dir} already exists; pass --overwrite to replace it")
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    # float16 storage halves the file; predictions move by far less than their error.
    state = {
        k: (v.half() if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in net.state_dict().items()
    }
    save_file(state, str(model_dir / WEIGHTS_FILE), metadata={"model_id": card.id})
    (model_dir / CARD_FILE).write_text(card.model_dump_json(indent=2) + "\n")
    return model_dir


def load_attribute_net(model_dir: Path) -> tuple[AttributeNet, AttributeNetCard]:
    """Load an eval-mode attribute network; CheckpointError names what is wrong."""
    path = model_dir / CARD_FILE
    if not path.is_file():
        raise CheckpointError(
            f"no attribute network in {model_dir} (train one: stylelens train-attributes)"
        )
    try:
        card = AttributeNetCard.model_validate(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, ValidationError) as exc:
        raise CheckpointError(f"{path}: not an attribute-network card: {exc}") from exc
    net = AttributeNet(card.config)
    try:
        state = load_file(str(model_dir / WEIGHTS_FILE))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{model_dir / WEIGHTS_FILE}: cannot read: {exc}") from exc
    load_into(net, state, str(model_dir / WEIGHTS_FILE))
    return net.eval(), card
