"""Face alignment: speed on a 12-megapixel photo, and how well the model's framing serves it.

Speed (default): scikit-image's astronaut (512x512) upscaled to 3000x3000 on a 4000x3000
canvas, so the face is as large in the frame as in a portrait. Timed separately, each after one
warm-up call (the first call also loads the MediaPipe models, timed on its own): decoding the
JPEG (``load_image``), finding the landmarks (detector + face mesh), and the crop + warp at each
output resolution.

Framing (``--framing``), on the embedded SynthFaces model, before (FFHQ's quad, what every
upload got) and after (the card's framing), all through the upload route (``process_upload``):

* crop PSNR: held-out SynthFaces drawn at 512 px, uploaded as PNG; the crop against the same
  face drawn at 256 px (and, as the ceiling, a plain Lanczos resize of the 512 px drawing);
* inversion through the page: the crop inverted as the app's worker does (``ModelRuntime``,
  default engine and steps) against inverting the 256 px drawing directly; PSNR of each
  reconstruction against the 256 px drawing;
* a model sample (seed 1234, psi 0.7) uploaded as a 256 px PNG: its inversion against itself,
  with w_avg's PSNR for scale.

    python benchmarks/align.py                  # needs pip install -e '.[dev]'
    python benchmarks/align.py --write-docs
    python benchmarks/align.py --figure docs/images/align-astronaut.png   # the docs' picture
    python benchmarks/align.py --framing --write-docs   # docs/alignment.md (~15 min, 2 cores)
    python benchmarks/align.py --framing-figure docs/images/align-synthfaces.png
"""

from __future__ import annotations

import argparse
import datetime
import io
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import DOC, ROOT, machine, write_docs
from PIL import Image, ImageDraw
from skimage import data

from stylelens.api.uploads import process_upload
from stylelens.checkpoints.native import load_card
from stylelens.data.align import FaceLandmarker, align_face, ffhq_quad, find_landmarks, warp_quad
from stylelens.data.framing import FFHQ, Framing
from stylelens.data.images import load_image, to_tensor
from stylelens.data.synthfaces import render_face, sample_params
from stylelens.data.synthfaces.draw import landmarks
from stylelens.evaluation.eval_model import HELD_OUT_FIRST_SEED
from stylelens.render import to_uint8, z_from_seed
from stylelens.sessions.storage import Storage

ALIGN_DOC = ROOT / "docs" / "alignment.md"
MODEL = "synthfaces-256"
FIRST_SEED = HELD_OUT_FIRST_SEED + 60_000  # held out, and not the inversion benchmark's faces


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


# --- framing ---------------------------------------------------------------------------------


def psnr(a: Any, b: Any) -> float:
    """dB; infinite for identical images."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    mse = float(np.mean(d * d))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def db(v: float) -> str:
    return "identical" if v == float("inf") else f"{v:.2f} dB"


def png(image: Image.Image | np.ndarray) -> bytes:
    buf = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buf, "PNG")
    return buf.getvalue()


class Page:
    """The app's upload route and inversion path without the HTTP and websocket layers."""

    def __init__(self) -> None:
        from stylelens.jobs.session_model import SessionModel
        from stylelens.settings import Settings

        self.settings = Settings(models_dir=ROOT / "models", default_model=MODEL, device="cpu")
        self.storage = Storage(Path(tempfile.mkdtemp(prefix="stylelens-bench-")))
        self.model = SessionModel.load(self.settings, self.storage)
        self.rt = self.model.runtime
        self.card = load_card(self.rt.model_dir)
        self.sid = self.storage.new_session(MODEL)

    def upload(self, data: bytes, framing: Framing) -> tuple[Image.Image, dict[str, Any]]:
        r = process_upload(
            self.storage, self.sid, data, resolution=self.rt.G.img_resolution,
            max_pixels=self.settings.max_pixels, framing=framing,
        )  # fmt: skip
        item = self.storage.get(self.sid, r["upload"], "crop")
        assert item is not None
        with Image.open(item.path) as im:
            return im.convert("RGB"), r

    def invert_upload(self, crop_id: str) -> np.ndarray:
        """As the worker: ``start_inversion`` on the stored crop, steps until done."""
        inv = self.model.start_inversion(
            self.sid, engine=self.settings.default_engine, steps=self.settings.default_steps,
            upload=crop_id,
        )  # fmt: skip
        while not inv.state.done:
            self.rt.step(inv)
        return self._render(inv.engine.result(inv.state))

    def invert_image(self, image: np.ndarray) -> np.ndarray:
        """The same engine and settings on an image given directly (no upload, no crop)."""
        from stylelens.inversion import make_engine

        eng, config = make_engine(
            self.settings.default_engine, self.rt.G, steps=self.settings.default_steps,
            perceptual=self.rt.perceptual, heads=self.rt.heads,
        )  # fmt: skip
        state = eng.start(to_tensor(Image.fromarray(image)), config)
        while not state.done:
            eng.step(state)
        return self._render(eng.result(state))

    @torch.no_grad()
    def _render(self, result: Any) -> np.ndarray:
        return to_uint8(self.rt.synthesize(result.ws, result.noise or {}))[0]

    @torch.no_grad()
    def sample(self, seed: int, psi: float) -> np.ndarray:
        G = self.rt.G
        ws = G.mapping(z_from_seed(seed, G.z_dim).float(), truncation_psi=psi)
        return to_uint8(G.synthesis(ws))[0]

    @torch.no_grad()
    def w_avg_image(self) -> np.ndarray:
        G = self.rt.G
        return to_uint8(G.synthesis(G.mapping.w_avg.reshape(1, 1, -1).expand(1, G.num_ws, -1)))[0]


def crop_table(page: Page, seeds: list[int]) -> dict[str, Any]:
    """Crop PSNR of 512 px SynthFaces through the upload route, before and after; and how far
    the detector's points are from where the renderer drew them (px at 256)."""
    rows, eyes, mouths = [], [], []
    for seed in seeds:
        big, _ = render_face(seed, 512)
        small, _ = render_face(seed, 256)
        found, _ = find_landmarks(Image.fromarray(big))  # NoFaceFound would end the run
        err = np.hypot(*(found.as_array() - landmarks(sample_params(seed)) * 512).T) / 2
        eyes.append(err[:2].max())
        mouths.append(err[2:].max())
        data = png(big)
        ceiling = psnr(Image.fromarray(big).resize((256, 256), Image.Resampling.LANCZOS), small)
        before, _ = page.upload(data, FFHQ)
        after, r = page.upload(data, page.card.framing)
        rows.append((psnr(before, small), psnr(after, small), ceiling, r["kept_frame"]))
    a = np.array([r[:3] for r in rows])
    return {
        "n": len(rows),
        "before_median": float(np.median(a[:, 0])),
        "after_median": float(np.median(a[:, 1])),
        "after_min": float(a[:, 1].min()),
        "after_at_least_30": int((a[:, 1] >= 30).sum()),
        "ceiling_at_least_30": int((a[:, 2] >= 30).sum()),
        "ceiling_median": float(np.median(a[:, 2])),
        "after_equals_ceiling": int((np.abs(a[:, 1] - a[:, 2]) < 0.01).sum()),
        "kept": sum(r[3] for r in rows),
        "eye_error_median": float(np.median(eyes)),
        "eye_error_max": float(np.max(eyes)),
        "mouth_error_median": float(np.median(mouths)),
        "mouth_error_max": float(np.max(mouths)),
    }


def inversion_table(page: Page, seeds: list[int]) -> list[dict[str, Any]]:
    """Inversion of the page's crop (before / after) and of the 256 px drawing directly."""
    rows = []
    for seed in seeds:
        big, _ = render_face(seed, 512)
        small, _ = render_face(seed, 256)
        row: dict[str, Any] = {"seed": seed}
        t = time.perf_counter()
        row["direct"] = psnr(page.invert_image(small), small)
        for name, framing in (("before", FFHQ), ("after", page.card.framing)):
            crop, r = page.upload(png(big), framing)
            recon = page.invert_upload(r["upload"])
            row[name] = psnr(recon, small)  # against the original drawing
            row[f"{name}_own"] = psnr(recon, crop)  # against the crop it was given
        row["seconds"] = time.perf_counter() - t
        print(f"  seed {seed}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items() if k != "seed"))
        rows.append(row)
    return rows


def sample_table(page: Page, seed: int = 1234, psi: float = 0.7) -> dict[str, float]:
    """A model sample sent back through the page, before and after, against itself."""
    sample = page.sample(seed, psi)
    out = {
        "w_avg": psnr(page.w_avg_image(), sample),
        "direct": psnr(page.invert_image(sample), sample),
    }
    for name, framing in (("before", FFHQ), ("after", page.card.framing)):
        crop, r = page.upload(png(sample), framing)
        out[f"{name}_crop"] = psnr(crop, sample)
        out[name] = psnr(page.invert_upload(r["upload"]), sample)
        out[f"{name}_kept"] = float(r["kept_frame"])
    return out


def framing_report(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    page = Page()
    seeds = list(range(FIRST_SEED, FIRST_SEED + args.faces))
    crops = crop_table(page, seeds)
    print("crop PSNR (dB) against the 256 px drawing:", {k: round(v, 2) for k, v in crops.items()})
    inv = inversion_table(page, seeds[: args.inversions])
    sample = sample_table(page)
    print("seed 1234 psi 0.7:", {k: round(v, 2) for k, v in sample.items()})
    med = {k: statistics.median(r[k] for r in inv) for k in ("direct", "before", "after")}
    gap = [r["direct"] - r["after"] for r in inv]
    minutes = (time.perf_counter() - t0) / 60
    if not args.write_docs:
        return
    s = sample
    body = (
        f"Measured {datetime.date.today()} by `python benchmarks/align.py --framing --write-docs` "
        f"on {machine()} ({minutes:.0f} min), model `{MODEL}`, everything through the upload "
        "route (`process_upload`); before = FFHQ's quad (what every upload got), after = the "
        "card's `synthfaces` framing.\n\n"
        f"**Crops.** {crops['n']} held-out SynthFaces (seeds {seeds[0]}-{seeds[-1]}) drawn at "
        "512 px and uploaded as PNG, the crop against the same face drawn at 256 px:\n\n"
        "| | median PSNR | at least 30 dB |\n|---|---|---|\n"
        f"| before (FFHQ quad) | {crops['before_median']:.1f} dB | 0 of {crops['n']} |\n"
        f"| after (SynthFaces framing) | {crops['after_median']:.1f} dB (lowest "
        f"{crops['after_min']:.1f}) | {crops['after_at_least_30']} of {crops['n']} |\n"
        f"| ceiling: a plain Lanczos resize of the 512 px drawing | "
        f"{crops['ceiling_median']:.1f} dB | {crops['ceiling_at_least_30']} of {crops['n']} |\n\n"
        f"{crops['kept']} of {crops['n']} faces were found already placed as the training faces "
        f"are and kept their own frame; {crops['after_equals_ceiling']} crops equal the ceiling "
        "(the faces under 30 dB are under it in a plain resize too: the renderer draws curls and "
        "strands differently at 512 and 256 px). MediaPipe found every face; its points were "
        f"{crops['eye_error_median']:.1f} px (median; at most {crops['eye_error_max']:.1f}) "
        "from the eye centres the renderer drew and "
        f"{crops['mouth_error_median']:.1f} px (at most {crops['mouth_error_max']:.1f}) from "
        "the mouth corners, in 256 px units (worst point of each pair).\n\n"
        f"**Inversion through the page** ({len(inv)} of those faces; engine "
        f"`{page.settings.default_engine}`, {page.settings.default_steps} steps, as the worker "
        "runs it), PSNR of the reconstruction against the 256 px drawing:\n\n"
        "| seed | the drawing inverted directly | page, before | page, after |\n|---|---|---|---|\n"
        + "".join(
            f"| {r['seed']} | {r['direct']:.2f} | {r['before']:.2f} (own crop "
            f"{r['before_own']:.2f}) | {r['after']:.2f} |\n"
            for r in inv
        )
        + f"| median | {med['direct']:.2f} | {med['before']:.2f} | {med['after']:.2f} |\n\n"
        f"After, the page is within {max(abs(g) for g in gap):.2f} dB of the direct inversion on "
        "every face (goal: 1 dB).\n\n"
        "**A model sample sent back** (seed 1234, psi 0.7, uploaded as its 256 px PNG), PSNR "
        f"against the sample itself; w_avg's image scores {s['w_avg']:.2f} dB and inverting the "
        f"sample directly {s['direct']:.2f} dB:\n\n"
        "| | crop | inversion |\n|---|---|---|\n"
        f"| before (FFHQ quad) | {db(s['before_crop'])} | {db(s['before'])} |\n"
        f"| after (SynthFaces framing{', own frame kept' if s['after_kept'] else ''}) | "
        f"{db(s['after_crop'])} | {db(s['after'])} |"
    )
    write_docs("align-framing", body, doc=ALIGN_DOC)
    print(f"updated {ALIGN_DOC}")


def framing_figure(path: Path, tile: int = 192) -> None:
    """Before/after sheet: uploads, their FFHQ crops and their SynthFaces-framing crops."""
    page = Page()
    face, _ = render_face(FIRST_SEED + 1, 512)
    placed = Image.new("RGB", (768, 768), (118, 124, 132))  # a drawn face pasted small, turned
    placed.paste(Image.fromarray(face).resize((360, 360)).rotate(-12, Image.Resampling.BICUBIC,
                 fillcolor=(118, 124, 132)), (330, 120))  # fmt: skip
    uploads = [
        ("SynthFace, 512 px", Image.fromarray(render_face(FIRST_SEED, 512)[0])),
        ("SynthFace, 512 px", Image.fromarray(face)),
        ("model sample 1234", Image.fromarray(page.sample(1234, 0.7))),
        ("pasted small, turned", placed),
    ]
    label_h = 18
    sheet = Image.new("RGB", (3 * tile, len(uploads) * (tile + label_h) + label_h), "white")
    draw = ImageDraw.Draw(sheet)
    for j, head in enumerate(["upload", "before: FFHQ quad", "after: SynthFaces framing"]):
        draw.text((j * tile + 4, 3), head, fill=(0, 0, 0))
    for i, (name, im) in enumerate(uploads):
        y = label_h + i * (tile + label_h)
        before, _ = page.upload(png(im), FFHQ)
        after, r = page.upload(png(im), page.card.framing)
        how = "own frame kept" if r["kept_frame"] else "moved to the mean placement"
        for j, (pic, text) in enumerate([(im, name), (before, ""), (after, how)]):
            sheet.paste(pic.convert("RGB").resize((tile, tile), Image.Resampling.LANCZOS),
                        (j * tile, y))  # fmt: skip
            draw.text((j * tile + 4, y + tile + 3), text, fill=(0, 0, 0))
    sheet.save(path, optimize=True)  # full colour: a palette would band the model's gradients
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--res", default="256,1024", help="output resolutions (default: %(default)s)")
    ap.add_argument("--write-docs", action="store_true", help=f"update {DOC.name}")
    ap.add_argument("--figure", type=Path, help="write the before/after picture here and stop")
    ap.add_argument("--framing", action="store_true", help="the framing report (see above)")
    ap.add_argument("--faces", type=int, default=100, help="--framing: faces for the crop table")
    ap.add_argument("--inversions", type=int, default=8, help="--framing: faces inverted")
    ap.add_argument("--framing-figure", type=Path, help="write the framing sheet here and stop")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="--framing: torch threads; its numbers are PSNRs, not times, and one thread keeps "
        "a shared machine's cores from being oversubscribed (default: %(default)s)",
    )
    args = ap.parse_args()
    if args.figure:
        figure(args.figure)
        return
    if args.framing_figure:
        framing_figure(args.framing_figure)
        return
    if args.framing:
        framing_report(args)
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
