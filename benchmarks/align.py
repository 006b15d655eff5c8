"""Face-alignment speed on a 12-megapixel photo (4000x3000): median seconds per photo.

The photo is scikit-image's astronaut (512x512) upscaled to 3000x3000 on a 4000x3000 canvas, so
the face is as large in the frame as in a portrait. Timed separately, each after one warm-up
call (the first call also loads the MediaPipe models, timed on its own): decoding the JPEG
(``load_image``), finding the landmarks (detector + face mesh), and the crop + warp at each
output resolution.

    python benchmarks/align.py                  # needs pip install -e '.[dev]'
    python benchmarks/align.py --write-docs
    python benchmarks/align.py --figure docs/images/align-astronaut.png   # the docs' picture
"""

from __future__ import annotations

import argparse
import datetime
import io
import statistics
import time
from pathlib import Path

from common import DOC, machine, write_docs
from PIL import Image, ImageDraw
from skimage import data

from stylelens.data.align import FaceLandmarker, align_face, ffhq_quad, find_landmarks, warp_quad
from stylelens.data.images import load_image


def photo_12mp() -> Image.Image:
    face = Image.fromarray(data.astronaut())
    canvas = face.resize((4000, 3000), Image.Resampling.BICUBIC)
    canvas.paste(face.resize((3000, 3000), Image.Resampling.BICUBIC), (500, 0))
    return canvas


def figure(path: Path, tile: int = 256) -> None:
    """Before/after: the photo (upright and turned 25 degrees) with its quad, and the crops."""
    face = Image.fromarray(data.astronaut())
    row = Image.new("RGB", (4 * tile, tile), "white")
    for i, photo in enumerate([face, face.rotate(25, Image.Resampling.BICUBIC, expand=True)]):
        result = align_face(photo, tile)
        marked = photo.resize((tile, tile), Image.Resampling.LANCZOS)
        draw = ImageDraw.Draw(marked)
        k = tile / photo.width  # the photos are square
        draw.polygon([tuple(p * k) for p in result.quad], outline=(255, 220, 0), width=2)
        for x, y in result.landmarks.as_array() * k:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(0, 255, 0))
        row.paste(marked, (2 * i * tile, 0))
        row.paste(result.image, ((2 * i + 1) * tile, 0))
    row.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
        path, optimize=True
    )  # a small PNG
    print(f"wrote {path}")


def median_s(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--res", default="256,1024", help="output resolutions (default: %(default)s)")
    ap.add_argument("--write-docs", action="store_true", help=f"update {DOC.name}")
    ap.add_argument("--figure", type=Path, help="write the before/after picture here and stop")
    args = ap.parse_args()
    if args.figure:
        figure(args.figure)
        return

    photo = photo_12mp()
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=92)
    jpeg = buf.getvalue()
    lm = FaceLandmarker()
    t = time.perf_counter()
    landmarks, _ = find_landmarks(photo, landmarker=lm)
    first = time.perf_counter() - t
    quad = ffhq_quad(landmarks)

    n = args.repeats
    rows = [
        ("decode the 12 MP JPEG (`load_image`)", median_s(lambda: load_image(jpeg), n)),
        ("first landmark call (loads the models)", first),
        (
            "landmarks (detector + face mesh)",
            median_s(lambda: find_landmarks(photo, landmarker=lm), n),
        ),
    ]
    for res in (int(r) for r in args.res.split(",")):
        warp = median_s(lambda r=res: warp_quad(photo, quad, r), n)
        rows.append((f"crop + warp to {res}x{res}", warp))
        whole = median_s(lambda r=res: align_face(load_image(jpeg), r, landmarker=lm), n)
        rows.append((f"**JPEG file -> {res}x{res} crop** (all of the above)", whole))
    for name, s in rows:
        print(f"{name:45s} {s * 1000:8.0f} ms")

    if args.write_docs:
        table = "\n".join(f"| {name} | {s * 1000:.0f} ms |" for name, s in rows)
        body = (
            "## Face alignment (`stylelens align`, 12-megapixel photo)\n\n"
            f"Measured {datetime.date.today()} by `python benchmarks/align.py --write-docs` on "
            f"{machine()}: the astronaut photo upscaled onto a 4000x3000 canvas, median of "
            f"{args.repeats} runs after a warm-up. An alignment is the landmark row plus one warp "
            "row (plus decoding when it starts from a file); the bold rows time all of it. "
            "The CPU is shared with other work, so expect +-30 %.\n\n"
            "| step | median |\n|---|---|\n" + table
        )
        write_docs("align", body)
        print(f"updated {DOC}")


if __name__ == "__main__":
    main()
