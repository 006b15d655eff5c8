"""The perceptual-loss interface and the choice of backend for a model."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from stylelens.checkpoints.native import DISCRIMINATOR_FILE, load_discriminator
from stylelens.errors import StyleLensError
from stylelens.losses.discriminator import DiscriminatorFeatureDistance
from stylelens.losses.lpips import LPIPS, LPIPS_DIR, LPIPS_FILE, VGGFeatureDistance, read_weights
from stylelens.losses.msssim import MSSSIMDistance

PERCEPTUAL_BACKENDS = ("auto", "lpips", "vgg", "d-features", "ms-ssim")


class PerceptualLoss(Protocol):
    """(x, y) images [N, 3, H, W] in [-1, 1] -> distance [N]; ``name`` says which one."""

    name: str

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...


def pixel_mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared pixel error per sample, [N]."""
    return (x.float() - y.float()).square().flatten(1).mean(dim=1)


def available_backends(models_dir: Path, model_dir: Path) -> list[str]:
    """The backends these directories allow, best first."""
    out = []
    if (models_dir / LPIPS_DIR / LPIPS_FILE).is_file():
        out += ["lpips", "vgg"]
    if (model_dir / DISCRIMINATOR_FILE).is_file():
        out.append("d-features")
    return [*out, "ms-ssim"]


def load_perceptual(
    backend: str, *, models_dir: Path, model_dir: Path, device: torch.device | str = "cpu"
) -> PerceptualLoss:
    """Build one backend by name ("lpips", "vgg", "d-features", "ms-ssim" or "auto").

    Raises:
        StyleLensError: unknown name, or the weights it needs are absent.
    """
    if backend == "auto":
        return select_perceptual(models_dir=models_dir, model_dir=model_dir, device=device)
    if backend in ("lpips", "vgg"):
        state = read_weights(models_dir / LPIPS_DIR / LPIPS_FILE)
        module = LPIPS(state) if backend == "lpips" else VGGFeatureDistance(state)
        return module.to(device)
    if backend == "d-features":
        D, _ = load_discriminator(model_dir, device=device)
        return DiscriminatorFeatureDistance(D)
    if backend == "ms-ssim":
        return MSSSIMDistance().to(device)
    raise StyleLensError(f"unknown perceptual loss {backend!r}; choose from {PERCEPTUAL_BACKENDS}")


def select_perceptual(
    *, models_dir: Path, model_dir: Path, device: torch.device | str = "cpu"
) -> PerceptualLoss:
    """LPIPS-VGG16 when ``models_dir/lpips-vgg16`` holds its weights; else the model's
    discriminator features when it ships a discriminator; else MS-SSIM."""
    best = available_backends(models_dir, model_dir)[0]
    return load_perceptual(best, models_dir=models_dir, model_dir=model_dir, device=device)
