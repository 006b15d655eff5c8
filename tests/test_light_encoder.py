"""The light encoder: shapes, the e4e offset structure, storage next to a model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from stylelens.checkpoints.native import load_generator
from stylelens.encoders.light import LightEncoder, compose_ws
from stylelens.encoders.store import ENCODER_FILE, load_encoder, save_encoder
from stylelens.errors import CheckpointError

TINY = {"channels": [8, 8, 16, 16], "pyramid_channels": 16}


@pytest.fixture()
def tiny(models_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "tiny"
    shutil.copytree(models_dir / "tiny-nvidia", dst)
    return dst


def _perturb(encoder: LightEncoder) -> None:
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(torch.randn_like(p) * 0.05)


def test_shapes_and_groups() -> None:
    enc = LightEncoder(14, 32, 64, **TINY)
    assert (enc.num_ws, enc.w_dim, enc.input_resolution) == (14, 32, 64)
    assert enc.counts == (4, 4, 6)
    ws = enc(torch.rand(3, 3, 64, 64) * 2 - 1)
    assert ws.shape == (3, 14, 32)
    assert LightEncoder(6, 32, 32, **TINY).counts == (4, 2, 0)  # no fine group
    assert LightEncoder(6, 32, 32, **TINY)(torch.zeros(1, 3, 32, 32)).shape == (1, 6, 32)


def test_rejects_wrong_input_and_config() -> None:
    enc = LightEncoder(8, 32, 32, **TINY)
    with pytest.raises(ValueError, match="img has shape"):
        enc(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="power of two"):
        LightEncoder(8, 32, 48)


def test_untrained_encoder_returns_w_avg() -> None:
    enc = LightEncoder(8, 32, 32, **TINY)
    enc.w_avg.copy_(torch.randn(32))
    ws = enc(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert torch.equal(ws, enc.w_avg.expand(2, 8, 32))


def test_ws_are_w_avg_plus_base_plus_deltas() -> None:
    enc = LightEncoder(8, 32, 32, **TINY)
    _perturb(enc)
    enc.w_avg.copy_(torch.randn(32))
    img = torch.rand(2, 3, 32, 32) * 2 - 1
    w, deltas = enc.predict(img)
    assert w.shape == (2, 32) and deltas.shape == (2, 8, 32)
    assert torch.equal(deltas[:, 0], torch.zeros(2, 32))  # e4e: delta_0 = 0
    assert deltas[:, 1:].abs().sum() > 0
    ws = enc(img)
    assert torch.allclose(ws, enc.w_avg + w[:, None] + deltas)
    assert torch.allclose(ws[:, 0], enc.w_avg + w)
    locked = compose_ws(enc.w_avg, w, deltas, active=3)  # progressive training: 3 layers free
    assert torch.allclose(locked[:, :3], ws[:, :3])
    assert torch.allclose(locked[:, 3:], (enc.w_avg + w)[:, None].expand(2, 5, 32))


def test_save_and_load_round_trip(tiny: Path) -> None:
    G, _ = load_generator(tiny)
    enc = LightEncoder(G.num_ws, G.w_dim, 32, **TINY)
    _perturb(enc)
    enc.w_avg.copy_(G.mapping.w_avg)
    config = {"num_ws": G.num_ws, "w_dim": G.w_dim, "input_resolution": 32, **TINY}
    path = save_encoder(tiny, enc, architecture="light", config=config, info={"kimg": 1})
    assert path == tiny / ENCODER_FILE
    entry = json.loads((tiny / "card.json").read_text())["encoder"]
    assert entry["architecture"] == "light" and entry["kimg"] == 1
    loaded = load_encoder(tiny)
    assert isinstance(loaded, LightEncoder) and not loaded.training
    img = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(img), enc.eval()(img))
    assert torch.equal(loaded.w_avg, G.mapping.w_avg)


def test_refuses_an_encoder_for_another_generator(tiny: Path) -> None:
    G, _ = load_generator(tiny)
    for num_ws, w_dim in ((G.num_ws + 2, G.w_dim), (G.num_ws, G.w_dim * 2)):
        enc = LightEncoder(num_ws, w_dim, 32, **TINY)
        with pytest.raises(CheckpointError, match="another generator"):
            save_encoder(tiny, enc, architecture="light", config={}, info={})
    assert not (tiny / ENCODER_FILE).exists()
    assert load_encoder(tiny) is None


def test_load_refuses_a_card_config_for_another_generator(tiny: Path) -> None:
    G, _ = load_generator(tiny)
    enc = LightEncoder(G.num_ws, G.w_dim, 32, **TINY)
    config = {"num_ws": G.num_ws, "w_dim": G.w_dim, "input_resolution": 32, **TINY}
    save_encoder(tiny, enc, architecture="light", config=config, info={})
    card = json.loads((tiny / "card.json").read_text())
    card["encoder"]["config"]["num_ws"] = G.num_ws + 2
    (tiny / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="another generator"):
        load_encoder(tiny)
