from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stylelens.checkpoints.convert import convert_checkpoint
from tests.formats import tiny_weights, write_nvidia_pkl, write_rosinality_pt


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def weights() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Random NVIDIA-named (G, D) weights for the tiny 32x32 architecture."""
    return tiny_weights(seed=0)


@pytest.fixture(scope="session")
def nvidia_pkl(tmp_path_factory: pytest.TempPathFactory, weights) -> Path:
    g, d = weights
    return write_nvidia_pkl(tmp_path_factory.mktemp("pkl") / "network-snapshot-000100.pkl", g, d)


@pytest.fixture(scope="session")
def rosinality_pt(tmp_path_factory: pytest.TempPathFactory, weights) -> Path:
    g, d = weights
    return write_rosinality_pt(tmp_path_factory.mktemp("pt") / "550000.pt", g, d, layout="convert")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory, nvidia_pkl: Path, rosinality_pt) -> Path:
    """A models directory with the same tiny weights converted from both formats."""
    root = tmp_path_factory.mktemp("models")
    convert_checkpoint(nvidia_pkl, model_id="tiny-nvidia", models_dir=root)
    convert_checkpoint(rosinality_pt, model_id="tiny-rosinality", models_dir=root)
    return root
