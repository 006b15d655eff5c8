"""Supervision from SynthFaces' parameters: the parameter latent (exactly N(0, 1), pure in the
seed, invertible for the categoricals), the mapping warm start, and the trainer's supervised
phase on tiny networks."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from stylelens.checkpoints import load_card, load_discriminator, load_generator
from stylelens.data.sources import open_dataset
from stylelens.data.synthfaces import SynthFacesDataset, sample_params
from stylelens.data.synthfaces.draw import landmarks
from stylelens.data.synthfaces.latent import PARAM_DIMS, PARAM_NAMES, beta_cdf, param_latent
from stylelens.errors import DatasetError, TrainingError
from stylelens.networks.discriminator import Discriminator, DiscriminatorConfig
from stylelens.networks.stylegan2 import Generator, GeneratorConfig
from stylelens.training.config import TrainConfig
from stylelens.training.export import export_run
from stylelens.training.loop import METRICS_FILE, train, train_step
from stylelens.training.state import _load_discriminator, start_state
from stylelens.training.supervise import (
    detail_mask,
    fit_param_mapping,
    reconstruction_loss,
    supervised_latents,
    write_param_model,
)

SEEDS = range(3000)


@pytest.fixture(scope="module")
def latents() -> np.ndarray:
    return np.stack([param_latent(s) for s in SEEDS])


def test_every_parameter_dimension_is_standard_normal_and_independent(latents: np.ndarray):
    assert latents.shape == (len(SEEDS), PARAM_DIMS) and len(PARAM_NAMES) == PARAM_DIMS
    for i, name in enumerate(PARAM_NAMES):
        column = latents[:, i]
        # KS critical value at n = 3000, alpha = 0.001: 0.036
        assert stats.kstest(column, "norm").statistic < 0.036, name
    corr = np.corrcoef(latents.T) - np.eye(PARAM_DIMS)
    assert np.abs(corr).max() < 0.09  # independent draws: |r| ~ 1/sqrt(3000) each


def test_the_latent_is_pure_in_the_seed_and_keeps_the_parameters_readable(latents: np.ndarray):
    assert np.array_equal(param_latent(17), latents[17])
    assert param_latent(17) is not param_latent(17)  # a copy: callers may write to it
    edges = {"hair_style": (0.3, 0.27, 0.1, 0.17, 0.16), "glasses": (0.6, 0.2, 0.2),
             "beard": (0.6, 0.2, 0.2)}  # fmt: skip
    for seed in range(200):
        p, z = sample_params(seed), latents[seed]
        for name, probs in edges.items():
            u = stats.norm.cdf(z[PARAM_NAMES.index(name)])
            assert np.searchsorted(np.cumsum(probs), u) == getattr(p, name), (seed, name)
        smile = stats.norm.cdf(z[PARAM_NAMES.index("smile")]) * 2 - 1
        assert smile == pytest.approx(p.smile, abs=1e-5)
        yaw = z[PARAM_NAMES.index("yaw")]
        if abs(p.yaw) < 30:
            assert yaw * 13 == pytest.approx(p.yaw, abs=1e-4)
        else:  # clipped at the bound: a draw from the tail beyond it, on its side
            assert abs(yaw) >= 30 / 13 and np.sign(yaw) == np.sign(p.yaw)


def test_beta_cdf_matches_the_incomplete_beta_function():
    for a, b in [(0.9, 1.6), (2.5, 1.2), (1.1, 1.5), (5.0, 5.0)]:
        for x in (0.0, 1e-6, 0.1, 0.37, 0.5, 0.81, 0.999, 1.0):
            assert beta_cdf(x, a, b) == pytest.approx(stats.beta.cdf(x, a, b), abs=1e-10)


def test_dataset_yields_images_with_their_parameter_latents():
    faces = SynthFacesDataset(64, first_seed=5, param_latents=True)
    img, z = faces[2]
    assert img.dtype == torch.uint8 and img.shape == (3, 64, 64)
    assert torch.equal(z, torch.from_numpy(param_latent(7)))
    with pytest.raises(ValueError, match="not both"):
        SynthFacesDataset(64, labels=True, param_latents=True)
    with pytest.raises(DatasetError, match="need --data synthfaces"):
        open_dataset(Path(__file__).parent, 32, param_latents=True)


def test_supervised_latents_and_the_reconstruction_loss():
    pz = torch.randn(3, PARAM_DIMS)
    z = supervised_latents(pz, 64, generator=torch.Generator().manual_seed(0))
    assert z.shape == (3, 64) and torch.equal(z[:, :PARAM_DIMS], pz)
    with pytest.raises(ValueError, match="do not fit"):
        supervised_latents(pz, 16)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert reconstruction_loss(x, x).item() == 0
    y = (x + 0.1).requires_grad_(True)
    loss = reconstruction_loss(y, x)
    assert loss.item() == pytest.approx(0.2, rel=1e-4)  # 0.1 at full and at quarter size
    loss.backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    # At a lower resolution only the local means count: texture with the right mean is free.
    checker = x + 0.2 * (torch.arange(32).view(1, 1, 1, 32) % 2 * 2 - 1)
    assert reconstruction_loss(checker, x, resolution=16).item() == pytest.approx(0, abs=1e-6)
    assert reconstruction_loss(checker, x).item() > 0.1
    assert reconstruction_loss(y, x, resolution=32).item() == pytest.approx(0.1, rel=1e-4)
    with pytest.raises(ValueError, match="supervise_res"):
        TrainConfig(resolution=64, supervise_res=128)
    with pytest.raises(ValueError, match="supervise_res"):
        TrainConfig(resolution=64, supervise_res=48)


def test_the_detail_term_weighs_eyes_mouth_and_chin_at_full_size():
    mask = detail_mask(64)
    assert mask.shape == (64, 64) and mask.max().item() == pytest.approx(1)
    # High where the data draws eyes and mouths, nothing in the corners.
    for x, y in landmarks(sample_params(123)):
        assert mask[int(y * 64), int(x * 64)] > 0.15
    assert mask[:6, :6].max() < 1e-3 and mask[-6:, -6:].max() < 1e-3
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert reconstruction_loss(x, x, resolution=16, detail=5).item() == 0
    # Texture with the right local mean: free at 16 px, not in the detail regions.
    checker = x + 0.2 * (torch.arange(64).view(1, 1, 1, 64) % 2 * 2 - 1)
    assert reconstruction_loss(checker, x, resolution=16).item() == pytest.approx(0, abs=1e-6)
    assert reconstruction_loss(checker, x, resolution=16, detail=5).item() == pytest.approx(1.0)
    # An error in a corner only is outside the mask.
    corner = x.clone()
    corner[..., :6, :6] += 0.5
    plain = reconstruction_loss(corner, x, resolution=16).item()
    assert reconstruction_loss(corner, x, resolution=16, detail=5).item() == pytest.approx(
        plain, abs=1e-4
    )
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="supervise_detail"):
            TrainConfig(supervise_detail=bad)


class _PixelEncoder(torch.nn.Module):
    """A stand-in encoder: a fixed random projection of the 8 x 8 image to w (a function of
    the image alone, like a real encoder)."""

    input_resolution = 8

    def __init__(self, num_ws: int, w_dim: int) -> None:
        super().__init__()
        self.num_ws = num_ws
        self.proj = torch.nn.Linear(3 * 8 * 8, w_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (4 * self.proj(x.flatten(1))).unsqueeze(1).repeat(1, self.num_ws, 1)


TINY_G = GeneratorConfig(z_dim=64, w_dim=32, img_resolution=32, mapping_layers=2,
                         channel_base=256, channel_max=32)  # fmt: skip


def test_mapping_fit_predicts_held_out_encoder_latents_and_is_saved(
    tmp_path: Path, models_dir: Path
):
    torch.manual_seed(0)
    G = Generator(TINY_G)
    synthesis = {k: v.clone() for k, v in G.synthesis.state_dict().items()}
    encoder = _PixelEncoder(G.num_ws, G.w_dim)
    fit = fit_param_mapping(G, encoder, images=400, held_out=100, steps=300, batch=64, lr=0.05)
    assert fit.loss_last < fit.loss_first / 2
    assert fit.r2_held_out > 0.1  # colours of an 8 x 8 image follow the parameters
    for key, value in G.synthesis.state_dict().items():
        assert torch.equal(value, synthesis[key]), key  # only the mapping moves
    assert G.mapping.w_avg.abs().sum() > 0
    source = tmp_path / "src"
    from stylelens.checkpoints.native import ModelCard, SourceInfo, save_model

    card = ModelCard(id="src", generator=TINY_G,
                     source=SourceInfo(format="native", file="g", sha256="0"))  # fmt: skip
    save_model(source, card, Generator(TINY_G).state_dict())
    written = write_param_model(source, G, fit, model_id="src-params", models_dir=tmp_path)
    loaded, _ = load_generator(tmp_path / "src-params")
    for key, value in G.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value.float()), key
    record = load_card(tmp_path / "src-params").model_dump()["param_mapping"]
    assert written.id == "src-params" and record["from"] == "src"
    assert record["r2_held_out"] == fit.r2_held_out and record["param_dims"] == PARAM_DIMS
    with pytest.raises(TrainingError, match="at least 16"):
        fit_param_mapping(G, encoder, images=4, held_out=1)
    for bad in ({"lr": float("nan")}, {"lr": float("inf")}, {"lr": -1.0}, {"steps": 0}):
        with pytest.raises(TrainingError, match="positive number"):
            fit_param_mapping(G, encoder, images=16, held_out=1, **bad)
    with pytest.raises(TrainingError, match="diverged"):  # nothing non-finite is written
        fit_param_mapping(G, encoder, images=16, held_out=1, steps=5, lr=1e30)


SUPERVISED = TrainConfig(
    resolution=64, batch=4, kimg=0.016, z_dim=64, w_dim=32, mapping_layers=2, channel_base=512,
    channel_max=32, tick_kimg=0.008, snapshot_kimg=0.016, device="cpu", num_workers=0,
    r1_interval=2, pl_interval=2, supervise=5.0, supervise_res=16,
)  # fmt: skip


def test_supervised_steps_lower_the_reconstruction_loss(tmp_path: Path):
    state, _ = start_state(SUPERVISED.resolved(), torch.device("cpu"))
    faces = SynthFacesDataset(64, param_latents=True)
    batch = [faces[i] for i in range(4)]
    real = torch.stack([b[0] for b in batch])
    pz = torch.stack([b[1] for b in batch])
    reports = [train_step(state, real, precision="float32", param_z=pz) for _ in range(12)]
    assert all(r.recon is not None and math.isfinite(r.recon) for r in reports)
    assert reports[-1].recon < reports[0].recon  # the same four faces, learned
    with pytest.raises(TrainingError, match="parameter latents"):
        train_step(state, real, precision="float32")
    plain, _ = start_state(dataclasses.replace(SUPERVISED, supervise=0).resolved(),
                           torch.device("cpu"))  # fmt: skip
    assert train_step(plain, real, precision="float32").recon is None


def test_a_supervised_run_logs_its_reconstruction_loss_and_resumes(tmp_path: Path):
    data = open_dataset("synthfaces", 64, param_latents=True)
    train(SUPERVISED, run_dir=tmp_path / "run", data=data, progress=False, log=print)
    train(dataclasses.replace(SUPERVISED, kimg=0.024), run_dir=tmp_path / "run", data=data,
          resume=True, progress=False, log=print)  # fmt: skip
    with (tmp_path / "run" / METRICS_FILE).open() as f:
        rows = list(csv.DictReader(f))
    assert [r["kimg"] for r in rows] == ["0.008", "0.016", "0.024"]
    assert all(math.isfinite(float(r["recon"])) for r in rows)
    with pytest.raises(ValueError, match="supervise"):
        TrainConfig(supervise=-1)


def test_fit_mapping_command_refuses_a_model_without_an_encoder(models_dir: Path):
    import argparse

    from stylelens.cli_args import Commands
    from stylelens.settings import Settings
    from stylelens.training.cli import register

    parser = argparse.ArgumentParser(prog="stylelens")
    register(Commands(parser.add_subparsers(dest="command", required=True)), Settings())
    args = parser.parse_args(["fit-mapping", "tiny-nvidia", "--id", "x",
                              "--models-dir", str(models_dir)])  # fmt: skip
    with pytest.raises(TrainingError, match="no encoder"):
        args.func(args)
    for argv, message in ((["--id", "Bad Id"], "not a valid model id"),
                          (["--id", "tiny-nvidia"], "exists")):  # fmt: skip
        args = parser.parse_args(["fit-mapping", "tiny-nvidia", *argv,
                                  "--models-dir", str(models_dir)])  # fmt: skip
        with pytest.raises(TrainingError, match=message):
            args.func(args)


def test_mapping_lr_factor_gives_the_mapping_its_own_learning_rate():
    cfg = dataclasses.replace(SUPERVISED, mapping_lr_factor=20.0).resolved()
    state, _ = start_state(cfg, torch.device("cpu"))
    groups = state.opt_g.param_groups
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(groups[0]["lr"] * 20)
    mapping = {id(p) for p in state.G.mapping.parameters()}
    assert {id(p) for p in groups[1]["params"]} == mapping
    assert not mapping & {id(p) for p in groups[0]["params"]}
    plain, _ = start_state(SUPERVISED.resolved(), torch.device("cpu"))
    assert len(plain.opt_g.param_groups) == 1  # the default keeps NVIDIA's single group
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="mapping_lr_factor"):
            TrainConfig(mapping_lr_factor=bad)
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="supervise"):
            TrainConfig(supervise=bad)


# ----------------------------------------------------------------------------
# The projection discriminator (TrainConfig.condition_d)


def test_a_projection_discriminator_starts_as_the_unconditional_one_and_reads_its_condition():
    torch.manual_seed(0)
    plain_cfg = DiscriminatorConfig(img_resolution=16, channel_base=256, channel_max=16)
    plain = Discriminator(plain_cfg)
    cond = Discriminator(dataclasses.replace(plain_cfg, c_dim=5))
    assert _load_discriminator(cond, plain) == [
        "D sees 5 condition values; their projection starts at zero"
    ]
    img, c = torch.randn(4, 3, 16, 16), torch.randn(4, 5)
    torch.testing.assert_close(cond(img, c), plain(img))  # the same logits until it trains
    cond(img, c).sum().backward()
    assert cond.embed.weight.grad is not None and cond.embed.weight.grad.abs().sum() > 0
    with torch.no_grad():
        cond.embed.weight.normal_()
    assert not torch.allclose(cond(img, c), cond(img, -c))
    assert _load_discriminator(plain, cond) == ["the model's D was conditional; its projection "
                                                "is dropped"]  # fmt: skip
    for net, args, message in ((cond, (img,), r"a condition \[N, 5\]"),
                               (plain, (img, c), "no condition"),
                               (cond, (img, c[:, :4]), "condition")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            net(*args)
    with pytest.raises(ValueError, match="c_dim"):
        DiscriminatorConfig(img_resolution=16, c_dim=-1)


def test_a_projection_discriminator_learns_which_condition_belongs_to_an_image():
    # Images whose colour is set by the condition's first entry; D sees each with its own
    # condition as real and with another image's as fake, and learns to tell them apart.
    torch.manual_seed(0)
    D = Discriminator(DiscriminatorConfig(img_resolution=8, channel_base=128, channel_max=16,
                                          c_dim=3))  # fmt: skip
    opt = torch.optim.Adam(D.parameters(), lr=0.01, betas=(0.0, 0.99))

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        c = torch.randn(n, 3)
        img = torch.tanh(c[:, :1, None, None]).expand(n, 3, 8, 8) + 0.05 * torch.randn(n, 3, 8, 8)
        return img, c

    for _ in range(150):
        img, c = draw(16)
        loss = torch.nn.functional.softplus(-D(img, c)).mean()
        loss = loss + torch.nn.functional.softplus(D(img, c.roll(1, dims=0))).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    img, c = draw(256)
    other = c.roll(1, dims=0)
    with torch.no_grad():
        matched, swapped = D(img, c)[:, 0], D(img, other)[:, 0]
    # The projection is bilinear in (features, condition): it tells a light image shown with
    # a dark one's condition (the sign of the first entry differs), not shades of one side.
    apart = (c[:, 0] * other[:, 0] < 0) & (c[:, 0].abs() > 0.3) & (other[:, 0].abs() > 0.3)
    assert apart.sum() > 40 and (matched > swapped)[apart].float().mean() > 0.95


CONDITIONED = dataclasses.replace(SUPERVISED, condition_d=True, style_mixing_prob=0.0)


def test_a_conditioned_run_trains_exports_and_hands_its_discriminator_on(tmp_path: Path):
    data = open_dataset("synthfaces", 64, param_latents=True)
    state = train(CONDITIONED, run_dir=tmp_path / "run", data=data, progress=False, log=print)
    assert state.D.config.c_dim == PARAM_DIMS
    assert state.D.embed.weight.abs().sum() > 0  # the projection trained
    with (tmp_path / "run" / METRICS_FILE).open() as f:
        rows = list(csv.DictReader(f))
    assert rows and all(math.isfinite(float(r["loss_d"])) for r in rows)
    with pytest.raises(TrainingError, match="parameter latents"):
        train_step(state, torch.zeros(4, 3, 64, 64, dtype=torch.uint8), precision="float32")

    card = export_run(tmp_path / "run", model_id="cond", models_dir=tmp_path / "models")
    assert card.discriminator is not None and card.discriminator.c_dim == PARAM_DIMS
    training = (card.model_extra or {})["training"]
    assert training["style_mixing_prob"] == 0.0 and training["condition_mismatch"] == 0.0
    D, _ = load_discriminator(tmp_path / "models" / "cond")
    torch.testing.assert_close(D.embed.weight, state.D.embed.weight)
    # continuing without the condition keeps D's image layers and drops the projection
    plain = dataclasses.replace(SUPERVISED, init=str(tmp_path / "models" / "cond")).resolved()
    plain_state, notes = start_state(plain, torch.device("cpu"))
    assert "the model's D was conditional; its projection is dropped" in notes
    assert not hasattr(plain_state.D, "embed")
    torch.testing.assert_close(plain_state.D.b4.out.weight, state.D.b4.out.weight)
    # and a conditional model continues as one, its projection kept
    again = dataclasses.replace(CONDITIONED, init=str(tmp_path / "models" / "cond")).resolved()
    assert start_state(again, torch.device("cpu"))[1] == [f"G and D from {again.init}"]


def test_condition_d_needs_mixing_off_and_synthfaces():
    with pytest.raises(ValueError, match="mixing"):
        TrainConfig(condition_d=True)
    with pytest.raises(ValueError, match="z_dim"):
        TrainConfig(condition_d=True, style_mixing_prob=0, z_dim=PARAM_DIMS - 1)
    assert TrainConfig(condition_d=True, style_mixing_prob=0).resolved().discriminator.c_dim == (
        PARAM_DIMS
    )
    assert TrainConfig().resolved().discriminator.c_dim == 0


def test_condition_mismatch_shows_d_the_reals_with_the_next_faces_parameters():
    faces = SynthFacesDataset(64, param_latents=True)
    real = torch.stack([faces[i][0] for i in range(4)])
    pz = torch.stack([faces[i][1] for i in range(4)]).float()
    seen: dict[float, list[torch.Tensor]] = {}
    for weight in (0.0, 1.0):
        cfg = dataclasses.replace(CONDITIONED, condition_mismatch=weight, supervise=0.0)
        state, _ = start_state(cfg.resolved(), torch.device("cpu"))
        calls: list[torch.Tensor] = []
        D = state.fast_D
        state.fast_D = lambda img, c, D=D, calls=calls: calls.append(c) or D(img, c)
        train_step(state, real, precision="float32", param_z=pz)
        seen[weight] = calls
    # G main (fakes), D main (fakes, reals): the mismatch adds the reals with rolled parameters
    assert len(seen[1.0]) == len(seen[0.0]) + 1
    torch.testing.assert_close(seen[1.0][2], pz)
    torch.testing.assert_close(seen[1.0][3], pz.roll(1, dims=0))
    with pytest.raises(ValueError, match="condition_mismatch needs condition_d"):
        TrainConfig(condition_mismatch=1.0)
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="condition_mismatch"):
            dataclasses.replace(CONDITIONED, condition_mismatch=bad)
