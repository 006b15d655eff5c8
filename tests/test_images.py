"""User images: modes, orientation, and every kind of bad file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylelens.data.images import InvalidImage, center_crop_resize, load_image, to_tensor
from stylelens.latents import Latent, LatentError, load_latent, save_latent


def _png(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "RGB"])
def test_every_mode_becomes_rgb(mode: str) -> None:
    im = Image.new("RGB", (40, 30), (200, 100, 50))
    im = im.convert("L").convert(mode) if mode == "I;16" else im.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    out = load_image(_png(im, fmt))
    assert out.mode == "RGB" and out.size == (40, 30)


def test_16_bit_grayscale_is_scaled_not_clipped() -> None:
    im = Image.new("I;16", (8, 8))
    im.putdata([32768] * 64)
    out = load_image(_png(im))
    assert abs(int(np.asarray(out)[0, 0, 0]) - 128) <= 1


def test_transparent_pixels_become_white() -> None:
    im = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert np.asarray(load_image(_png(im)))[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied() -> None:
    im = Image.new("RGB", (60, 20), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = load_image(_png(im, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 60)


def test_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(InvalidImage, match="not an image"):
        load_image(b"hello, this is text")
    with pytest.raises(InvalidImage, match="cannot read"):
        load_image(tmp_path / "missing.png")


def test_truncated_image() -> None:
    data = _png(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")
    with pytest.raises(InvalidImage, match="corrupt or truncated"):
        load_image(data[: len(data) // 2])


def test_huge_image_refused_before_decoding() -> None:
    data = _png(Image.new("L", (4000, 4000)))
    with pytest.raises(InvalidImage, match="megapixels"):
        load_image(data, max_pixels=1_000_000)


def test_center_crop_and_tensor_range() -> None:
    im = Image.new("RGB", (300, 100), (255, 0, 0))
    sq = center_crop_resize(im, 32)
    t = to_tensor(sq)
    assert t.shape == (1, 3, 32, 32)
    assert t[0, 0].min() == 1 and t[0, 1].max() == -1


def test_latent_round_trip_and_shape_checks(tmp_path: Path) -> None:
    ws = torch.randn(1, 6, 16)
    noise = {"b8.conv0": torch.randn(1, 1, 8, 8)}
    path = save_latent(tmp_path / "a.safetensors", Latent(ws, noise, {"model": "tiny"}))
    back = load_latent(path)
    assert torch.equal(back.ws, ws) and torch.equal(back.noise["b8.conv0"], noise["b8.conv0"])
    assert back.model == "tiny" and back.metadata["num_ws"] == "6"
    back.check_fits(num_ws=6, w_dim=16, model_id="tiny")
    with pytest.raises(LatentError, match="shape"):
        back.check_fits(num_ws=14, w_dim=16)
    with pytest.raises(LatentError, match="made with model"):
        back.check_fits(num_ws=6, w_dim=16, model_id="other")
    (tmp_path / "bad.safetensors").write_bytes(b"nonsense")
    with pytest.raises(LatentError, match="not a StyleLens latent"):
        load_latent(tmp_path / "bad.safetensors")
