"""``stylelens align``: argparse wiring only (the work is in :mod:`stylelens.data.align`)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stylelens.errors import StyleLensError
from stylelens.settings import Settings


class AlignUsageError(StyleLensError):
    """A mistake on the ``align`` command line; exit status 2."""


def register(subparsers: Any, settings: Settings) -> None:
    """Add ``align`` to the ``stylelens`` command's subparsers."""
    del settings  # alignment has no deployment settings
    p = subparsers.add_parser("align", help="FFHQ-align the largest face in a photo")
    p.add_argument("image", type=Path, help="photo (JPEG, PNG, WebP...; EXIF rotation applied)")
    p.add_argument("--res", type=int, default=256, help="output size (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("aligned.png"),
                   help="output image, .png or .jpg (default: %(default)s)")  # fmt: skip
    p.set_defaults(func=cmd_align)


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Hide what MediaPipe's C++ side (TFLite, absl) writes straight to file descriptor 2 —
    start-up chatter no environment variable turns off — so the command prints one line.
    Only for this single-threaded command: the library itself never touches stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def cmd_align(args: argparse.Namespace) -> None:
    from stylelens.data.align import align_face, check_resolution
    from stylelens.data.images import load_image

    try:
        check_resolution(args.res)
    except ValueError as exc:
        raise AlignUsageError(f"--res: {exc}") from None
    if args.out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise AlignUsageError(f"--out {args.out}: use a .png, .jpg or .webp name")
    if not args.out.parent.is_dir():
        raise AlignUsageError(f"--out {args.out}: folder {args.out.parent} does not exist")
    photo = load_image(args.image)
    with _quiet_native_stderr():
        result = align_face(photo, args.res)
    try:
        result.image.save(args.out)
    except OSError as exc:
        raise AlignUsageError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    faces = "1 face" if result.num_faces == 1 else f"{result.num_faces} faces (used the largest)"
    print(f"found {faces}; wrote {args.out} ({args.res}x{args.res})")
