"""Semantic directions (SeFa, GANSpace, InterFaceGAN, imported) and editing operations."""

from stylelens.directions.core import (
    LAYER_RANGES,
    Direction,
    DirectionError,
    layer_indices,
    layer_mask,
)
from stylelens.directions.edit import apply_directions, interpolate, style_mix, truncate_toward
from stylelens.directions.store import (
    delete_direction,
    list_directions,
    load_direction,
    load_directions,
    read_vector_file,
    save_directions,
)

__all__ = [
    "LAYER_RANGES",
    "Direction",
    "DirectionError",
    "apply_directions",
    "delete_direction",
    "interpolate",
    "layer_indices",
    "layer_mask",
    "list_directions",
    "load_direction",
    "load_directions",
    "read_vector_file",
    "save_directions",
    "style_mix",
    "truncate_toward",
]
