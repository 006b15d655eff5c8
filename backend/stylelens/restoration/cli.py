"""``stylelens restore``: colorize, super-resolve or inpaint a face with mGANprior (seed 004)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from stylelens.cli_args import Commands, add_device, add_model, add_models_dir
from stylelens.errors import StyleLensError
from stylelens.settings import Settings


def register(commands: Commands, settings: Settings) -> None:
    from stylelens.losses import PERCEPTUAL_BACKENDS
    from stylelens.restoration.tasks import DEFAULT_STEPS, DEFAULTS, SCALES

    d = DEFAULTS
    p = commands.add(
        "restore",
        "use",
        help="colorize, super-resolve or inpaint a face with the multi-code GAN prior",
        description="Restore a face photo with mGANprior: N latent codes composed at an "
        "intermediate layer of the model, fitted so that the degraded output matches the photo. "
        "Writes result.png, input.png (what the model was asked to match), steps.png, "
        "codes.safetensors, result.json, and with --editable latent.safetensors for the sliders.",
    )
    p.add_argument("photo", type=Path, help="the degraded face (any image Pillow reads)")
    add_models_dir(p, settings)
    add_model(p, settings)
    add_device(p, settings)
    p.add_argument(
        "--task",
        choices=["colorize", "superres", "inpaint", "reconstruct"],
        required=True,
        help="colorize: a gray photo (a colour one is converted); superres: a low-resolution "
        "photo (scaled to the model's resolution / --scale); inpaint: a photo and --mask; "
        "reconstruct: plain multi-code inversion",
    )
    p.add_argument(
        "--scale",
        type=int,
        default=8,
        help=f"super-resolution factor: {', '.join(map(str, SCALES))} (default: %(default)s)",
    )
    p.add_argument(
        "--mask",
        type=Path,
        help="inpainting: white where the photo is to be filled in, black where it is kept "
        "(square; grey levels are thresholded at half)",
    )
    p.add_argument(
        "--codes",
        type=int,
        default=None,
        help=f"latent codes N (default: mGANprior's: {d['colorize'].codes} for colorize and "
        f"superres, {d['inpaint'].codes} for inpaint)",
    )
    p.add_argument(
        "--layer",
        type=int,
        default=None,
        help="composing layer, mGANprior's numbering: layer L composes the 2^(L/2+1)-px "
        f"features (default: {d['colorize'].layer} = 16 px for colorize and superres, "
        f"{d['inpaint'].layer} = 8 px for inpaint, {d['reconstruct'].layer} = 32 px for "
        "reconstruct)",
    )
    p.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help="Adam steps (default: %(default)s)"
    )
    p.add_argument(
        "--perceptual",
        choices=PERCEPTUAL_BACKENDS,
        default="auto",
        help="perceptual loss, as for invert (default: %(default)s)",
    )
    p.add_argument(
        "--crop",
        choices=["center", "align"],
        default="center",
        help="center: the photo is an aligned face crop already (the centred square is used); "
        "align: align the largest face first (needs the 'align' extra; not for tiny photos) "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--editable",
        type=int,
        default=0,
        metavar="STEPS",
        help="also invert the restored face to one W+ latent in STEPS progressive steps "
        "(latent.safetensors, for `stylelens edit` and the sliders) (default: 0, none)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random codes (default: 0)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=cmd_restore)


def cmd_restore(args: argparse.Namespace) -> None:
    import torch
    from PIL import Image
    from tqdm import tqdm

    from stylelens.data.images import load_image, to_tensor
    from stylelens.inversion.cli import _crop, _load, _writable
    from stylelens.latents import Latent, save_latent
    from stylelens.losses import load_perceptual
    from stylelens.render import to_uint8
    from stylelens.restoration.codes import Codes, save_codes
    from stylelens.restoration.engine import RestoreConfig, RestoreEngine, restoration_config
    from stylelens.restoration.tasks import check_layer, make_task, observe, read_mask

    if args.steps < 1:
        raise StyleLensError("--steps must be at least 1")
    if args.editable < 0:
        raise StyleLensError("--editable must be 0 (none) or a number of steps")
    if args.mask is not None and args.task != "inpaint":
        raise StyleLensError("--mask is for --task inpaint")
    if args.task == "inpaint" and args.mask is None:
        raise StyleLensError("--task inpaint needs --mask (white where the photo is to be filled)")
    photo = load_image(args.photo)
    mask_img = None
    if args.mask is not None:
        with Image.open(args.mask) as opened:  # alpha kept: a painted layer's opacity is the mask
            mask_img = opened.convert("RGBA" if "A" in opened.getbands() else "L")
    _writable(args.out)
    G, card, model_dir, device = _load(args)
    R = G.img_resolution
    notes: list[str] = []
    mask = None
    if mask_img is not None:
        read = read_mask(mask_img, R)
        mask, notes = read.hole, [*notes, *read.notes]
    task = make_task(args.task, scale=args.scale, mask=mask)  # refuses a bad --scale
    if args.crop == "align":
        crop_img, how = _crop(photo, R, "align", card.framing)
    else:
        side = min(photo.size)
        left, top = (photo.width - side) // 2, (photo.height - side) // 2
        crop_img = photo.crop((left, top, left + side, top + side))
        how = "centre square" + (
            f" of {photo.width}x{photo.height}" if photo.width != photo.height else ""
        )
    observed, obs_notes = observe(task, to_tensor(crop_img).to(device), R)
    notes += obs_notes
    config = restoration_config(
        task, R, steps=args.steps, codes=args.codes, layer=args.layer, seed=args.seed
    )
    r = check_layer(config.layer, R)
    perceptual = load_perceptual(
        args.perceptual, models_dir=args.models_dir, model_dir=model_dir, device=device
    )
    handoff = handoff_config = None
    encoder = None
    if args.editable:
        from stylelens.checkpoints.preview_heads import load_preview_heads
        from stylelens.encoders.store import load_encoder
        from stylelens.inversion import make_engine

        heads = load_preview_heads(model_dir, G)
        handoff, handoff_config = make_engine(
            "progressive" if heads is not None else "adam",
            G,
            steps=args.editable,
            perceptual=perceptual,
            heads=heads,
            seed=args.seed,
        )
        encoder = load_encoder(model_dir, device=device)
    engine = RestoreEngine(
        G, perceptual=perceptual, handoff=handoff, handoff_init=_encoder_init(encoder)
    )
    for note in [f"photo: {how}", *notes]:
        print(note)
    print(
        f"task: {args.task} with {config.codes} codes composed at layer {config.layer} "
        f"({r}x{r} features), {args.steps} steps"
        + (f", then {args.editable} steps to one W+ latent" if args.editable else "")
    )
    state = engine.start(observed, RestoreConfig(config, handoff_config))
    total = state.config.steps
    keep = {max(1, round(i * config.steps / 8)) for i in range(1, 9)}
    frames: list[Image.Image] = []
    first_preview = None
    bar = tqdm(total=total, desc=f"restore ({args.task})", unit="step", file=sys.stderr)
    while not state.done:
        report = engine.step(state)
        first_preview = first_preview if first_preview is not None else report.elapsed
        bar.set_postfix(
            loss=f"{report.losses.get('total', report.losses.get('handoff_total', 0)):.4f}"
        )
        bar.update()
        if report.step in keep:
            frames.append(Image.fromarray(to_uint8(report.preview)[0]).resize((R, R)))
    bar.close()
    result = engine.result(state)
    assert result.image is not None
    out = args.out
    restored = Image.fromarray(to_uint8(result.image)[0])
    restored.save(out / "result.png")
    shown = (
        task.view(observed, R)
        if args.task != "superres"
        else torch.nn.functional.interpolate(observed, size=(R, R), mode="nearest")
    )
    input_img = Image.fromarray(to_uint8(shown)[0])
    input_img.save(out / "input.png")
    strip = [input_img, *frames, restored]
    sheet = Image.new("RGB", (R * len(strip), R))
    for i, im in enumerate(strip):
        sheet.paste(im, (i * R, 0))
    sheet.save(out / "steps.png")
    meta = {
        "model": card.id,
        "task": args.task,
        "layer": str(config.layer),
        "source": args.photo.name,
        "steps": str(config.steps),
    }
    c = result.codes
    save_codes(out / "codes.safetensors", Codes(c["codes"], c["alpha"], c["tail"], r, meta))
    written = ["result.png", "input.png", "steps.png", "codes.safetensors"]
    if args.editable:
        save_latent(
            out / "latent.safetensors",
            Latent(result.ws, result.noise, {**meta, "engine": result.engine}),
        )
        written.append("latent.safetensors")
    summary = {
        "model": card.id,
        "photo": how,
        "notes": notes,
        "first_preview_s": round(first_preview or 0.0, 4),
        "seconds": round(result.elapsed, 3),
        "metrics": {k: round(v, 5) for k, v in result.metrics.items()},
        "config": result.config,
    }
    (out / "result.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    written.append("result.json")
    metrics = result.metrics
    print(
        f"wrote {out}/{', '.join(written)} ({result.steps} steps in {result.elapsed:.1f} s; "
        f"PSNR on the input {metrics['psnr']:.2f} dB"
        + (
            f"; the W+ latent re-draws it at {metrics['handoff_psnr']:.2f} dB"
            if "handoff_psnr" in metrics
            else ""
        )
        + ")"
    )


def _encoder_init(encoder: Any) -> Any:
    """The hand-off's start: the encoder's guess of the restored image (None: w_avg)."""
    if encoder is None:
        return None

    def init(image: Any) -> Any:
        from stylelens.encoders.encode import encode

        return encode(encoder, image)

    return init
