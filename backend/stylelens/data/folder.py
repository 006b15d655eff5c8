"""A folder of images as a training set: centre-cropped to a square, resized, uint8.

Every ``.png``, ``.jpg``, ``.jpeg``, ``.webp`` and ``.bmp`` under the folder (recursively, in
sorted path order, so the index of an image is stable) is checked once when the dataset is
opened; files PIL cannot parse are skipped and counted rather than failing a run hours later.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from stylelens.errors import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MIN_RESOLUTION, MAX_RESOLUTION = 8, 1024


def check_resolution(resolution: int) -> None:
    """Raise DatasetError unless ``resolution`` is a power of two in [8, 1024]."""
    r = resolution
    if not MIN_RESOLUTION <= r <= MAX_RESOLUTION or r & (r - 1):
        raise DatasetError(
            f"resolution {r} is not a power of two between {MIN_RESOLUTION} and "
            f"{MAX_RESOLUTION}; StyleGAN2 doubles the image size block by block (try 64, 128, 256)"
        )


def load_square(path: Path, resolution: int) -> torch.Tensor:
    """One image as uint8 [3, R, R]: EXIF rotation applied, centre square crop, LANCZOS resize.

    Raises DatasetError when the file cannot be decoded.
    """
    try:
        with Image.open(path) as im:
            img = ImageOps.exif_transpose(im).convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{path}: cannot decode the image ({exc}); remove the file") from exc
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if side != resolution:
        img = img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).contiguous()  # [3, R, R]


def _readable(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            im.verify()  # parses the file without decoding every pixel
        return True
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


class ImageFolderDataset(torch.utils.data.Dataset[torch.Tensor]):
    """Item ``i`` is the i-th readable image (sorted paths) as uint8 [3, R, R].

    Attributes:
        files: the readable images, in index order.
        skipped: files with an image suffix that PIL could not parse.

    Raises:
        DatasetError: the folder is missing, holds no readable image, or ``resolution`` is not
            a power of two in [8, 1024].
    """

    def __init__(self, path: Path | str, resolution: int) -> None:
        check_resolution(resolution)
        self.root, self.resolution = Path(path), resolution
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: no such folder")
        candidates = sorted(
            p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        self.files: list[Path] = []
        self.skipped: list[Path] = []
        for p in candidates:
            (self.files if _readable(p) else self.skipped).append(p)
        if not self.files:
            found = f"; {len(self.skipped)} unreadable" if self.skipped else ""
            raise DatasetError(
                f"{self.root}: no images found (looked for {', '.join(IMAGE_SUFFIXES)} "
                f"recursively{found})"
            )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        return load_square(self.files[i], self.resolution)

    def summary(self) -> str:
        """One line for the log: count, folder and the unreadable files skipped."""
        text = f"{len(self.files)} images in {self.root}"
        if self.skipped:
            names = ", ".join(p.name for p in self.skipped[:3])
            more = ", ..." if len(self.skipped) > 3 else ""
            text += f" (skipped {len(self.skipped)} unreadable images: {names}{more})"
        return text
