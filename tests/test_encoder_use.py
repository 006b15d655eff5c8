"""Encoders in use: ``stylelens encode``, ``invert --init``, and the app's inversions starting
from the encoder's guess (the encoder here is a tiny untrained LightEncoder with a perturbed
head, so its guess differs from ``w_avg``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from stylelens.api.app import create_app
from stylelens.checkpoints.native import load_generator
from stylelens.cli import main
from stylelens.encoders.encode import encode
from stylelens.encoders.light import LightEncoder
from stylelens.encoders.store import load_encoder, save_encoder
from stylelens.latents import load_latent
from tests.test_api import new_session, receive_until, settings_for, upload

CONFIG = {"num_ws": 8, "w_dim": 32, "input_resolution": 32, "channels": [8, 8, 8, 8],
          "pyramid_channels": 16}  # fmt: skip


def tiny_encoder(G: torch.nn.Module) -> LightEncoder:
    enc = LightEncoder(**CONFIG)  # type: ignore[arg-type]
    enc.w_avg.copy_(G.mapping.w_avg)
    with torch.no_grad():
        for p in enc.parameters():  # a guess that depends on the image, unlike w_avg
            p.add_(torch.randn_like(p) * 0.05)
    return enc


@pytest.fixture(scope="module")
def encoded_models(app_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("encoded")
    shutil.copytree(app_models / "tiny", root / "tiny")
    G, _ = load_generator(root / "tiny")
    save_encoder(root / "tiny", tiny_encoder(G), architecture="light", config=CONFIG,
                 info={"trained": "test fixture"})  # fmt: skip
    return root


def photo(path: Path) -> Path:
    im = Image.new("RGB", (64, 64), (200, 150, 120))
    im.paste((60, 40, 30), (16, 16, 40, 36))
    im.save(path)
    return path


def test_encode_writes_the_encoders_latent(encoded_models: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "face.safetensors"
    argv = ["encode", str(photo(tmp_path / "p.png")), "--model", "tiny",
            "--models-dir", str(encoded_models), "--crop", "center", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert "PSNR" in capsys.readouterr().out
    latent = load_latent(out)
    assert latent.ws.shape == (1, 8, 32) and latent.metadata["engine"] == "encoder"
    assert Image.open(out.with_suffix(".png")).size == (32, 32)
    G, _ = load_generator(encoded_models / "tiny")
    assert not torch.allclose(latent.ws, G.mapping.w_avg.expand(1, 8, 32))


def test_encode_and_init_encoder_refuse_a_model_without_one(
    app_models: Path,
    tmp_path: Path,
    capsys,
) -> None:
    p = str(photo(tmp_path / "p.png"))
    base = ["--model", "tiny", "--models-dir", str(app_models), "--crop", "center"]
    assert main(["encode", p, *base, "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "train-encoder" in capsys.readouterr().err
    argv = ["invert", p, *base, "--steps", "2", "--init", "encoder", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "no encoder" in capsys.readouterr().err


def test_invert_starts_from_the_encoder_by_default(encoded_models: Path, tmp_path: Path) -> None:
    p = str(photo(tmp_path / "p.png"))
    base = ["invert", p, "--model", "tiny", "--models-dir", str(encoded_models), "--crop",
            "center", "--engine", "adam", "--steps", "1", "--frames", "1"]  # fmt: skip
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--init", "average", "--out", str(tmp_path / "b")]) == 0
    a = json.loads((tmp_path / "a" / "result.json").read_text())
    b = json.loads((tmp_path / "b" / "result.json").read_text())
    assert "encoder" in a["init"] and b["init"] == "the average latent"
    wa = load_latent(tmp_path / "a" / "latent.safetensors").ws
    wb = load_latent(tmp_path / "b" / "latent.safetensors").ws
    assert not torch.allclose(wa, wb)  # one Adam step from two different starts


def test_the_app_shows_the_encoders_guess_first(encoded_models: Path, tmp_path: Path) -> None:
    with TestClient(create_app(settings_for(encoded_models, tmp_path / "d"))) as c:
        sid = new_session(c)
        upload(c, sid)
        with c.websocket_connect(f"/api/ws?session={sid}") as ws:
            assert ws.receive_json()["model"]["encoder"] is True
            ws.send_json({"type": "start_inversion", "engine": "adam", "steps": 3})
            events, frames = receive_until(ws, "done")
        started = next(e for e in events if e["type"] == "started")
        assert started["init"] == "encoder"
        assert frames[0].step == 0 and frames[0].kind == "inversion"  # the guess, then steps
        assert [f.step for f in frames[1:]] and min(f.step for f in frames[1:]) >= 1


def test_the_encoder_file_must_fit_the_model(encoded_models: Path, tmp_path: Path) -> None:
    from stylelens.errors import CheckpointError

    enc = load_encoder(encoded_models / "tiny")
    assert enc is not None
    target = torch.zeros(1, 3, 32, 32)
    assert encode(enc, target).shape == (1, 8, 32)
    wrong = LightEncoder(**{**CONFIG, "num_ws": 6})  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="num_ws=6"):
        save_encoder(encoded_models / "tiny", wrong, architecture="light", config={}, info={})
