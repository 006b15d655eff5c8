"""The attribute network, FAD and eval-model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stylelens.checkpoints.attribute_net import (
    AttributeNetCard,
    load_attribute_net,
    save_attribute_net,
)
from stylelens.checkpoints.native import ModelCard, SourceInfo, list_models, load_card, save_model
from stylelens.cli import main
from stylelens.data.synthfaces import ATTRIBUTES
from stylelens.data.synthfaces.dataset import render_arrays
from stylelens.errors import CheckpointError
from stylelens.evaluation.fad import (
    fad,
    frechet_distance,
    ks_statistic,
    near_duplicates,
    nearest_neighbour_distances,
    total_variation,
)
from stylelens.networks.attributes import AttributeNet, AttributeNetConfig, attribute_loss
from stylelens.networks.stylegan2 import Generator, GeneratorConfig
from stylelens.training.attributes import AttributeTrainConfig, evaluate, train_attribute_net
from tests.formats import random_state

TINY_NET = AttributeNetConfig(resolution=64, widths=(16, 32, 48, 64), feature_dim=64)


def test_near_duplicates_flag_repeated_samples() -> None:
    rng = np.random.default_rng(0)
    real, varied = rng.standard_normal((200, 8)), rng.standard_normal((200, 8))
    d = nearest_neighbour_distances(real[:3])
    brute = [min(np.linalg.norm(real[i] - real[j]) for j in range(3) if j != i) for i in range(3)]
    assert d == pytest.approx(brute)
    collapsed = np.repeat(varied[:20], 10, axis=0) + 1e-3 * rng.standard_normal((200, 8))
    assert near_duplicates(varied, real)["fraction_below_real_min"] < 0.05
    report = near_duplicates(collapsed, real)
    assert report["fraction_below_real_min"] == 1.0 and report["generated_min"] < 0.01


def test_fad_is_zero_for_identical_sets_and_grows_with_perturbation() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2000, 16))
    assert fad(a, a) == pytest.approx(0.0, abs=1e-8)
    distances = [fad(a, a + s * rng.standard_normal(a.shape) + s) for s in (0.05, 0.2, 0.8)]
    assert 0 < distances[0] < distances[1] < distances[2]


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians() -> None:
    mu1, mu2 = np.array([0.0, 1.0]), np.array([2.0, -1.0])
    s1, s2 = np.diag([1.0, 4.0]), np.diag([9.0, 1.0])
    # sum (m1 - m2)^2 + (sqrt(v1) - sqrt(v2))^2
    expected = 4 + 4 + (1 - 3) ** 2 + (2 - 1) ** 2
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected)


def test_coverage_statistics() -> None:
    a = np.linspace(0, 1, 100)
    assert ks_statistic(a, a) == 0.0
    assert ks_statistic(a, a + 2) == 1.0
    assert total_variation(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 0]), 3) == 0.5


def test_decode_and_loss_agree_on_natural_units() -> None:
    net = AttributeNet(TINY_NET)
    specs = TINY_NET.specs
    labels = torch.tensor([[a.high if a.kind == "continuous" else 1.0 for a in specs]])
    raw = []
    for a in specs:
        raw += [-9.0, 9.0, *([-9.0] * (len(a.classes) - 2))] if a.kind == "categorical" else [1.0]
    raw_t = torch.tensor([raw])
    assert torch.allclose(net.decode(raw_t), labels)
    loss, terms = attribute_loss(raw_t, labels, specs)
    assert set(terms) == {a.name for a in ATTRIBUTES} and float(loss) < 1e-3


@pytest.fixture(scope="module")
def tiny_faces() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = render_arrays(first_seed=0, n=192, resolution=64, workers=1, progress=False)
    return torch.from_numpy(images), torch.from_numpy(labels)


def test_the_attribute_network_learns_from_a_tiny_set(tiny_faces) -> None:
    config = AttributeTrainConfig(epochs=12, batch=32, lr=3e-3)
    net, log = train_attribute_net(tiny_faces, config=config, net_config=TINY_NET, progress=False)
    assert np.isfinite([row["loss"] for row in log]).all()
    assert log[-1]["loss"] < 0.6 * log[0]["loss"]
    metrics = evaluate(net, *tiny_faces)
    assert set(metrics) == {a.name for a in ATTRIBUTES}
    assert metrics["background_hue"]["r2"] > 0.5  # the easiest label, on the training set


def test_attribute_net_round_trips_and_is_not_a_generator(tmp_path: Path, tiny_faces) -> None:
    net = AttributeNet(TINY_NET).eval()
    card = AttributeNetCard(id="attrs", config=TINY_NET, metrics={"age": {"r2": 0.5}})
    save_attribute_net(tmp_path / "attrs", card, net)
    loaded, loaded_card = load_attribute_net(tmp_path / "attrs")
    x = tiny_faces[0][:4].float() / 127.5 - 1
    with torch.no_grad():
        assert torch.allclose(loaded.features(x), net.features(x), atol=0.05, rtol=0.01)
    assert loaded_card.metrics == card.metrics
    assert list_models(tmp_path) == []
    with pytest.raises(CheckpointError, match="attribute-net, not a generator"):
        load_card(tmp_path / "attrs")
    with pytest.raises(CheckpointError, match="train-attributes"):
        load_attribute_net(tmp_path / "missing")


def test_eval_model_reports_fad_floor_and_coverage(tmp_path: Path, capsys) -> None:
    g_config = GeneratorConfig(
        z_dim=16, w_dim=16, img_resolution=64, mapping_layers=2, channel_base=256, channel_max=16
    )
    card = ModelCard(id="tiny64", generator=g_config, source=SourceInfo(format="native"))
    save_model(tmp_path / "tiny64", card, random_state(Generator(g_config)))
    net = AttributeNet(TINY_NET).eval()
    save_attribute_net(tmp_path / "attrs", AttributeNetCard(id="attrs", config=TINY_NET), net)
    report_path = tmp_path / "report.json"
    args = ["eval-model", "--model", "tiny64", "--models-dir", str(tmp_path)]
    args += ["--attributes", "attrs", "--n", "48", "--workers", "1", "--json", str(report_path)]
    assert main(args) == 0
    report = json.loads(report_path.read_text())
    assert report["fad_floor"] > 0 and report["fad"] > 0
    assert set(report["coverage"]) == {a.name for a in ATTRIBUTES}
    assert "floor (real vs real)" in capsys.readouterr().out
    assert set(report["near_duplicates"]) >= {"generated_min", "real_min"}
    assert "evaluation" not in load_card(tmp_path / "tiny64").model_dump()
    assert main([*args, "--record"]) == 0
    assert load_card(tmp_path / "tiny64").model_dump()["evaluation"]["n"] == 48
    assert main([*args[:5], "--attributes", "nope"]) == 2
    assert "train-attributes" in capsys.readouterr().err
    assert main([*args[:5], "--attributes", "attrs", "--n", "1"]) == 2
    assert "--n >= 2" in capsys.readouterr().err


def test_train_attributes_cli_writes_a_model_and_refuses_bad_input(tmp_path: Path, capsys) -> None:
    base = ["train-attributes", "--models-dir", str(tmp_path), "--workers", "1"]
    small = ["--n", "64", "--batch", "32", "--val", "8", "--epochs", "1", "--precision", "float32"]
    assert main([*base, *small]) == 0
    _, card = load_attribute_net(tmp_path / "attributes-synthfaces")
    assert set(card.metrics) == {a.name for a in ATTRIBUTES} and card.training["epochs"] == 1
    assert main([*base, *small]) == 2  # exists, no --overwrite
    assert "--overwrite" in capsys.readouterr().err
    for bad, message in [
        (["--id", "Bad Id"], "lowercase"),
        (["--n", "8", "--batch", "32"], "--n >= --batch"),
        (["--res", "100"], "divisible"),
    ]:
        assert main([*base, "--id", "other", *bad]) == 2
        assert message in capsys.readouterr().err
