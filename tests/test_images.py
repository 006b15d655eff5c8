"""User images: modes, orientation, and every kind of bad file."""

from __future__ import annotations

import gc
import io
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image, JpegImagePlugin

import stylelens.api.routes as routes_module
from stylelens.api.app import create_app
from stylelens.data.images import (
    InvalidImage,
    center_crop_resize,
    load_image,
    release_memory,
    to_tensor,
)
from stylelens.latents import Latent, LatentError, load_latent, save_latent
from tests.test_api import new_session, settings_for, upload

MB = 2**20


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


# Large images: bounded memory ------------------------------------------------------------------


def _flat_png(w: int, h: int, pixel: bytes = b"\xff\x00\x00\x80", colour_type: int = 6) -> bytes:
    """A one-colour PNG written row by row: a tiny file whose pixels are not tiny."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    z = zlib.compressobj(9)
    row = b"\0" + pixel * w  # filter type 0, then the row's pixels
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _proc_mb(field: str) -> float:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", text)[1]) * 1024 / MB  # type: ignore[index]


def _peak_and_after_mb(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``fn()``, and the process's peak and final resident size above its size before (MB)."""
    gc.collect()
    release_memory()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak resident size
    base = _proc_mb("VmRSS")
    result = fn()
    return result, _proc_mb("VmHWM") - base, _proc_mb("VmRSS") - base


def _can_measure_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _proc_mb("VmHWM") > 0
    except (OSError, TypeError):
        return False


needs_peak = pytest.mark.skipif(not _can_measure_peak(), reason="needs Linux /proc/self peaks")


@needs_peak
def test_a_small_png_of_a_huge_image_is_decoded_without_full_size_copies() -> None:
    data = _flat_png(6300, 6300)  # half-transparent red, 40 MP: 159 MB of RGBA in 170 kB
    assert len(data) < 200_000
    px = 6300 * 6300 * 4 / MB  # Pillow keeps RGB as well as RGBA at 4 bytes per pixel
    out, peak, _ = _peak_and_after_mb(lambda: load_image(data))
    assert out.size == (6300, 6300) and out.getpixel((100, 5000)) == (255, 127, 127)
    # The decoded RGBA and the RGB result, and no more full-size copies (there were four).
    assert peak < 2 * px + 48, f"peak +{peak:.0f} MB"
    del out
    out, peak, after = _peak_and_after_mb(lambda: load_image(data, max_side=2048))
    assert out.size == (2048, 2048) and out.getpixel((2047, 2047)) == (255, 127, 127)
    # The decode itself (151 MB), then small bands: under the goal of +300 MB for a
    # 40 MP upload (the old code: +756 MB). Alone this measures ~+190 MB; inside the whole
    # suite's process, whose heap earlier tests fragmented, up to ~+215 MB was seen.
    assert peak < 300, f"peak +{peak:.0f} MB"
    assert after < 48, f"+{after:.0f} MB kept"  # the 16 MB result; the decode was given back


def test_a_large_jpeg_is_decoded_at_a_reduced_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    g = Image.linear_gradient("L").resize((5000, 3000))
    photo = Image.merge("RGB", (g, g.transpose(Image.Transpose.FLIP_LEFT_RIGHT), g))
    data = _png(photo, "JPEG", quality=90)
    decoded: list[tuple[int, int]] = []
    load = JpegImagePlugin.JpegImageFile.load

    def spy(self: JpegImagePlugin.JpegImageFile) -> Any:
        decoded.append(self.size)
        return load(self)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", spy)
    out = load_image(data, max_side=1024)
    assert out.size == (1024, 614)
    assert decoded[0] == (1250, 750)  # libjpeg's 1/4 scale: 16x fewer pixels ever decoded
    full = load_image(data)
    assert decoded[-1] == (5000, 3000) and full.size == (5000, 3000)
    ref = np.asarray(full.resize(out.size, Image.Resampling.LANCZOS), np.float64)
    assert np.abs(np.asarray(out, np.float64) - ref).mean() < 1.0  # the same picture


def test_reduced_alpha_images_match_compositing_at_full_size() -> None:
    rgba = np.zeros((1500, 4000, 4), np.uint8)  # bands of rows: several, with a remainder
    rgba[..., 0] = np.linspace(0, 255, 4000)[None, :]
    rgba[..., 1] = np.linspace(255, 0, 1500)[:, None]
    rgba[..., 3] = np.linspace(0, 255, 4000)[None, :]
    im = Image.fromarray(rgba, "RGBA")
    out = load_image(_png(im), max_side=1000)
    assert out.size == (1000, 375)
    white = Image.new("RGBA", im.size, (255, 255, 255, 255))
    ref = Image.alpha_composite(white, im).convert("RGB").resize(out.size, Image.LANCZOS)
    diff = np.abs(np.asarray(out, np.float64) - np.asarray(ref, np.float64))
    assert diff.mean() < 0.5 and diff.max() <= 4  # no seams between the bands
    assert out.getpixel((0, 200)) == (255, 255, 255)  # transparent on the left: white


def test_orientation_and_modes_survive_the_reduction() -> None:
    photo = Image.new("RGB", (6000, 2000), (10, 20, 200))
    photo.paste((250, 0, 0), (0, 0, 1000, 2000))  # red on the stored image's left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display: the left becomes the top
    out = load_image(_png(photo, "JPEG", exif=exif.tobytes()), max_side=1500)
    assert out.size == (500, 1500)
    assert np.asarray(out)[:200, :, 0].min() > 200 and np.asarray(out)[400:, :, 0].max() < 60
    palette = Image.new("P", (3000, 2000))
    palette.putpalette([255, 0, 0] * 256)
    palette.info["transparency"] = 0
    assert load_image(_png(palette), max_side=1024).getpixel((10, 10)) == (255, 255, 255)
    deep = np.zeros((3000, 2000), np.uint16)  # several bands; only the last has large values
    deep[:100], deep[2500:] = 100, 60000
    out = np.asarray(load_image(_png(Image.fromarray(deep))))
    assert out[0, 0, 0] == 0 and out[-1, 0, 0] == 233  # one scale for the whole image
    big_endian = Image.new("I;16B", (40, 30))
    assert load_image(_png(big_endian, "TIFF")).mode == "RGB"


def test_an_upload_of_a_huge_image_is_stored_downscaled(
    app_models: Path,
    tmp_path: Path,
) -> None:
    with TestClient(create_app(settings_for(app_models, tmp_path / "d"))) as c:
        sid = new_session(c)
        r = upload(c, sid, _flat_png(6300, 4200, b"\x20\x90\xc0", colour_type=2))
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["width"], body["height"]) == (2048, 1365)
        stored = Image.open(io.BytesIO(c.get(body["original_url"]).content))
        assert stored.size == (2048, 1365)  # the manual crop's coordinates are these pixels
        assert c.get(body["crop_url"]).status_code == 200


def test_at_most_two_uploads_decode_at_once_and_a_long_wait_is_503(
    app_models: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = routes_module.process_upload
    lock, gate = threading.Lock(), threading.Event()
    running = [0, 0]  # now, most at once

    def gated(*args: Any, **kw: Any) -> Any:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        try:
            gate.wait(10)
            return real(*args, **kw)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(routes_module, "process_upload", gated)
    monkeypatch.setattr(routes_module, "UPLOAD_WAIT_S", 0.3)
    with TestClient(create_app(settings_for(app_models, tmp_path / "d"))) as c:
        sid = new_session(c)
        with ThreadPoolExecutor(4) as pool:
            first = [pool.submit(upload, c, sid) for _ in range(2)]
            deadline = time.monotonic() + 10
            while running[0] < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            late = upload(c, sid)  # both slots are taken for longer than it may wait
            assert late.status_code == 503 and late.headers["retry-after"] == "5"
            assert "busy" in late.json()["detail"]
            monkeypatch.setattr(routes_module, "UPLOAD_WAIT_S", 30.0)
            more = [pool.submit(upload, c, sid) for _ in range(2)]
            time.sleep(0.3)  # they wait for a slot
            gate.set()
            codes = [f.result().status_code for f in first + more]
        assert codes == [200] * 4 and running[1] == 2
        assert c.get("/healthz").status_code == 200
