"""``stylelens invert`` and ``stylelens fit-preview-heads``: argparse wiring and file output."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stylelens.cli_args import Commands, add_device, add_model, add_models_dir
from stylelens.errors import StyleLensError
from stylelens.settings import Settings

if TYPE_CHECKING:
    from stylelens.data.framing import Framing


def _model_args(p: argparse.ArgumentParser, settings: Settings) -> None:
    add_models_dir(p, settings)
    add_model(p, settings)
    add_device(p, settings)


def register(commands: Commands, settings: Settings) -> None:
    from stylelens.inversion import ENGINES
    from stylelens.losses import PERCEPTUAL_BACKENDS

    p = commands.add(
        "invert",
        "use",
        help="find the latent of a photo (writes latent, reconstruction and preview strip)",
    )
    p.add_argument("image", type=Path, help="any image Pillow reads (JPEG, PNG, WebP, ...)")
    _model_args(p, settings)
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="progressive",
        help="progressive (L-BFGS through the preview heads, the fastest), adam (full "
        "resolution, seed 001 preset), projector (NVIDIA's schedule), learned (seed 001's "
        "learned optimizer, full resolution; needs `stylelens train-optimizer`) or "
        "progressive-learned (the learned optimizer through the preview heads) "
        "(default: %(default)s)",
    )
    p.add_argument("--steps", type=int, default=200, help="optimisation steps (default: 200)")
    p.add_argument(
        "--perceptual",
        choices=PERCEPTUAL_BACKENDS,
        default="auto",
        help="perceptual loss; auto: LPIPS if its weights are installed, else the model's "
        "discriminator features, else MS-SSIM (default: %(default)s)",
    )
    p.add_argument(
        "--crop",
        choices=["auto", "align", "center"],
        default="auto",
        help="align: align the largest face to the model's framing (its card's: FFHQ's, or "
        "the SynthFaces renderer's; needs the 'align' extra); center: the centred square; "
        "auto: align when the extra is installed (default: %(default)s)",
    )
    p.add_argument(
        "--init",
        default="auto",
        metavar="auto|encoder|average|LATENT",
        help="where the engine starts: the model's encoder (one forward pass), the average "
        "latent, or a latent file; auto: the encoder when the model has one (default: auto)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the run (default: 0)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--frames", type=int, default=24, help="preview frames kept for the animation (default 24)"
    )
    p.set_defaults(func=cmd_invert)

    p = commands.add(
        "encode",
        "use",
        help="one forward pass of the model's encoder: a photo to an editable latent",
    )
    p.add_argument("image", type=Path, help="any image Pillow reads (JPEG, PNG, WebP, ...)")
    _model_args(p, settings)
    p.add_argument(
        "--crop",
        choices=["auto", "align", "center"],
        default="auto",
        help="as for invert (default: %(default)s)",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="latent file to write (.safetensors); its "
        "reconstruction goes next to it as <name>.png",
    )
    p.set_defaults(func=cmd_encode)

    p = commands.add(
        "fit-preview-heads",
        "training",
        help="fit the intermediate-resolution preview heads of a model (no data needed)",
    )
    _model_args(p, settings)
    p.add_argument("--steps", type=int, default=600, help="Adam steps (default: 600)")
    p.add_argument("--batch", type=int, default=8, help="samples per step (default: 8)")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate (default: 0.01)")
    p.add_argument("--seed", type=int, default=0, help="seed of the samples (default: 0)")
    p.add_argument(
        "--eval-samples", type=int, default=16, help="fresh samples for the PSNR report (16)"
    )
    p.set_defaults(func=cmd_fit_preview_heads)


def _load(args: argparse.Namespace) -> tuple[Any, Any, Path, Any]:
    from stylelens.checkpoints import load_generator, model_dir_for
    from stylelens.networks.runtime import resolve_device

    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise StyleLensError(str(exc)) from exc
    model_dir = model_dir_for(args.models_dir, args.model)
    G, card = load_generator(model_dir, device=device)
    return G, card, model_dir, device


def _writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / ".stylelens-write-test").write_bytes(b"")
        (directory / ".stylelens-write-test").unlink()
    except OSError as exc:
        raise StyleLensError(f"cannot write to {directory}: {exc.strerror or exc}") from exc


def cmd_fit_preview_heads(args: argparse.Namespace) -> None:
    from stylelens.networks.preview import FitConfig
    from stylelens.training.preview_heads import fit_and_save_preview_heads

    if args.steps < 1 or args.batch < 1 or args.eval_samples < 1:
        raise StyleLensError("--steps, --batch and --eval-samples must be at least 1")
    G, card, model_dir, _ = _load(args)
    if len(G.synthesis.block_resolutions) < 3:
        raise StyleLensError(f"model {card.id!r} has no intermediate resolutions to preview")
    config = FitConfig(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed)
    path, heads, table, seconds = fit_and_save_preview_heads(
        G, model_dir, config, eval_samples=args.eval_samples
    )
    print(f"wrote {path} ({seconds:.0f} s)")
    if heads.raw_resolutions:
        print(f"the skip image beats the fitted head at {heads.raw_resolutions}: used there")
    print("PSNR (dB) of each preview against the downsampled final image:")
    print(f"{'res':>5} " + " ".join(f"{k:>14}" for k in next(iter(table.values()))))
    for r, row in table.items():
        print(f"{r:>5} " + " ".join(f"{v:>14.2f}" for v in row.values()))


def cmd_invert(args: argparse.Namespace) -> None:
    import torch
    from PIL import Image
    from tqdm import tqdm

    from stylelens.checkpoints.preview_heads import load_preview_heads
    from stylelens.data.images import load_image, to_tensor
    from stylelens.inversion import StepReport, make_engine
    from stylelens.inversion.optimizer_store import load_optimizer
    from stylelens.latents import Latent, save_latent
    from stylelens.losses import load_perceptual
    from stylelens.render import to_uint8

    if args.steps < 1:
        raise StyleLensError("--steps must be at least 1")
    if args.frames < 1:
        raise StyleLensError("--frames must be at least 1")
    photo = load_image(args.image)  # InvalidImage (exit 2) for anything unreadable
    _writable(args.out)
    G, card, model_dir, device = _load(args)
    R = G.img_resolution
    target_img, crop = _crop(photo, R, args.crop, card.framing)
    print(f"target: {crop}")
    target = to_tensor(target_img).to(device)
    init, init_how = _initial_ws(args.init, G, card, model_dir, target, device)
    print(f"start: {init_how}")
    perceptual = load_perceptual(
        args.perceptual, models_dir=args.models_dir, model_dir=model_dir, device=device
    )
    heads = load_preview_heads(model_dir, G)
    learned = load_optimizer(model_dir, device=device) if "learned" in args.engine else None
    engine, config = make_engine(
        args.engine,
        G,
        steps=args.steps,
        perceptual=perceptual,
        heads=heads,
        learned=learned,
        seed=args.seed,
    )
    state = engine.start(target, config, init)
    frames: list[Image.Image] = []
    keep = {max(1, round(i * args.steps / args.frames)) for i in range(1, args.frames + 1)}
    first_preview = None
    bar = tqdm(total=args.steps, desc=f"invert ({args.engine})", unit="step", file=sys.stderr)
    report: StepReport | None = None
    while not state.done:
        report = engine.step(state)
        first_preview = first_preview if first_preview is not None else report.elapsed
        bar.set_postfix(res=report.resolution, loss=f"{report.losses['total']:.4f}")
        bar.update()
        if report.step in keep:
            im = Image.fromarray(to_uint8(report.preview)[0])
            frames.append(im.resize((R, R), Image.Resampling.NEAREST))
    bar.close()
    result = engine.result(state)
    with torch.no_grad():
        recon = G.synthesis(result.ws.to(device), noise=result.noise or None)
    recon_img = Image.fromarray(to_uint8(recon)[0])
    out = args.out
    save_latent(
        out / "latent.safetensors",
        Latent(
            result.ws,
            result.noise,
            {
                "model": card.id,
                "engine": result.engine,
                "steps": str(result.steps),
                "perceptual": result.perceptual,
                "source": args.image.name,
            },
        ),
    )
    target_img.save(out / "target.png")
    recon_img.save(out / "reconstruction.png")
    strip = [*frames[:: max(1, len(frames) // 8)][:8], recon_img]
    sheet = Image.new("RGB", (R * len(strip), R))
    for i, im in enumerate(strip):
        sheet.paste(im, (i * R, 0))
    sheet.save(out / "steps.png")
    frames[0].save(
        out / "steps.webp", save_all=True, append_images=[*frames[1:], recon_img], duration=120
    )
    summary = {
        "model": card.id,
        "engine": result.engine,
        "perceptual": result.perceptual,
        "crop": crop,
        "init": init_how,
        "steps": result.steps,
        "seconds": round(result.elapsed, 3),
        "first_preview_s": round(first_preview or 0.0, 4),
        "metrics": {k: round(v, 5) for k, v in result.metrics.items()},
        "config": result.config,
    }
    (out / "result.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    m = result.metrics
    print(
        f"wrote {out}/latent.safetensors, reconstruction.png, steps.png, steps.webp "
        f"({result.steps} steps in {result.elapsed:.1f} s, PSNR {m['psnr']:.2f} dB, "
        f"{result.perceptual} {m.get('perceptual', float('nan')):.4f})"
    )


def _initial_ws(
    spec: str, G: Any, card: Any, model_dir: Path, target: Any, device: Any
) -> tuple[Any, str]:
    """(ws the engine starts from or None for the average latent, how) for ``--init``."""
    from stylelens.encoders.encode import encode
    from stylelens.encoders.store import load_encoder
    from stylelens.latents import load_latent

    if spec in ("auto", "encoder"):
        encoder = load_encoder(model_dir, device=device)
        if encoder is not None:
            return encode(encoder, target), f"the model's encoder ({type(encoder).__name__})"
        if spec == "encoder":
            raise StyleLensError(
                f"model {card.id!r} has no encoder: train one with `stylelens train-encoder "
                f"--model {card.id}`, or install e4e/pSp weights with `stylelens "
                "convert-encoder`; or pass --init average"
            )
        return None, "the average latent (the model has no encoder)"
    if spec == "average":
        return None, "the average latent"
    latent = load_latent(Path(spec))
    latent.check_fits(num_ws=G.num_ws, w_dim=G.w_dim, model_id=card.id)
    return latent.ws, f"latent {spec}"


def cmd_encode(args: argparse.Namespace) -> None:
    import time

    import torch
    from PIL import Image

    from stylelens.data.images import load_image, to_tensor
    from stylelens.encoders.encode import encode
    from stylelens.encoders.store import load_encoder
    from stylelens.latents import Latent, save_latent
    from stylelens.render import to_uint8

    photo = load_image(args.image)
    if args.out.suffix != ".safetensors":
        raise StyleLensError(f"--out {args.out}: a latent file ends in .safetensors")
    _writable(args.out.parent)
    G, card, model_dir, device = _load(args)
    encoder = load_encoder(model_dir, device=device)
    if encoder is None:
        raise StyleLensError(
            f"model {card.id!r} has no encoder: train one with `stylelens train-encoder "
            f"--model {card.id}`, or install e4e/pSp weights with `stylelens convert-encoder`"
        )
    target_img, crop = _crop(photo, G.img_resolution, args.crop, card.framing)
    target = to_tensor(target_img).to(device)
    t0 = time.perf_counter()
    ws = encode(encoder, target)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        recon = G.synthesis(ws)
    mse = float(((recon.clamp(-1, 1) - target) / 2).square().mean())
    psnr = 10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-12))).item()
    meta = {"model": card.id, "engine": "encoder", "source": args.image.name}
    save_latent(args.out, Latent(ws.cpu(), {}, meta))
    png = args.out.with_suffix(".png")
    Image.fromarray(to_uint8(recon)[0]).save(png)
    print(f"target: {crop}")
    print(f"wrote {args.out} and {png} ({seconds * 1000:.0f} ms, PSNR {psnr:.2f} dB)")


def _crop(photo: Any, resolution: int, mode: str, framing: Framing) -> tuple[Any, str]:
    """(target image, how it was made) for ``--crop``, aligned to ``framing`` (the model
    card's); align errors are StyleLensErrors."""
    from stylelens.data.align import AlignUnavailable, NoFaceFound, align_face
    from stylelens.data.align_cli import _quiet_native_stderr
    from stylelens.data.images import center_crop_resize

    if mode != "center":
        try:
            with _quiet_native_stderr():
                aligned = align_face(photo, resolution, framing=framing)
            how = f"{aligned.framing}-aligned"
            if aligned.kept_frame:
                how += " (the face already sits as the model's faces do: its own square is kept)"
            return aligned.image, f"{how}, {aligned.num_faces} face(s) found, largest used"
        except AlignUnavailable:
            if mode == "align":
                raise
            how = "centre crop (the 'align' extra is not installed)"
        except NoFaceFound:
            if mode == "align":
                raise
            how = "centre crop (no face found to align)"
    else:
        how = "centre crop"
    return center_crop_resize(photo, resolution), how
