"""Reading the images users send: any format Pillow reads, any mode, any orientation.

Every path that takes a user's image (``stylelens invert``, ``stylelens align``, the web app's
upload) goes through :func:`load_image`, so they agree on what is accepted and on the errors.
"""

from __future__ import annotations

import ctypes
import functools
import io
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from stylelens.errors import StyleLensError

DEFAULT_MAX_PIXELS = 50_000_000  # ~ a 50-megapixel photo; larger is refused as a possible bomb


class InvalidImage(StyleLensError):
    """The bytes are not an image we can read (not an image, corrupt, truncated, too large)."""


def load_image(
    source: Path | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int | None = None
) -> Image.Image:
    """Decode ``source`` into an upright 8-bit RGB image.

    EXIF orientation is applied; grayscale, palette, CMYK, 16-bit and alpha images are
    converted (alpha is composited on white).

    Memory: a decoded image is 3-4 bytes per pixel whatever the file's size (a 170 kB PNG can be
    160 MB), so the conversions never hold two full-size copies: modes are converted one band
    of rows at a time into the (smaller) result, and the decoded image is closed, and its memory
    returned to the system, before this returns.

    Args:
        source: a file, or the bytes of one.
        max_pixels: refuse larger images before decoding them.
        max_side: shrink the result so that its longer side is at most this many pixels.
            JPEGs are then decoded at a reduced scale (libjpeg's DCT scaling: 1/2, 1/4 or 1/8,
            never below ``max_side``); other formats are decoded and box-reduced band by band,
            then Lanczos-resized to ``max_side``.

    Raises:
        InvalidImage: not an image, corrupt or truncated data, a colour mode we cannot
            convert, or more than ``max_pixels`` pixels (decompression bombs are refused before
            they are decoded).
    """
    name = str(source) if isinstance(source, Path) else "the upload"
    try:
        data = source.read_bytes() if isinstance(source, Path) else source
    except OSError as e:
        raise InvalidImage(f"cannot read {name}: {e.strerror or e}") from None
    im, orientation = _decode(data, name, max_pixels=max_pixels, max_side=max_side)
    decoded = im.width * im.height
    try:
        out = _fit_rgb(im, _fitted_size(im.size, max_side))
    except (ValueError, OSError) as e:  # e.g. a LAB or multi-channel TIFF
        im.close()
        raise InvalidImage(f"{name} has a colour mode we cannot convert ({e})") from None
    if out is not im:
        im.close()  # frees the full-size pixels now, not when the garbage collector runs
    method = _TRANSPOSE.get(orientation)
    if method is not None:
        out = out.transpose(method)
    if decoded >= TRIM_AFTER_PIXELS:
        release_memory()  # what the large decode freed goes back to the system
    return out


TRIM_AFTER_PIXELS = 4_000_000  # decodes from this size on are followed by release_memory()
_BAND_PIXELS = 1 << 21  # source pixels converted at a time (8 MB of RGBA), whatever the size
_INTEGER_MODES = ("I;16", "I;16B", "I;16L", "I")
_TRANSPOSE = {  # EXIF Orientation -> the transpose that shows the image upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _decode(
    data: bytes, name: str, *, max_pixels: int, max_side: int | None
) -> tuple[Image.Image, int]:
    """The decoded, not yet converted image (at a reduced scale where the format allows) and
    its EXIF orientation (1: upright)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InvalidImage(
            f"{name} is not an image format we can read (JPEG, PNG, WebP...)"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidImage(
            f"{name} decodes to too many pixels (possible decompression bomb)"
        ) from None
    except Exception as e:  # a damaged header can raise almost anything inside a plugin
        raise InvalidImage(f"{name} is corrupt or truncated: {e}") from None
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise InvalidImage(
            f"{name} is {w}x{h} ({w * h / 1e6:.0f} megapixels); "
            f"the limit is {max_pixels / 1e6:.0f} megapixels"
        )
    if max_side is not None and max(w, h) > max_side:
        scale = max_side / max(w, h)  # JPEG: decode at the smallest scale >= max_side
        im.draft(None, (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im.load()
    except MemoryError:
        im.close()
        raise
    except Exception as e:  # OSError mostly; malformed chunks raise others
        im.close()
        raise InvalidImage(f"{name} is corrupt or truncated: {e}") from None
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # damaged EXIF: the pixels are fine, show them as stored
        orientation = 1
    return im, orientation if isinstance(orientation, int) else 1


def _fitted_size(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    w, h = size
    if max_side is None or max(w, h) <= max_side:
        return size
    scale = max_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _fit_rgb(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``im`` as RGB at ``size`` (box-reduced, then Lanczos); ``im`` itself if it already is.

    Done one band of output rows at a time, each from its source rows plus the filter's
    support, so a large image is never held twice (``convert``, ``alpha_composite`` and
    ``resize`` would each make a full-size copy) and the bands join without seams.
    Compositing alpha on white before filtering equals filtering premultiplied colours.
    """
    if im.mode == "RGB" and im.size == size:
        return im
    (w, h), (out_w, out_h) = im.size, size
    sx, sy = w / out_w, h / out_h  # source pixels per output pixel
    resize = size != im.size
    # Box-reduce first, leaving Lanczos at least 1.5x (Pillow's reducing_gap): 4-8x less work
    # than Lanczos alone, within ~1 grey level of it on photos.
    f = max(1, int(min(sx, sy) / 1.5)) if resize else 1
    margin = math.ceil(3 * sy) + f if resize else 0  # Lanczos' support (a = 3), source rows
    rows = max(8, int(_BAND_PIXELS / (w * sy)))  # output rows per band
    top_value = _integer_top(im, max(1, _BAND_PIXELS // w))
    out = Image.new("RGB", size)
    for y in range(0, out_h, rows):
        y0, y1 = y * sy, min(y + rows, out_h) * sy  # the band's source rows (fractional)
        top = max(0, math.floor(y0) - margin) // f * f  # whole reduce blocks
        bottom = min(h, math.ceil(y1) + margin)
        band = _to_rgb(im.crop((0, top, w, bottom)), top_value)
        if resize:
            band = band.reduce(f) if f > 1 else band
            box = (0.0, (y0 - top) / f, w / f, (y1 - top) / f)
            band = band.resize((out_w, min(rows, out_h - y)), Image.Resampling.LANCZOS, box=box)
        out.paste(band, (0, y))
    return out


def _integer_top(im: Image.Image, rows: int) -> float:
    """The value that maps to 255 in 16/32-bit integer images, judged on the whole image (band
    by band: ``getextrema`` does not read big-endian 16-bit images)."""
    if im.mode not in _INTEGER_MODES:
        return 255.0
    w, h = im.size
    hi = max(int(np.asarray(im.crop((0, y, w, min(y + rows, h)))).max()) for y in range(0, h, rows))
    return 65535.0 if hi > 255 else 255.0


def _to_rgb(im: Image.Image, top: float = 255.0) -> Image.Image:
    if im.mode in _INTEGER_MODES:  # 16/32-bit grayscale: scale to 8 bits
        a = np.asarray(im, dtype=np.float64)
        im = Image.fromarray((a / top * 255).clip(0, 255).astype(np.uint8), "L")
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        im = Image.fromarray((a.clip(0, 1) * 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("LA", "PA"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":  # composited on white (as alpha_composite, 3x faster)
        out = Image.new("RGB", im.size, (255, 255, 255))
        out.paste(im, (0, 0), im)
        return out
    return im.convert("RGB")


def release_memory() -> None:
    """Hand memory freed by large decodes back to the operating system.

    glibc's malloc keeps freed memory in its per-thread arenas for reuse, so a server that
    decoded a few large images in worker threads stays at its peak size; ``malloc_trim``
    returns the free pages. Does nothing where the C library has no ``malloc_trim``.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None)
        return libc.malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return None


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
