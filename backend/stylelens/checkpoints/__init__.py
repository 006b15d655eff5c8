"""Model directories (``models/<id>/``) and converters from NVIDIA and rosinality files."""

from stylelens.checkpoints.native import (
    ModelCard,
    list_models,
    load_card,
    load_discriminator,
    load_generator,
    model_dir_for,
    save_model,
)

__all__ = [
    "ModelCard",
    "list_models",
    "load_card",
    "load_discriminator",
    "load_generator",
    "model_dir_for",
    "save_model",
]
