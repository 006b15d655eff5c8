"""Seed 004's multi-code GAN prior: the composition, the tasks and their refusals, the engine,
the hand-off to one W+ latent, codes files and ``stylelens restore``."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylelens.checkpoints.native import load_generator
from stylelens.cli import main
from stylelens.inversion import InversionError, make_engine
from stylelens.inversion.multicode import MultiCodeConfig, MultiCodeEngine, compose
from stylelens.latents import load_latent
from stylelens.losses.msssim import MSSSIMDistance
from stylelens.restoration.codes import load_codes, render_codes
from stylelens.restoration.engine import RestoreConfig, RestoreEngine, restoration_config
from stylelens.restoration.tasks import (
    RestorationError,
    check_layer,
    default_layer,
    downscale,
    gray,
    layer_resolution,
    make_task,
    observe,
    read_mask,
)


@pytest.fixture(scope="module")
def G(models_dir: Path):
    G, _ = load_generator(models_dir / "tiny-nvidia")  # 32 px, blocks 4 8 16 32, 8 ws of 32
    return G.requires_grad_(False)


@pytest.fixture(scope="module")
def face(G) -> torch.Tensor:
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(5)))
        return G.synthesis(ws).clamp(-1, 1)


def hole(R: int = 32) -> torch.Tensor:
    m = torch.zeros(1, 1, R, R)
    m[..., 10:20, 8:24] = 1
    return m


# the composition ----------------------------------------------------------------------------


@pytest.mark.parametrize("r", [4, 8, 16])
def test_one_code_composed_with_unit_importance_is_the_generator(G, r):
    ws = G.mapping(torch.randn(1, G.z_dim))
    C = getattr(G.synthesis, f"b{r}").conv1.weight.shape[0]
    alpha = torch.ones(1, C + 3)
    with torch.no_grad():
        composed = compose(G, ws[:, :1], alpha, ws, r)
        assert torch.equal(composed, G.synthesis(ws))


def test_composition_is_the_importance_weighted_sum_of_features(G):
    """Two codes with complementary one-hot importances: the features are each code's own."""
    w = G.mapping(torch.randn(2, G.z_dim))[:, :1]
    tail = G.mapping(torch.randn(1, G.z_dim))
    C = G.synthesis.b8.conv1.weight.shape[0] + 3
    a = torch.zeros(2, C)
    a[0, : C // 2] = 1
    a[1, C // 2 :] = 1
    with torch.no_grad():
        head = G.synthesis.run_until(w.expand(-1, G.num_ws, -1), 8)
        feats = torch.cat([head.x, head.img], dim=1)
        mixed = torch.cat([feats[0:1, : C // 2], feats[1:2, C // 2 :]], dim=1)
        from stylelens.networks.stylegan2 import BlockOutput

        *_, last = G.synthesis.iter_blocks(
            tail, start=BlockOutput(8, mixed[:, : C - 3], mixed[:, C - 3 :])
        )
        assert torch.allclose(compose(G, w, a, tail, 8), last.img, atol=1e-5)


def test_composition_refuses_importances_of_the_wrong_width(G):
    w = G.mapping(torch.randn(2, G.z_dim))[:, :1]
    with pytest.raises(ValueError, match="alpha must be"):
        compose(G, w, torch.ones(2, 5), G.mapping(torch.randn(1, G.z_dim)), 8)


def test_composing_layers_map_to_block_resolutions():
    assert [layer_resolution(L) for L in (2, 4, 6, 8)] == [4, 8, 16, 32]
    assert check_layer(6, 256) == 16
    assert default_layer("colorize", 256) == 6 and default_layer("inpaint", 256) == 4
    assert default_layer("reconstruct", 32) == 6  # layer 8 (32 px) is the 32-px model's output
    for bad in (5, 0, 8, 12):
        with pytest.raises(RestorationError, match="even number from 2 to 6"):
            check_layer(bad, 32)


# tasks and what users give ------------------------------------------------------------------


def test_gray_is_pillows_luma():
    rgb = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    expected = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1
    ours = ((gray(x)[0, 0] + 1) * 127.5).numpy()
    assert np.abs(ours - expected).max() <= 1.0  # Pillow rounds to integers


def test_downscale_is_the_mean_of_each_block():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert downscale(x, 2)[0, 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]


def test_task_refusals():
    with pytest.raises(RestorationError, match="scales are 2, 4, 8, 16"):
        make_task("superres", scale=3)
    with pytest.raises(RestorationError, match="needs a mask"):
        make_task("inpaint")
    with pytest.raises(RestorationError, match="unknown task"):
        make_task("sharpen")
    with pytest.raises(RestorationError, match=r"input must be \[1, 3, 4, 4\]"):
        make_task("superres", scale=8).check_observation(torch.zeros(1, 3, 8, 8), 32)
    with pytest.raises(RestorationError, match="less than 2x2"):
        make_task("superres", scale=16).check_observation(torch.zeros(1, 3, 2, 2), 16)


def _mask_image(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(arr.astype(np.uint8), "L")


def test_read_mask_white_is_the_hole():
    a = np.zeros((32, 32))
    a[4:8, 4:8] = 255
    m = read_mask(_mask_image(a), 32)
    assert m.hole.shape == (1, 1, 32, 32) and float(m.hole.sum()) == 16 and m.notes == ()


def test_read_mask_thresholds_grey_and_says_so():
    a = np.zeros((32, 32))
    a[4:8, 4:8] = 200
    a[10:12, 10:12] = 100
    m = read_mask(_mask_image(a), 32)
    assert float(m.hole.sum()) == 16
    assert any("not binary" in n and "thresholded at half" in n for n in m.notes)


def test_read_mask_resizes_whole_multiples_and_refuses_the_rest():
    a = np.zeros((64, 64))
    a[:32] = 255
    m = read_mask(_mask_image(a), 32)
    assert float(m.hole.mean()) == 0.5 and "resized from 64x64 to 32x32" in m.notes[0]
    with pytest.raises(RestorationError, match="48x48, the model makes 32x32"):
        read_mask(_mask_image(np.full((48, 48), 255)), 32)
    with pytest.raises(RestorationError, match="must be square"):
        read_mask(_mask_image(np.full((32, 40), 255)), 32)


def test_read_mask_refuses_empty_and_full_masks():
    with pytest.raises(RestorationError, match="empty"):
        read_mask(_mask_image(np.zeros((32, 32))), 32)
    with pytest.raises(RestorationError, match="covers the whole image"):
        read_mask(_mask_image(np.full((32, 32), 255)), 32)


def test_read_mask_uses_alpha_of_a_painted_layer():
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere: only the alpha says where the paint is
    rgba[2:6, 2:6, 3] = 255
    m = read_mask(Image.fromarray(rgba, "RGBA"), 32)
    assert float(m.hole.sum()) == 16


def test_observe_converts_colour_photos_for_colorization(face):
    task = make_task("colorize")
    obs, notes = observe(task, face, 32)
    assert obs.shape == (1, 1, 32, 32) and any("converted to gray" in n for n in notes)
    _, notes = observe(task, gray(face).expand(-1, 3, -1, -1), 32)
    assert notes == ()


def test_observe_scales_a_photo_to_the_super_resolution_input(face):
    task = make_task("superres", scale=4)
    obs, notes = observe(task, face, 32)
    assert obs.shape == (1, 3, 8, 8) and torch.allclose(obs, downscale(face, 4))
    assert "scaled to 8x8" in notes[0]
    obs, notes = observe(task, downscale(face, 4), 32)
    assert notes == ()


# the engine ---------------------------------------------------------------------------------


def _run(G, task, observed, **kw):
    engine = MultiCodeEngine(G, perceptual=MSSSIMDistance())
    config = MultiCodeConfig(**{"steps": 25, "codes": 4, "layer": 4, "task": task, **kw})
    state = engine.start(observed, config)
    losses = [engine.step(state).losses["total"] for _ in range(config.steps)]
    return engine, state, losses


@pytest.mark.parametrize("name", ["reconstruct", "colorize", "superres", "inpaint"])
def test_every_task_lowers_its_loss(G, face, name):
    task = make_task(name, scale=4, mask=hole())
    observed = {
        "colorize": gray(face),
        "superres": downscale(face, 4),
    }.get(name, task.degrade(face))
    engine, state, losses = _run(G, task, observed)
    assert losses[-1] < 0.7 * losses[0]
    result = engine.result(state)
    assert result.image is not None and result.image.shape == (1, 3, 32, 32)
    assert set(result.codes) == {"codes", "alpha", "tail"}
    assert result.ws.shape == (1, G.num_ws, G.w_dim)
    assert result.metrics["psnr"] > 10


def test_inpainting_ignores_what_is_in_the_hole(G, face):
    """Two photos that differ only inside the hole give the same restoration."""
    task = make_task("inpaint", mask=hole())
    other = face.clone()
    other[..., 10:20, 8:24] = torch.rand(1, 3, 10, 16) * 2 - 1
    e1, s1, _ = _run(G, task, face, steps=5)
    e2, s2, _ = _run(G, task, other, steps=5)
    assert torch.equal(e1.image(s1), e2.image(s2))


def test_finishes_keep_what_the_photo_says(G, face):
    x = torch.rand(1, 3, 32, 32) * 0.5  # mid-range colours: nothing clips
    target = gray(face) * 0.5
    done = make_task("colorize").finish(x, target)
    assert torch.allclose(gray(done), target, atol=1e-5)
    assert torch.allclose(done - gray(done), x - gray(x), atol=1e-5)  # the colour is x's
    inpaint = make_task("inpaint", mask=hole())
    done = inpaint.finish(x, inpaint.degrade(face))
    known = 1 - hole()
    assert torch.equal(done * known, face * known)
    assert torch.equal(done * (1 - known), x * (1 - known))


def test_single_code_keeps_its_importance(G, face):
    _, state, _ = _run(G, make_task("reconstruct"), face, codes=1, learn_alpha=False, steps=3)
    assert torch.equal(state.alpha, torch.ones_like(state.alpha))
    assert not state.alpha.requires_grad


def test_same_seed_same_run_and_other_seed_other_codes(G, face):
    task = make_task("reconstruct")
    a = _run(G, task, face, steps=3)[1].codes
    b = _run(G, task, face, steps=3)[1].codes
    c = _run(G, task, face, steps=3, seed=1)[1].codes
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_engine_refuses_a_wrong_observation(G, face):
    engine = MultiCodeEngine(G, perceptual=None)
    with pytest.raises(InversionError, match="colorize input must be"):
        engine.start(face, MultiCodeConfig(task=make_task("colorize"), layer=4))


def test_init_latent_becomes_the_first_code_and_the_tail(G, face):
    ws = G.mapping(torch.randn(1, G.z_dim))
    engine = MultiCodeEngine(G, perceptual=None)
    state = engine.start(face, MultiCodeConfig(codes=3, layer=4), init_ws=ws)
    assert torch.allclose(state.codes[0, 0], ws[0, 0]) and torch.equal(state.tail, ws)
    assert float(state.alpha.detach()[0, 0]) == 0.5


# hand-off, codes files, CLI -----------------------------------------------------------------


def test_restore_then_hand_off_to_one_latent(G, face):
    task = make_task("superres", scale=4)
    observed = downscale(face, 4)
    handoff, handoff_cfg = make_engine("adam", G, steps=4, perceptual=None)
    engine = RestoreEngine(G, perceptual=None, handoff=handoff)
    config = RestoreConfig(restoration_config(task, 32, steps=5, codes=3), handoff_cfg)
    state = engine.start(observed, config)
    reports = []
    while not state.done:
        reports.append(engine.step(state))
    assert [r.step for r in reports] == list(range(1, 10)) and reports[-1].total == 9
    assert "handoff_total" in reports[-1].losses
    result = engine.result(state)
    assert result.engine == "mganprior+adam" and result.steps == 9
    assert result.image is not None and torch.equal(result.image, state.restored)
    assert "handoff_psnr" in result.metrics and "psnr" in result.metrics
    assert torch.equal(engine.current_ws(state), handoff.current_ws(state.handoff))


def test_codes_file_draws_the_restoration_again(G, face, tmp_path):
    from stylelens.restoration.codes import Codes, save_codes

    engine, state, _ = _run(G, make_task("reconstruct"), face, steps=3)
    result = engine.result(state)
    c = result.codes
    path = save_codes(tmp_path / "c.safetensors", Codes(c["codes"], c["alpha"], c["tail"], 8))
    again = render_codes(G, load_codes(path))
    assert torch.allclose(again.clamp(-1, 1), result.image, atol=1e-6)
    (tmp_path / "bad.safetensors").write_bytes(b"nope")
    with pytest.raises(RestorationError, match="not a readable codes file"):
        load_codes(tmp_path / "bad.safetensors")


def _save(t: torch.Tensor, path: Path) -> Path:
    from stylelens.render import to_uint8

    Image.fromarray(to_uint8(t)[0]).save(path)
    return path


def test_cli_restore_each_task(models_dir, face, tmp_path, capsys):
    photo = _save(face, tmp_path / "face.png")
    small = _save(downscale(face, 4), tmp_path / "small.png")
    mask = tmp_path / "mask.png"
    Image.fromarray((hole()[0, 0].numpy() * 255).astype(np.uint8)).save(mask)
    base = ["--models-dir", str(models_dir), "--model", "tiny-nvidia", "--steps", "3"]
    for task, extra in (
        ("colorize", [str(photo)]),
        ("superres", [str(small), "--scale", "4"]),
        ("inpaint", [str(photo), "--mask", str(mask), "--codes", "2"]),
    ):
        out = tmp_path / task
        assert main(["restore", *extra, "--task", task, *base, "--out", str(out)]) == 0
        for f in ("result.png", "input.png", "steps.png", "codes.safetensors", "result.json"):
            assert (out / f).is_file(), f
        assert Image.open(out / "result.png").size == (32, 32)
    text = capsys.readouterr().out
    assert "converted to gray" in text
    assert "task: inpaint with 2 codes composed at layer 4 (8x8 features)" in text
    assert "task: superres with 20 codes composed at layer 6 (16x16 features)" in text


def test_cli_restore_editable_writes_a_latent(models_dir, face, tmp_path, capsys):
    photo = _save(face, tmp_path / "face.png")
    out = tmp_path / "o"
    argv = ["restore", str(photo), "--task", "colorize", "--models-dir", str(models_dir),
            "--model", "tiny-nvidia", "--steps", "2", "--editable", "2",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    latent = load_latent(out / "latent.safetensors")
    assert latent.ws.shape == (1, 8, 32) and latent.metadata["task"] == "colorize"
    assert "the W+ latent re-draws it at" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--task", "superres", "--scale", "3"], "scales are 2, 4, 8, 16"),
        (["--task", "inpaint"], "needs --mask"),
        (["--task", "colorize", "--mask", "MASK"], "--mask is for --task inpaint"),
        (["--task", "inpaint", "--mask", "EMPTY"], "the mask is empty"),
        (["--task", "inpaint", "--mask", "WIDE"], "must be square"),
        (["--task", "colorize", "--layer", "7"], "even number from 2 to 6"),
        (["--task", "colorize", "--steps", "0"], "--steps must be at least 1"),
    ],
)
def test_cli_restore_user_errors_exit_2(models_dir, face, tmp_path, capsys, extra, message):
    photo = _save(face, tmp_path / "face.png")
    files = {
        "MASK": _mask_image(np.full((32, 32), 255)),
        "EMPTY": _mask_image(np.zeros((32, 32))),
        "WIDE": _mask_image(np.full((32, 64), 255)),
    }
    args = []
    for a in extra:
        if a in files:
            files[a].save(tmp_path / f"{a}.png")
            a = str(tmp_path / f"{a}.png")
        args.append(a)
    argv = ["restore", str(photo), *args, "--models-dir", str(models_dir),
            "--model", "tiny-nvidia", "--out", str(tmp_path / "o")]  # fmt: skip
    assert main(argv) == 2
    assert message in capsys.readouterr().err


# the web app --------------------------------------------------------------------------------


def _mask_png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    _mask_image(arr).save(buf, "PNG")
    return buf.getvalue()


def test_app_restores_with_a_painted_mask_then_edits_the_hand_off(app_models, tmp_path):
    from fastapi.testclient import TestClient

    from stylelens.api.app import create_app
    from tests.test_api import new_session, receive_until, settings_for, upload

    with TestClient(create_app(settings_for(app_models, tmp_path / "data"))) as client:
        sid = new_session(client)
        assert upload(client, sid).status_code == 200
        a = np.zeros((64, 64))  # twice the model's 32 px: resized, and said so
        a[20:40, 16:48] = 255
        files = {"file": ("mask.png", _mask_png(a), "image/png")}
        r = client.post(f"/api/sessions/{sid}/masks", files=files)
        assert r.status_code == 200, r.text
        mask = r.json()
        assert (
            mask["hole_fraction"] == pytest.approx(0.15625, abs=1e-4)
            and "resized" in mask["notes"][0]
        )
        stored = Image.open(io.BytesIO(client.get(mask["mask_url"]).content))
        assert stored.size == (32, 32) and set(np.unique(np.asarray(stored))) == {0, 255}
        with client.websocket_connect(f"/api/ws?session={sid}") as ws:
            hello = ws.receive_json()
            assert hello["model"]["restore"] == ["colorize", "superres", "inpaint"]
            restore = {"task": "inpaint", "mask": mask["mask"], "codes": 3, "handoff_steps": 4}
            ws.send_json({"type": "start_inversion", "steps": 5, "restore": restore})
            events, frames = receive_until(ws, "done")
            started = next(e for e in events if e["type"] == "started")
            assert started["total"] == 9
            progress = [e for e in events if e["type"] == "progress"]
            assert progress[-1]["step"] == 9 and "handoff_total" in progress[-1]["losses"]
            assert frames and frames[-1].step == 9
            done = events[-1]
            assert done["result_url"] and done["latent"] and "handoff_psnr" in done["metrics"]
            png = client.get(done["result_url"])
            assert Image.open(io.BytesIO(png.content)).size == (32, 32)
            ws.send_json({"type": "render_edit", "scales": {"smile": 2.0}})  # the sliders work
            events, frames = receive_until(ws, "queued")
            msg = ws.receive()
            assert msg.get("bytes") is not None
            # colorize of the colour upload: converted to gray, and the page is told
            ws.send_json({"type": "start_inversion", "steps": 2,
                          "restore": {"task": "colorize", "handoff_steps": 0}})  # fmt: skip
            events, _ = receive_until(ws, "done")
            started = next(e for e in events if e["type"] == "started")
            assert "converted to gray" in started["note"]
            assert client.get(f"/api/sessions/{sid}").json()["results"]  # listed to download


@pytest.mark.parametrize(
    ("restore", "message"),
    [
        ({"task": "inpaint"}, "inpainting needs a mask"),
        ({"task": "superres", "scale": 3}, "restore.scale"),
        ({"task": "colorize", "mask": "a" * 22}, "a mask is for inpainting"),
        ({"task": "sharpen"}, "restore.task"),
        ({"task": "colorize", "handoff_steps": 2000}, "hand-off steps count too"),
    ],
)
def test_app_refuses_bad_restorations(app_models, tmp_path, restore, message):
    from fastapi.testclient import TestClient

    from stylelens.api.app import create_app
    from tests.test_api import new_session, settings_for, upload

    with TestClient(create_app(settings_for(app_models, tmp_path / "data"))) as client:
        sid = new_session(client)
        upload(client, sid)
        with client.websocket_connect(f"/api/ws?session={sid}") as ws:
            ws.receive_json()
            ws.send_json({"type": "start_inversion", "steps": 5, "restore": restore})
            e = ws.receive_json()
            assert e["type"] == "error" and e["code"] == "invalid" and message in e["message"], e


def test_app_refuses_bad_masks_and_unknown_ones(app_models, tmp_path):
    from fastapi.testclient import TestClient

    from stylelens.api.app import create_app
    from tests.test_api import new_session, receive_until, settings_for, upload

    with TestClient(create_app(settings_for(app_models, tmp_path / "data"))) as client:
        sid = new_session(client)
        upload(client, sid)
        url = f"/api/sessions/{sid}/masks"
        for data, status, text in [
            (_mask_png(np.zeros((32, 32))), 422, "the mask is empty"),
            (_mask_png(np.full((32, 32), 255)), 422, "covers the whole image"),
            (_mask_png(np.full((32, 48), 255)), 422, "must be square"),
            (_mask_png(np.full((40, 40), 255)), 422, "40x40, the model makes 32x32"),
            (b"not an image", 415, "not an image"),
            (b"", 422, "empty"),
        ]:
            r = client.post(url, files={"file": ("m.png", data, "image/png")})
            assert r.status_code == status and text in r.json()["detail"], (r.status_code, r.text)
        assert client.get(f"/api/sessions/{sid}").status_code == 200  # the session is intact
        with client.websocket_connect(f"/api/ws?session={sid}") as ws:
            ws.receive_json()
            restore = {"task": "inpaint", "mask": "b" * 22}
            ws.send_json({"type": "start_inversion", "steps": 3, "restore": restore})
            events, _ = receive_until(ws, "error")
            assert "is not one of this session's" in events[-1]["message"]
