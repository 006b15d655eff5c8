"""Images for the wire: a rendered tensor encoded as the JPEG a frame carries."""

from __future__ import annotations

import io
from dataclasses import dataclass

import torch
from PIL import Image

from stylelens.render import to_uint8


@dataclass(frozen=True)
class Image8:
    """An encoded image for the wire."""

    data: bytes
    width: int
    height: int
    mime: str = "image/jpeg"


def encode_preview(img: torch.Tensor, size: int) -> Image8:
    """[1, 3, r, r] in [-1, 1] -> JPEG (quality 85) at most ``size`` pixels wide."""
    im = Image.fromarray(to_uint8(img)[0])
    if im.width > size:
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return Image8(buf.getvalue(), im.width, im.height)
