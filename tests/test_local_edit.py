"""Local edits: the blend of an original and an edited synthesis under a feathered mask, the
region presets, and ``stylelens edit --mask/--preset``."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylelens.cli import main
from stylelens.editing.local import (
    LocalEditError,
    OriginalRun,
    check_blend_res,
    default_blend_res,
    feather_mask,
    render_local,
)
from stylelens.editing.regions import PRESETS, convex_hull, preset_mask, preset_regions
from stylelens.latents import Latent, save_latent
from stylelens.networks.stylegan2 import Generator
from stylelens.render import to_uint8
from tests.formats import TINY_G, random_state

HAVE_MEDIAPIPE = importlib.util.find_spec("mediapipe") is not None
R = TINY_G.img_resolution


@pytest.fixture(scope="module")
def G() -> Generator:
    g = Generator(TINY_G)
    g.load_state_dict(random_state(g, seed=5), strict=False)
    return g.eval()


def _ws(G: Generator, seed: int) -> torch.Tensor:
    z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return G.mapping(z)


def _blob(size: int = R) -> torch.Tensor:
    """A binary region [1, 1, R, R]: an off-centre disc plus a square."""
    ys, xs = np.mgrid[0:size, 0:size]
    disc = (xs - 0.6 * size) ** 2 + (ys - 0.4 * size) ** 2 <= (0.2 * size) ** 2
    disc[int(0.7 * size) :, 2:6] = True
    return torch.from_numpy(disc).float()[None, None]


# ---------------------------------------------------------------------------------------------
# The feathered mask


def test_feather_keeps_the_region_and_ramps_to_zero_within_the_feather() -> None:
    region = torch.zeros(1, 1, 64, 64)
    region[..., 20:40, 10:30] = 1  # convex: every pixel outside is nearer the ramp's end
    for feather in (0, 1, 4, 7):
        w = feather_mask(region, feather)[0, 0]
        assert torch.all(w[region[0, 0] > 0] == 1), feather
        # Chebyshev distance from the region (max-pool dilation is square).
        dist = torch.full_like(w, 99.0)
        grown = region.clone()
        for d in range(0, 12):
            newly = (grown[0, 0] > 0) & (dist == 99)
            dist[newly] = d
            grown = torch.nn.functional.max_pool2d(grown, 3, stride=1, padding=1)
        assert torch.all(w[dist > feather] == 0), feather
        if feather > 0:
            band = (dist > 0) & (dist <= feather // 2 + 1)
            assert torch.all(w[band] > 0), feather
            assert torch.all(w[dist > (feather + 1) // 2 - feather // 2] < 1), feather
    with pytest.raises(LocalEditError, match="0 or more"):
        feather_mask(region, -1)


# ---------------------------------------------------------------------------------------------
# The blend


def test_outside_the_mask_the_output_is_the_original_exactly(G: Generator) -> None:
    ws, ws_edit = _ws(G, 1), _ws(G, 2)
    weights = feather_mask(_blob(), 2)
    with torch.no_grad():
        original, edited = G.synthesis(ws), G.synthesis(ws_edit)
    outside = (weights[0, 0] == 0).expand(3, -1, -1)
    inside = (weights[0, 0] == 1).expand(3, -1, -1)
    for blend_res in [r for r in G.synthesis.block_resolutions if r > 4]:
        run = OriginalRun.compute(G.synthesis, ws, blend_res)
        torch.testing.assert_close(run.image, original)
        out = render_local(G.synthesis, ws_edit, run, weights)
        assert torch.equal(out[0][outside], original[0][outside]), blend_res
        # The edit is there inside the region.
        change = (out - original).abs()[0][inside].mean()
        assert change > 0.3 * (edited - original).abs()[0][inside].mean(), blend_res
        if blend_res == R:  # blended only at the output: plain alpha compositing
            torch.testing.assert_close(out[0][inside], edited[0][inside])


def test_the_same_latent_renders_the_original(G: Generator) -> None:
    ws = _ws(G, 3)
    run = OriginalRun.compute(G.synthesis, ws, 8)
    out = render_local(G.synthesis, ws, run, feather_mask(_blob(), 2))
    torch.testing.assert_close(out, run.image)


def test_noise_maps_are_shared_by_both_runs(G: Generator) -> None:
    ws, ws_edit = _ws(G, 1), _ws(G, 2)
    noise = {
        name: torch.randn(1, 1, layer.resolution, layer.resolution)
        for name, layer in G.synthesis.noise_layers().items()
    }
    weights = feather_mask(_blob(), 2)
    run = OriginalRun.compute(G.synthesis, ws, 16, noise=noise)
    with torch.no_grad():
        torch.testing.assert_close(run.image, G.synthesis(ws, noise=noise))
    out = render_local(G.synthesis, ws_edit, run, weights, noise=noise)
    outside = (weights[0, 0] == 0).expand(3, -1, -1)
    assert torch.equal(out[0][outside], run.image[0][outside])


def test_bad_blend_resolutions_and_masks_are_refused(G: Generator) -> None:
    for bad in (4, 12, 64):
        with pytest.raises(LocalEditError, match="choose one of 8, 16, 32"):
            check_blend_res(G.synthesis, bad)
    run = OriginalRun.compute(G.synthesis, _ws(G, 1), 16)
    for shape in [(1, 1, 16, 16), (1, 3, R, R), (R, R)]:
        with pytest.raises(LocalEditError, match=f"must be \\[N, 1, {R}, {R}\\]"):
            render_local(G.synthesis, _ws(G, 2), run, torch.ones(shape))
    assert default_blend_res(256) == 32 and default_blend_res(1024) == 128
    assert default_blend_res(32) == 8


# ---------------------------------------------------------------------------------------------
# Region presets


def test_convex_hull_holds_every_point() -> None:
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(200, 2))
    hull = convex_hull(pts)
    assert 3 <= len(hull) < 200
    # Every point is on the inner side of every hull edge (counter-clockwise).
    for a, b in zip(hull, np.roll(hull, -1, axis=0), strict=True):
        cross = (b[0] - a[0]) * (pts[:, 1] - a[1]) - (b[1] - a[1]) * (pts[:, 0] - a[0])
        assert np.all(cross >= -1e-9)


@pytest.mark.skipif(not HAVE_MEDIAPIPE, reason="the align extra (MediaPipe) is not installed")
def test_presets_sit_on_a_drawn_face_where_the_renderer_drew_its_parts() -> None:
    from stylelens.data.synthfaces.draw import landmarks, render
    from stylelens.data.synthfaces.params import sample_params

    for seed in (11, 12):
        params = sample_params(seed)
        face = Image.fromarray(render(params, 256))
        regions = preset_regions(face)
        assert set(regions) == set(PRESETS)
        eye_l, eye_r, mouth_l, mouth_r = (landmarks(params) * 256).astype(int)
        mouth_mid = (mouth_l + mouth_r) // 2
        assert regions["mouth"][mouth_mid[1], mouth_mid[0]], seed
        assert regions["eyes"][eye_l[1], eye_l[0]] and regions["eyes"][eye_r[1], eye_r[0]], seed
        assert not regions["eyes"][mouth_mid[1], mouth_mid[0]], seed
        assert not regions["mouth"][eye_l[1], eye_l[0]], seed
        assert regions["face"][mouth_mid[1], mouth_mid[0]], seed
        for name in ("hair", "background"):
            assert regions[name].any(), (seed, name)
            assert not (regions[name] & regions["mouth"]).any(), (seed, name)
        assert regions["background"][2, 2], seed  # a corner of the frame
        assert 0.005 < regions["mouth"].mean() < 0.05, seed


@pytest.mark.skipif(not HAVE_MEDIAPIPE, reason="the align extra (MediaPipe) is not installed")
def test_a_preset_on_an_image_without_a_face_says_so() -> None:
    flat = Image.new("RGB", (64, 64), (120, 130, 140))
    with pytest.raises(LocalEditError, match="no face found"):
        preset_mask("mouth", flat)
    with pytest.raises(LocalEditError, match="unknown region preset 'ears'"):
        preset_mask("ears", flat)


def test_a_preset_without_the_align_extra_says_how_to_get_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "mediapipe.python.solutions", None)  # import -> ImportError
    import stylelens.data.align as align

    monkeypatch.setattr(align, "_default", None)
    with pytest.raises(LocalEditError, match="align extra"):
        preset_mask("eyes", Image.new("RGB", (64, 64)))


# ---------------------------------------------------------------------------------------------
# stylelens edit --mask / --preset


@pytest.fixture
def model(tmp_path: Path, models_dir: Path) -> Path:
    root = tmp_path / "models"
    shutil.copytree(models_dir / "tiny-nvidia", root / "tiny")
    return root


def _mask_png(path: Path, region: torch.Tensor, scale: int = 1) -> Path:
    arr = (region[0, 0].numpy() * 255).astype(np.uint8)
    im = Image.fromarray(arr, "L")
    if scale != 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    im.save(path)
    return path


def test_cli_edits_only_inside_the_mask(model: Path, tmp_path: Path, capsys) -> None:
    from stylelens.checkpoints.native import load_generator

    G, _ = load_generator(model / "tiny")
    ws = _ws(G, 4)
    latent = tmp_path / "a.safetensors"
    save_latent(latent, Latent(ws=ws, metadata={"model": "tiny"}))
    m = ["--model", "tiny", "--models-dir", str(model)]
    mask = _mask_png(tmp_path / "mask.png", _blob(), scale=4)  # 128 px: resized, and said
    out, plain = tmp_path / "local.png", tmp_path / "plain.png"
    mix = ["--mix", "seed=9:all"]
    argv = ["edit", str(latent), *m, *mix, "--mask", str(mask), "--feather", "2"]
    assert main([*argv, "--blend-res", "16", "--out", str(out)]) == 0
    assert "mask resized from 128x128 to 32x32" in capsys.readouterr().err
    assert main(["edit", str(latent), *m, *mix, "--out", str(plain)]) == 0
    with torch.no_grad():
        original = to_uint8(G.synthesis(ws))[0].astype(int)
    local = np.asarray(Image.open(out)).astype(int)
    whole = np.asarray(Image.open(plain)).astype(int)
    outside = feather_mask(_blob(), 2)[0, 0].numpy() == 0
    inside = _blob()[0, 0].numpy() > 0
    assert np.abs(local - original)[outside].max() <= 1
    assert np.abs(local - original)[inside].mean() > 0.3 * np.abs(whole - original)[inside].mean()


def test_cli_region_errors_exit_2(model: Path, tmp_path: Path, capsys) -> None:
    latent = tmp_path / "a.safetensors"
    save_latent(latent, Latent(ws=torch.zeros(1, 8, 32), metadata={"model": "tiny"}))
    m = ["--model", "tiny", "--models-dir", str(model), "--out", str(tmp_path / "o.png")]
    empty = _mask_png(tmp_path / "empty.png", torch.zeros(1, 1, R, R))
    full = _mask_png(tmp_path / "full.png", torch.ones(1, 1, R, R))
    odd = _mask_png(tmp_path / "odd.png", torch.ones(1, 1, 20, 20))
    wide = tmp_path / "wide.png"
    Image.new("L", (64, 32), 255).save(wide)
    text = tmp_path / "mask.txt"
    text.write_text("not an image")
    blob = _mask_png(tmp_path / "blob.png", _blob())
    cases = [
        (["--mask", str(empty)], "the mask is empty"),
        (["--mask", str(full)], "covers the whole image: that is the plain edit"),
        (["--mask", str(odd)], "the mask is 20x20, the model makes 32x32"),
        (["--mask", str(wide)], "must be square"),
        (["--mask", str(text)], "not an image we can read"),
        (["--mask", str(tmp_path / "none.png")], "no such file"),
        (["--mask", str(blob), "--blend-res", "4"], "choose one of 8, 16, 32"),
        (["--blend-res", "16"], "need a region"),
        (["--mask", str(blob), "--preset", "eyes"], "not both"),
        (["--mask", str(blob), "--feather", "-3"], "0 or more"),
    ]
    for extra, message in cases:
        assert main(["edit", str(latent), *m, *extra]) == 2, extra
        assert message in capsys.readouterr().err, extra


# ---------------------------------------------------------------------------------------------
# The web app: render_edit / commit with a region, region_preset


def test_the_app_edits_inside_a_painted_region_only(app_models: Path, tmp_path: Path) -> None:
    import io

    from fastapi.testclient import TestClient

    from stylelens.api.app import create_app
    from tests.test_api import new_session, receive_edit, receive_until, settings_for

    region = _blob()
    buf = io.BytesIO()
    Image.fromarray((region[0, 0].numpy() * 255).astype(np.uint8), "L").save(buf, "PNG")
    with TestClient(create_app(settings_for(app_models, tmp_path / "data"))) as c:
        sid = new_session(c)
        up = c.post(f"/api/sessions/{sid}/masks", files={"file": ("m.png", buf.getvalue())})
        assert up.status_code == 200, up.text
        mask = up.json()["mask"]
        with c.websocket_connect(f"/api/ws?session={sid}") as ws:
            ws.receive_json()
            ws.send_json({"type": "random_face", "seed": 3})
            receive_until(ws, "done")
            results = {}
            mix = {"seed": 11, "layers": "all"}
            for name, extra in [
                ("original", {}),
                ("whole", {"mixing": mix}),
                ("local", {"mixing": mix, "region": {"mask": mask, "blend_res": 16}}),
            ]:
                ws.send_json({"type": "commit", **extra})
                done = receive_until(ws, "done")[0][-1]
                png = c.get(done["result_url"]).content
                results[name] = np.asarray(Image.open(io.BytesIO(png))).astype(int)
            ws.send_json(
                {"type": "render_edit", "mixing": mix, "region": {"mask": mask, "blend_res": 16}}
            )
            _, frame = receive_edit(ws)
            assert frame.kind == "edit"
            for bad, message in [
                ({"mask": "A" * 22}, "no mask"),
                ({"mask": mask, "blend_res": 12}, "choose one of 8, 16, 32"),
            ]:
                ws.send_json({"type": "render_edit", "mixing": mix, "region": bad})
                events, _ = receive_until(ws, "error")
                assert message in events[-1]["message"], events[-1]
            ws.send_json({"type": "render_edit", "region": {"mask": mask, "blend_res": 4}})
            events, _ = receive_until(ws, "error")
            assert events[-1]["code"] == "invalid"
    outside = feather_mask(region, default_feather_for_tiny())[0, 0].numpy() == 0
    inside = region[0, 0].numpy() > 0
    assert np.abs(results["local"] - results["original"])[outside].max() <= 1
    whole_change = np.abs(results["whole"] - results["original"])[inside].mean()
    assert np.abs(results["local"] - results["original"])[inside].mean() > 0.3 * whole_change


def default_feather_for_tiny() -> int:
    from stylelens.editing.local import default_feather

    return default_feather(R)


def test_a_region_preset_on_a_face_without_landmarks_is_refused(
    app_models: Path, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from stylelens.api.app import create_app
    from tests.test_api import new_session, receive_until, settings_for

    with TestClient(create_app(settings_for(app_models, tmp_path / "data"))) as c:
        sid = new_session(c)
        with c.websocket_connect(f"/api/ws?session={sid}") as ws:
            ws.receive_json()
            ws.send_json({"type": "region_preset", "preset": "mouth"})
            events, _ = receive_until(ws, "error")
            assert events[-1]["code"] == "no_latent"
            ws.send_json({"type": "random_face", "seed": 3})
            receive_until(ws, "done")
            ws.send_json({"type": "region_preset", "preset": "mouth"})
            events, _ = receive_until(ws, "error")
            # The tiny model's random face has no face MediaPipe can find.
            assert "paint the region with the brush" in events[-1]["message"]
            ws.send_json({"type": "region_preset", "preset": "ears"})
            events, _ = receive_until(ws, "error")
            assert events[-1]["code"] == "invalid"
