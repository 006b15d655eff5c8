"""SynthFaces: procedural portrait faces with known attributes (see ``draw`` for how)."""

from stylelens.data.synthfaces.dataset import SynthFacesDataset, SynthFacesStream, write_folder
from stylelens.data.synthfaces.draw import MAX_RESOLUTION, MIN_RESOLUTION, render, render_face
from stylelens.data.synthfaces.params import (
    ATTRIBUTES,
    BEARDS,
    GLASSES,
    HAIR_STYLES,
    Attribute,
    FaceParams,
    labels_vector,
    sample_params,
)

__all__ = [
    "ATTRIBUTES",
    "BEARDS",
    "GLASSES",
    "HAIR_STYLES",
    "MAX_RESOLUTION",
    "MIN_RESOLUTION",
    "Attribute",
    "FaceParams",
    "SynthFacesDataset",
    "SynthFacesStream",
    "labels_vector",
    "render",
    "render_face",
    "sample_params",
    "write_folder",
]
