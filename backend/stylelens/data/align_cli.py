"""``stylelens align``: argparse wiring only (the work is in :mod:`stylelens.data.align`)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from stylelens.cli_args import Commands, add_models_dir
from stylelens.errors import StyleLensError
from stylelens.settings import Settings


class AlignUsageError(StyleLensError):
    """A mistake on the ``align`` command line; exit status 2."""


def register(commands: Commands, settings: Settings) -> None:
    """Add ``align`` to the ``stylelens`` command's subparsers."""
    p = commands.add(
        "align", "use", help="align the largest face in a photo (FFHQ's way, or a model's framing)"
    )
    p.add_argument("image", type=Path, help="photo (JPEG, PNG, WebP...; EXIF rotation applied)")
    p.add_argument(
        "--model",
        default=None,
        help="align to this model's framing (its card's) at its resolution; default: FFHQ's",
    )
    add_models_dir(p, settings)
    p.add_argument(
        "--res", type=int, default=None, help="output size (default: the model's, else 256)"
    )
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
    from stylelens.data.framing import FFHQ
    from stylelens.data.images import load_image

    framing, res = FFHQ, args.res or 256
    if args.model is not None:
        from stylelens.checkpoints.native import load_card, model_dir_for

        card = load_card(model_dir_for(args.models_dir, args.model))  # ModelNotFound: exit 2
        framing, res = card.framing, args.res or card.generator.img_resolution
    try:
        check_resolution(res)
    except ValueError as exc:
        raise AlignUsageError(f"--res: {exc}") from None
    if args.out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise AlignUsageError(f"--out {args.out}: use a .png, .jpg or .webp name")
    if not args.out.parent.is_dir():
        raise AlignUsageError(f"--out {args.out}: folder {args.out.parent} does not exist")
    photo = load_image(args.image)
    with _quiet_native_stderr():
        result = align_face(photo, res, framing=framing)
    try:
        result.image.save(args.out)
    except OSError as exc:
        raise AlignUsageError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    faces = "1 face" if result.num_faces == 1 else f"{result.num_faces} faces (used the largest)"
    how = f"{framing.kind} framing" + (", own frame kept" if result.kept_frame else "")
    print(f"found {faces}; wrote {args.out} ({res}x{res}, {how})")
