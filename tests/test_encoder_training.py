"""Training the light encoder on the tiny model: it learns, resumes exactly, and ships."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from stylelens.checkpoints.native import load_generator
from stylelens.cli import main
from stylelens.encoders.light import LightEncoder
from stylelens.encoders.store import load_encoder
from stylelens.errors import TrainingError
from stylelens.losses.msssim import MSSSIMDistance
from stylelens.training.encoder import (
    EncoderTrainConfig,
    active_deltas,
    delta_regulariser,
    sample_pairs,
    save_trained_encoder,
    start_state,
    train_encoder,
)

# 32 px model: a 32 px encoder of a few channels, 4 images a step (one drawn by SynthFaces).
TINY = EncoderTrainConfig(
    kimg=0.032,
    batch=4,
    input_resolution=32,
    channels=(8, 8, 16, 16),
    pyramid_channels=16,
    lr=2e-3,
    unlock_kimg=0.008,
    tick_steps=4,
)


@pytest.fixture()
def tiny(models_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "tiny"
    shutil.copytree(models_dir / "tiny-nvidia", dst)
    return dst


def _train(model: Path, config: EncoderTrainConfig, state_path: Path, *, resume: bool = False):
    G, _ = load_generator(model)
    return train_encoder(G, MSSSIMDistance(), config, state_path=state_path, resume=resume,
                         progress=False, log=lambda _: None)  # fmt: skip


def test_progressive_unlocking_and_delta_regulariser() -> None:
    cfg = dataclasses.replace(TINY, unlock_kimg=0.1)
    assert [active_deltas(cfg, n, 8) for n in (0, 99, 100, 350, 10_000)] == [1, 1, 2, 4, 8]
    assert active_deltas(dataclasses.replace(cfg, unlock_kimg=None), 0, 8) == 8
    deltas = torch.zeros(2, 3, 4)
    deltas[0, 1, 0], deltas[1, 2, :2] = 3.0, 4.0  # norms 3 and sqrt(32)
    assert torch.isclose(delta_regulariser(deltas), torch.tensor((3 + 32**0.5) / 2))


def test_sampled_pairs_are_truncated_per_sample(tiny: Path) -> None:
    G, _ = load_generator(tiny)
    gen = torch.Generator().manual_seed(0)
    ws, img = sample_pairs(G, 3, gen, (0.0, 0.0))
    assert torch.allclose(ws, G.mapping.w_avg.expand(3, G.num_ws, G.w_dim))
    assert img.shape == (3, 3, 32, 32)


def _eval_loss(G, encoder: LightEncoder) -> float:
    """Latent + pixel error on 8 fixed pairs the training never drew."""
    with torch.no_grad():
        ws, img = sample_pairs(G, 8, torch.Generator().manual_seed(123), (0.5, 1.0))
        ws_hat = encoder(img)
        recon = G.synthesis(ws_hat, noise_mode="const")
        return float((ws_hat - ws).square().mean() + (recon - img).square().mean())


def test_a_few_steps_reduce_the_loss(tiny: Path, tmp_path: Path) -> None:
    G, _ = load_generator(tiny)
    cfg = dataclasses.replace(TINY, kimg=0.16)  # 40 steps
    state = _train(tiny, cfg, tmp_path / "state.pt")
    assert state.step == 40 and state.cur_nimg == 160 and state.real_position == 40
    untrained = LightEncoder(**cfg.encoder_config(G))
    untrained.w_avg.copy_(G.mapping.w_avg)
    before, after = _eval_loss(G, untrained), _eval_loss(G, state.encoder.eval())
    assert after < 0.8 * before, (before, after)
    assert state.last["active"] == G.num_ws  # every delta unlocked by 28 images


def test_resume_continues_bit_for_bit(tiny: Path, tmp_path: Path) -> None:
    full = _train(tiny, TINY, tmp_path / "full.pt")  # 8 steps
    _train(tiny, dataclasses.replace(TINY, kimg=0.016), tmp_path / "split.pt")
    torch.manual_seed(999)  # whatever the process did in between
    resumed = _train(tiny, TINY, tmp_path / "split.pt", resume=True)
    assert (resumed.step, resumed.cur_nimg, resumed.real_position) == (8, 32, 8)
    a, b = full.encoder.state_dict(), resumed.encoder.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = full.opt.state_dict()["state"], resumed.opt.state_dict()["state"]
    assert all(torch.equal(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"]) for k in sa)
    assert full.last == resumed.last
    assert torch.equal(full.latents.get_state(), resumed.latents.get_state())


def test_resume_refuses_other_settings_and_new_runs_refuse_to_overwrite(
    tiny: Path, tmp_path: Path
) -> None:
    path = tmp_path / "state.pt"
    _train(tiny, dataclasses.replace(TINY, kimg=0.004), path)
    with pytest.raises(TrainingError, match="exists; continue it with --resume"):
        _train(tiny, TINY, path)
    with pytest.raises(TrainingError, match=r"lr: 0\.002 -> 0\.001"):
        _train(tiny, dataclasses.replace(TINY, lr=1e-3), path, resume=True)
    with pytest.raises(TrainingError, match="not found"):
        _train(tiny, TINY, tmp_path / "none.pt", resume=True)


def test_the_written_encoder_loads_with_its_training_record(tiny: Path, tmp_path: Path) -> None:
    G, _ = load_generator(tiny)
    state = _train(tiny, dataclasses.replace(TINY, kimg=0.008), tmp_path / "state.pt")
    save_trained_encoder(tiny, state, MSSSIMDistance(), G)
    entry = json.loads((tiny / "card.json").read_text())["encoder"]
    assert entry["architecture"] == "light" and entry["kimg"] == 0.008
    assert entry["perceptual"] == "ms-ssim" and set(entry["losses"]) >= {"latent", "pixel"}
    assert entry["machine"] and entry["seconds"] >= 0 and entry["training"]["batch"] == 4
    loaded = load_encoder(tiny)
    assert isinstance(loaded, LightEncoder)
    img = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(img), state.encoder.eval()(img))


def test_train_encoder_command(models_dir: Path, tmp_path: Path, capsys) -> None:
    root = tmp_path / "models"
    shutil.copytree(models_dir / "tiny-nvidia", root / "tiny")
    state = tmp_path / "enc.pt"
    args = ["train-encoder", "--models-dir", str(root), "--model", "tiny", "--batch", "2",
            "--perceptual", "ms-ssim", "--out-state", str(state), "--no-progress",
            "--device", "cpu"]  # fmt: skip
    assert main([*args, "--kimg", "0.002"]) == 0
    assert "wrote" in capsys.readouterr().out and load_encoder(root / "tiny") is not None
    assert main([*args, "--kimg", "0.004", "--resume"]) == 0
    assert json.loads((root / "tiny" / "card.json").read_text())["encoder"]["steps"] == 2
    assert main([*args, "--kimg", "0.004"]) == 2  # the state exists: refused, exit status 2


def test_warm_start_continues_the_installed_encoder(models_dir: Path, tmp_path: Path,
                                                    capsys) -> None:  # fmt: skip
    root = tmp_path / "models"
    shutil.copytree(models_dir / "tiny-nvidia", root / "tiny")
    args = ["train-encoder", "--models-dir", str(root), "--model", "tiny", "--batch", "2",
            "--perceptual", "ms-ssim", "--no-progress", "--device", "cpu"]  # fmt: skip
    # nothing installed yet: refused, naming the model
    assert main([*args, "--out-state", str(tmp_path / "w0.pt"), "--warm-start"]) == 2
    assert "no light encoder installed" in capsys.readouterr().err
    assert main([*args, "--out-state", str(tmp_path / "a.pt"), "--kimg", "0.004"]) == 0
    first = load_encoder(root / "tiny")
    assert first is not None
    # the warm start copies the installed weights (and frees every delta at once)
    G, _ = load_generator(root / "tiny")
    config = dataclasses.replace(
        EncoderTrainConfig(), warm_start=True, unlock_kimg=None, kimg=0.002, batch=2
    )
    state = start_state(config, G, first)
    for name, value in first.state_dict().items():
        assert torch.equal(state.encoder.state_dict()[name], value), name
    with pytest.raises(ValueError, match="unlock_kimg"):
        EncoderTrainConfig(warm_start=True)
    warm = [*args, "--out-state", str(tmp_path / "b.pt"), "--kimg", "0.002", "--warm-start"]
    assert main(warm) == 0
    entry = json.loads((root / "tiny" / "card.json").read_text())["encoder"]
    assert entry["training"]["warm_start"] is True and entry["kimg"] == 0.002
    assert [r["kimg"] for r in entry["earlier_runs"]] == [0.004]
    assert entry["kimg_total"] == 0.006
    assert load_encoder(root / "tiny") is not None
    # a second warm start keeps the whole chain
    again = [*args, "--out-state", str(tmp_path / "c.pt"), "--kimg", "0.002", "--warm-start"]
    assert main(again) == 0
    entry = json.loads((root / "tiny" / "card.json").read_text())["encoder"]
    assert [r["kimg"] for r in entry["earlier_runs"]] == [0.004, 0.002]
    assert entry["kimg_total"] == 0.008
    # resuming a warm-started run without --warm-start is another config: refused
    assert main([*args, "--out-state", str(tmp_path / "c.pt"), "--resume"]) == 2
    assert "warm_start" in capsys.readouterr().err
