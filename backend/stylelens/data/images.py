"""Reading the images users send: any format Pillow reads, any mode, any orientation.

Every path that takes a user's image (``stylelens invert``, ``stylelens align``, the web app's
upload) goes through :func:`load_image`, so they agree on what is accepted and on the errors.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from stylelens.errors import StyleLensError

DEFAULT_MAX_PIXELS = 50_000_000  # ~ a 50-megapixel photo; larger is refused as a possible bomb


class InvalidImage(StyleLensError):
    """The bytes are not an image we can read (not an image, corrupt, truncated, too large)."""


def load_image(source: Path | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``source`` into an upright 8-bit RGB image.

    EXIF orientation is applied; grayscale, palette, CMYK, 16-bit and alpha images are
    converted (alpha is composited on white).

    Raises:
        InvalidImage: not an image, corrupt or truncated data, or more than ``max_pixels``
            pixels (decompression bombs are refused before they are decoded).
    """
    name = str(source) if isinstance(source, Path) else "the upload"
    try:
        data = source.read_bytes() if isinstance(source, Path) else source
    except OSError as e:
        raise InvalidImage(f"cannot read {name}: {e.strerror or e}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:
                raise InvalidImage(
                    f"{name} is {w}x{h} ({w * h / 1e6:.0f} megapixels); "
                    f"the limit is {max_pixels / 1e6:.0f} megapixels"
                )
            im.load()
    except InvalidImage:
        raise
    except UnidentifiedImageError:
        raise InvalidImage(
            f"{name} is not an image format we can read (JPEG, PNG, WebP...)"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidImage(
            f"{name} decodes to too many pixels (possible decompression bomb)"
        ) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InvalidImage(f"{name} is corrupt or truncated: {e}") from None
    upright: Image.Image = ImageOps.exif_transpose(im) or im
    return _to_rgb(upright)


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grayscale: scale to 8 bits
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if a.max() > 255 else 255.0
        im = Image.fromarray((a / top * 255).clip(0, 255).astype(np.uint8), "L")
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        im = Image.fromarray((a.clip(0, 1) * 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    return im.convert("RGB")


def center_crop_resize(im: Image.Image, resolution: int) -> Image.Image:
    """The largest centred square, resized to ``resolution`` x ``resolution`` (Lanczos)."""
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = im.crop((left, top, left + side, top + side))
    return square.resize((resolution, resolution), Image.Resampling.LANCZOS)


def to_tensor(im: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 [1, 3, H, W] in [-1, 1] (the generator's range)."""
    a = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy())
    return a.permute(2, 0, 1).unsqueeze(0).float() / 127.5 - 1
