"""Pick a training set from a source string: ``synthfaces`` or a folder of images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stylelens.data.folder import ImageFolderDataset, check_resolution
from stylelens.errors import DatasetError

SYNTHFACES = "synthfaces"


@dataclass(frozen=True)
class TrainingData:
    """A map-style dataset of uint8 [3, R, R] images and what it is."""

    dataset: torch.utils.data.Dataset[torch.Tensor]
    description: dict[str, Any]  # JSON-ready; stored in a run's config.json and compared on resume
    summary: str  # one line for the log


def open_dataset(
    source: str | Path, resolution: int, *, param_latents: bool = False
) -> TrainingData:
    """``"synthfaces"``: the procedural face stream (seeds 0 .. 999,999); anything else: a
    folder of images (see ``ImageFolderDataset``). ``param_latents``: SynthFaces items are
    ``(image, parameter latent)`` (``stylelens train --supervise``).

    Raises DatasetError for a missing or empty folder, an unsupported resolution, or
    ``param_latents`` with a folder (photographs come without parameters).
    """
    check_resolution(resolution)
    if param_latents and str(source) != SYNTHFACES:
        raise DatasetError(
            "--supervise and --condition-d need --data synthfaces: they learn from each "
            "face's drawing parameters, which a folder of images does not have"
        )
    if str(source) == SYNTHFACES:
        from stylelens.data.synthfaces import SynthFacesDataset  # renders faces; import on use

        try:
            faces = SynthFacesDataset(resolution, param_latents=param_latents)
        except ValueError as exc:
            raise DatasetError(str(exc)) from exc
        description = {"source": SYNTHFACES, "num_images": len(faces), "first_seed": 0}
        return TrainingData(faces, description, f"synthfaces: {len(faces)} seeds")
    folder = ImageFolderDataset(Path(source).expanduser().resolve(), resolution)
    description = {
        "source": str(folder.root),
        "num_images": len(folder),
        "skipped": len(folder.skipped),
    }
    return TrainingData(folder, description, folder.summary())
