"""Binary masks a user paints or uploads (an inpainting hole, the region of a local edit).

Masks are read from images the way image tools write them: white, or opaque where the image has
transparency, marks the region. They must be square like the model's images; grey levels are
thresholded and a size that is a whole multiple or fraction of the model's is resized, each
with a note the user is shown.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from stylelens.errors import StyleLensError


class MaskError(StyleLensError):
    """A mask cannot be used: another aspect or size, empty, or covering everything."""


@dataclass(frozen=True)
class Mask:
    """A binary mask [1, 1, R, R] in {0, 1} (1: the region) and what was done to read it."""

    hole: torch.Tensor
    notes: tuple[str, ...]


def read_mask(
    image: Image.Image,
    resolution: int,
    *,
    marks: str = "the region",
    whole: str = "nothing would be left outside it",
) -> Mask:
    """A binary mask from an image: white (or opaque, for an image with transparency) marks
    the region (the pixels to fill in, to edit...), OpenCV's and LaMa's convention.

    A mask with grey levels is thresholded at half (and says so); one of another aspect or a
    square of another size is refused unless it is a whole multiple or fraction of the model's
    resolution (then it is resized with nearest neighbours, and says so); an empty mask and one
    that covers everything are refused; ``marks`` and ``whole`` word those refusals for the
    use (what the region is for, what an all-covering mask leaves).
    """
    notes: list[str] = []
    if image.width != image.height:
        raise MaskError(
            f"the mask is {image.width}x{image.height}; it must be square like the model's "
            f"{resolution}x{resolution} images (paint it on the aligned crop)"
        )
    alpha = image.getchannel("A") if "A" in image.getbands() else None
    if alpha is not None and alpha.getextrema()[0] < 255:  # type: ignore[operator]
        arr = np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0
        how = "alpha"
    else:
        arr = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        how = "brightness"
    if image.width != resolution:
        big, small = max(image.width, resolution), min(image.width, resolution)
        if big % small:
            raise MaskError(
                f"the mask is {image.width}x{image.height}, the model makes "
                f"{resolution}x{resolution}: paint it on the aligned crop"
            )
        arr = (
            np.asarray(
                Image.fromarray((arr * 255).astype(np.uint8)).resize(
                    (resolution, resolution), Image.Resampling.NEAREST
                ),
                dtype=np.float32,
            )
            / 255.0
        )
        notes.append(f"mask resized from {image.width}x{image.height} to {resolution}x{resolution}")
    grey = float(((arr > 0.02) & (arr < 0.98)).mean())
    if grey > 0:
        notes.append(
            f"the mask is not binary ({grey:.1%} of its pixels are grey): thresholded at half"
        )
    hole = torch.from_numpy((arr >= 0.5).astype(np.float32))[None, None]
    frac = float(hole.mean())
    if frac == 0:
        raise MaskError(f"the mask is empty (no pixel is white in its {how}): paint {marks}")
    if frac == 1:
        raise MaskError(f"the mask covers the whole image: {whole}")
    return Mask(hole, tuple(notes))
