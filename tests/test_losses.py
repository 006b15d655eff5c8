"""Perceptual losses: zero for identical images, growing with the perturbation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stylelens.errors import CheckpointError, StyleLensError
from stylelens.losses import available_backends, load_perceptual, select_perceptual
from stylelens.losses.lpips import LPIPS_DIR, LPIPS_FILE
from stylelens.losses.msssim import ms_ssim
from tests.formats import write_lpips_vgg16


def _smooth_image(res: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, 4, 4, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(low, size=(res, res), mode="bilinear")


@pytest.fixture(scope="module")
def lpips_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lpips-models")
    write_lpips_vgg16(root / LPIPS_DIR / LPIPS_FILE)
    return root


def _check_monotone(loss, res: int) -> None:
    x = _smooth_image(res).repeat(2, 1, 1, 1)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    d0 = loss(x, x)
    assert d0.shape == (2,)
    assert torch.allclose(d0, torch.zeros(2), atol=1e-6)
    dists = [float(loss(x, (x + a * noise).clamp(-1, 1))[0]) for a in (0.05, 0.2, 0.6)]
    assert 0 < dists[0] < dists[1] < dists[2], dists


def test_ms_ssim_identical_is_one_and_decreases() -> None:
    x = _smooth_image(64)
    assert float(ms_ssim(x, x)[0]) == pytest.approx(1.0, abs=1e-5)
    _check_monotone(load_perceptual("ms-ssim", models_dir=Path("."), model_dir=Path(".")), 64)


@pytest.mark.parametrize("res", [8, 32, 256])
def test_ms_ssim_any_size(res: int) -> None:
    loss = load_perceptual("ms-ssim", models_dir=Path("."), model_dir=Path("."))
    _check_monotone(loss, res)


def test_discriminator_features(models_dir: Path) -> None:
    loss = load_perceptual(
        "d-features", models_dir=models_dir, model_dir=models_dir / "tiny-nvidia"
    )
    assert loss.name == "d-features"
    _check_monotone(loss, 32)
    _check_monotone(loss, 64)  # other sizes are resized to D's resolution


@pytest.mark.parametrize("backend", ["lpips", "vgg"])
def test_lpips_and_vgg_from_plain_tensors(lpips_models: Path, backend: str) -> None:
    loss = load_perceptual(backend, models_dir=lpips_models, model_dir=lpips_models / "x")
    _check_monotone(loss, 32)


def test_selection_order(models_dir: Path, lpips_models: Path, tmp_path: Path) -> None:
    tiny = models_dir / "tiny-nvidia"
    assert available_backends(models_dir, tiny) == ["d-features", "ms-ssim"]
    assert select_perceptual(models_dir=models_dir, model_dir=tiny).name == "d-features"
    assert select_perceptual(models_dir=lpips_models, model_dir=tiny).name == "lpips-vgg16"
    assert select_perceptual(models_dir=tmp_path, model_dir=tmp_path).name == "ms-ssim"


def test_bad_lpips_weights_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / LPIPS_DIR).mkdir()
    (tmp_path / LPIPS_DIR / LPIPS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="not a safetensors"):
        load_perceptual("lpips", models_dir=tmp_path, model_dir=tmp_path)
    with pytest.raises(CheckpointError, match="fetch lpips-vgg16"):
        load_perceptual("lpips", models_dir=tmp_path / "none", model_dir=tmp_path)
    with pytest.raises(StyleLensError, match="unknown perceptual"):
        load_perceptual("nope", models_dir=tmp_path, model_dir=tmp_path)


def test_discriminator_is_not_changed_by_the_loss(models_dir: Path) -> None:
    tiny = models_dir / "tiny-nvidia"
    loss = load_perceptual("d-features", models_dir=models_dir, model_dir=tiny)
    before = {k: v.clone() for k, v in loss.D.state_dict().items()}
    x = _smooth_image(32).requires_grad_(True)
    loss(x, _smooth_image(32, seed=3)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in loss.D.parameters())
    assert all(torch.equal(before[k], v) for k, v in loss.D.state_dict().items())
