"""Seed 001's learned optimizer: the update rule, per-layer weights, training (it learns,
resumes exactly), the file and its refusals, and the engines that use it."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from stylelens.checkpoints.native import load_card, load_generator, save_card
from stylelens.cli import main
from stylelens.errors import CheckpointError, TrainingError
from stylelens.inversion import (
    AdamConfig,
    AdamEngine,
    InversionError,
    LearnedConfig,
    LearnedEngine,
    ProgressiveConfig,
    ProgressiveEngine,
    available_engines,
    make_engine,
    run,
)
from stylelens.inversion.learned import AdamMoments, LearnedOptimizer
from stylelens.inversion.optimizer_store import OPTIMIZER_FILE, load_optimizer, save_optimizer
from stylelens.latents import load_latent
from stylelens.losses.msssim import MSSSIMDistance
from stylelens.networks.preview import FitConfig, PreviewHeads, fit_preview_heads
from stylelens.training.optimizer import (
    OptimizerTrainConfig,
    best_optimizer,
    save_trained_optimizer,
    train_optimizer,
)

# The tiny model (32 px, 8 ws of 32): 4 inversions of 6 steps side by side, 4 test targets.
TINY = OptimizerTrainConfig(
    images=16, batch=4, trajectory=6, lr=3e-3, eval_every=8, eval_targets=4, hidden=16,
    tick_iterations=3, perceptual="ms-ssim",
)  # fmt: skip


@pytest.fixture()
def tiny(models_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "models" / "tiny"
    shutil.copytree(models_dir / "tiny-nvidia", dst)
    return dst


@pytest.fixture()
def target(tiny: Path):
    G, _ = load_generator(tiny)
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(3)))
        return G, G.synthesis(ws)


def _train(model: Path, config: OptimizerTrainConfig, state: Path, *, resume: bool = False):
    G, _ = load_generator(model)
    return G, train_optimizer(G, MSSSIMDistance(), config, state_path=state, resume=resume,
                              progress=False, log=lambda _: None)  # fmt: skip


def test_adam_moments_give_torch_adams_step() -> None:
    x = torch.randn(2, 3, 5, requires_grad=True)
    ref = torch.optim.Adam([x], lr=1.0)
    mine = AdamMoments.zeros_like(x.detach())
    y = x.detach().clone()
    for i in range(4):
        grad = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(i))
        x.grad = grad.clone()
        ref.step()
        y = y + mine.direction(grad)
    torch.testing.assert_close(y, x.detach())
    mine.reset(torch.tensor([True, False]))
    assert mine.t.tolist() == [0, 4] and mine.m[0].abs().sum() == 0 and mine.m[1].abs().sum() > 0


def test_untrained_optimizer_is_adam_at_its_base_rate(target) -> None:
    G, img = target
    g = LearnedOptimizer(G.num_ws, G.w_dim, hidden=8, base_lr=0.01)
    perceptual = MSSSIMDistance()
    adam = run(AdamEngine(G, perceptual=perceptual), img, AdamConfig(steps=5, lr=0.01))
    learned = run(LearnedEngine(G, optimizer=g, perceptual=perceptual), img, LearnedConfig(5))
    torch.testing.assert_close(learned.ws, adam.ws, atol=1e-4, rtol=1e-4)  # moves of 0.05
    assert learned.engine == "learned" and learned.steps == 5


def test_update_multiplies_adams_direction_within_bounds() -> None:
    g = LearnedOptimizer(3, 16, hidden=8, base_lr=0.01, max_factor=10.0)
    with torch.no_grad():
        for w in g.joint_net.weights:
            w.normal_(0, 5.0)  # saturate tanh in both directions
    f, ws = torch.randn(6, 3, 16), torch.randn(6, 3, 16)
    size = g.step_size(f, ws)
    assert size.min() >= 0.001 - 1e-9 and size.max() <= 0.1 + 1e-9
    assert size.max() > 0.05 and size.min() < 0.002  # both ends are reachable
    torch.testing.assert_close(g(f, ws), size * f)
    assert torch.equal(g(torch.zeros_like(f), ws), torch.zeros_like(f))  # no gradient: no move


def test_each_layer_has_its_own_weights() -> None:
    g = LearnedOptimizer(4, 16, hidden=8)
    with torch.no_grad():
        for w in g.joint_net.weights:
            w.normal_(0, 0.3)
    f, ws = torch.randn(2, 4, 16), torch.randn(2, 4, 16)
    before = g.step_size(f, ws)
    with torch.no_grad():  # change every weight of layer 2 only
        for net in (g.direction_net, g.latent_net, g.joint_net):
            for w in net.weights:
                w[2].add_(0.5)
    after = g.step_size(f, ws)
    changed = (after - before).abs().amax(dim=(0, 2))
    assert changed[2] > 1e-3 and torch.all(changed[[0, 1, 3]] == 0)
    # and a layer's step depends on that layer's inputs alone
    f2 = f.clone()
    f2[:, 1] += 1.0
    moved = (g.step_size(f2, ws) - after).abs().amax(dim=(0, 2))
    assert moved[1] > 0 and torch.all(moved[[0, 2, 3]] == 0)


def test_tiny_training_lowers_the_test_loss_and_ships(tiny: Path, tmp_path: Path) -> None:
    G, state = _train(tiny, TINY, tmp_path / "state.pt")
    assert state.images >= 16 and state.iterations > 0
    images = [c[0] for c in state.curve]
    assert images[0] == 0 and images == sorted(images) and images[-1] == state.images
    untrained, best = state.curve[0][1], state.best_score
    assert best < untrained - 0.05  # the learned steps invert the test set better than Adam
    path = save_trained_optimizer(tiny, state, G, MSSSIMDistance(), encoder_used=False)
    assert path == tiny / OPTIMIZER_FILE
    entry = load_card(tiny).model_extra["optimizer"]
    assert entry["config"]["num_ws"] == G.num_ws
    assert entry["best"]["test_log_loss"] == pytest.approx(best, abs=1e-5)
    assert entry["untrained_test_log_loss"] == untrained and entry["images"] == state.images
    loaded = load_optimizer(tiny)
    assert loaded is not None
    for k, v in best_optimizer(state, G).state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_resume_reproduces_the_uninterrupted_run(tiny: Path, tmp_path: Path) -> None:
    _, whole = _train(tiny, TINY, tmp_path / "a.pt")
    _train(tiny, dataclasses.replace(TINY, images=8), tmp_path / "b.pt")
    _, resumed = _train(tiny, TINY, tmp_path / "b.pt", resume=True)
    assert resumed.images == whole.images and resumed.curve == whole.curve
    for k, v in whole.optimizer.state_dict().items():
        assert torch.equal(resumed.optimizer.state_dict()[k], v), k
    with pytest.raises(TrainingError, match="exists"):
        _train(tiny, TINY, tmp_path / "a.pt")
    with pytest.raises(TrainingError, match="other settings: lr"):
        _train(tiny, dataclasses.replace(TINY, lr=1e-2), tmp_path / "a.pt", resume=True)
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(TrainingError, match="not a readable"):
        _train(tiny, TINY, tmp_path / "bad.pt", resume=True)


def test_a_file_for_another_model_is_refused_naming_both(tiny: Path) -> None:
    G, _ = load_generator(tiny)
    other = LearnedOptimizer(G.num_ws + 2, G.w_dim, hidden=4)
    with pytest.raises(CheckpointError, match=r"num_ws=10, w_dim=32.*has num_ws=8, w_dim=32"):
        save_optimizer(tiny, other, {})
    # copied in from another model's folder
    save_file(
        {k: v.contiguous() for k, v in other.state_dict().items()},
        str(tiny / OPTIMIZER_FILE),
        metadata={"config": json.dumps(other.config())},
    )
    with pytest.raises(CheckpointError, match=r"made for a model with num_ws=10.*num_ws=8"):
        load_optimizer(tiny)
    with pytest.raises(InversionError, match=r"num_ws=10, w_dim=32.*num_ws=8, w_dim=32"):
        LearnedEngine(G, optimizer=other, perceptual=None)
    (tiny / OPTIMIZER_FILE).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="not a readable learned optimizer"):
        load_optimizer(tiny)
    (tiny / OPTIMIZER_FILE).unlink()
    assert load_optimizer(tiny) is None


def test_engines_need_their_parts(target) -> None:
    G, _ = target
    heads, g = PreviewHeads(G), LearnedOptimizer(G.num_ws, G.w_dim, hidden=4)
    assert available_engines(None, None) == ["adam", "projector"]
    assert available_engines(heads, None) == ["adam", "projector", "progressive"]
    assert available_engines(None, g) == ["adam", "projector", "learned"]
    assert "progressive-learned" in available_engines(heads, g)
    with pytest.raises(InversionError, match="train-optimizer"):
        make_engine("learned", G, steps=3, perceptual=None, heads=heads)
    with pytest.raises(InversionError, match="fit-preview-heads"):
        make_engine("progressive-learned", G, steps=3, perceptual=None, learned=g)
    with pytest.raises(ValueError, match="W\\+"):
        ProgressiveConfig(optimizer="learned", space="w")
    with pytest.raises(InversionError, match="without a learned optimizer"):
        ProgressiveEngine(G, heads=heads, perceptual=None).start(
            torch.zeros(1, 3, 32, 32), ProgressiveConfig(steps=2, optimizer="learned")
        )


def test_progressive_engine_with_the_learned_optimizer_converges(target) -> None:
    G, img = target
    heads = PreviewHeads(G)
    fit_preview_heads(G, heads, FitConfig(steps=20, batch=4, lr=0.02))
    g = LearnedOptimizer(G.num_ws, G.w_dim, hidden=8, base_lr=0.05)
    engine, config = make_engine(
        "progressive-learned", G, steps=30, perceptual=None, heads=heads, learned=g
    )
    assert engine.name == "progressive-learned"
    reports: list = []
    result = run(engine, img, config, on_step=reports.append)
    assert {r.resolution for r in reports} == {8, 32}  # a coarse stage, then full resolution
    full = [r.losses["total"] for r in reports if r.resolution == 32]
    assert full[-1] < 0.7 * full[0]
    assert result.ws.shape == (1, G.num_ws, G.w_dim) and result.engine == "progressive-learned"


def test_train_then_invert_from_the_command_line(tiny: Path, tmp_path: Path, capsys) -> None:
    from PIL import Image

    models = tiny.parent
    argv = ["train-optimizer", "--model", "tiny", "--models-dir", str(models), "--images", "8",
            "--batch", "4", "--trajectory", "4", "--eval-every", "4", "--perceptual", "ms-ssim",
            "--out-state", str(tmp_path / "s.pt"), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "untrained, i.e. Adam" in out
    assert (tiny / OPTIMIZER_FILE).is_file()
    Image.effect_noise((40, 40), 60).convert("RGB").save(tmp_path / "face.png")
    argv = ["invert", str(tmp_path / "face.png"), "--model", "tiny", "--models-dir",
            str(models), "--engine", "learned", "--steps", "4", "--init", "average",
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 0
    assert load_latent(tmp_path / "out" / "latent.safetensors").ws.shape == (1, 8, 32)
    summary = json.loads((tmp_path / "out" / "result.json").read_text())
    assert summary["engine"] == "learned" and summary["steps"] == 4
    # a model without one says how to get one
    (tiny / OPTIMIZER_FILE).unlink()
    card = load_card(tiny)
    save_card(tiny, card)
    assert main([*argv[:-2], "--out", str(tmp_path / "out2")]) == 2
    assert "train-optimizer" in capsys.readouterr().err


@pytest.mark.parametrize("engine", ["learned", "progressive-learned"])
def test_the_web_app_offers_and_runs_the_learned_engines(tiny: Path, tmp_path: Path, engine):
    from fastapi.testclient import TestClient

    from stylelens.api.app import create_app
    from stylelens.checkpoints.preview_heads import save_preview_heads
    from tests.test_api import new_session, receive_until, settings_for, upload

    G, _ = load_generator(tiny)
    heads = PreviewHeads(G)
    fit_preview_heads(G, heads, FitConfig(steps=5, batch=2, lr=0.02))
    save_preview_heads(tiny, heads, {"steps": 5})
    save_optimizer(tiny, LearnedOptimizer(G.num_ws, G.w_dim, hidden=8), {"source": "test"})
    with TestClient(create_app(settings_for(tiny.parent, tmp_path / "data"))) as client:
        engines = client.get("/api/model").json()["model"]["engines"]
        assert {"learned", "progressive-learned"} <= set(engines)
        sid = new_session(client)
        assert upload(client, sid).status_code == 200
        with client.websocket_connect(f"/api/ws?session={sid}") as ws:
            assert ws.receive_json()["type"] == "hello"
            ws.send_json({"type": "start_inversion", "engine": engine, "steps": 6})
            events, frames = receive_until(ws, "done")
            assert events[-1]["latent"] and events[-1]["metrics"]["psnr"] > 0
            assert frames and frames[-1].step == 6


@pytest.mark.parametrize(
    "bad", [["--images", "0"], ["--lr", "nan"], ["--lr", "inf"], ["--lr", "-1"], ["--batch", "0"]]
)
def test_train_optimizer_refuses_bad_options(tiny: Path, tmp_path: Path, capsys, bad) -> None:
    argv = ["train-optimizer", "--model", "tiny", "--models-dir", str(tiny.parent),
            "--out-state", str(tmp_path / "s.pt"), "--no-progress", *bad]  # fmt: skip
    assert main(argv) == 2
    assert "invalid option" in capsys.readouterr().err
    assert not (tmp_path / "s.pt").exists() and not (tiny / OPTIMIZER_FILE).exists()
