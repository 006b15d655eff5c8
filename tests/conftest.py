from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="module")
def app_models(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The web app's models: the tiny one with preview heads and a smile direction, and a
    second without either."""
    return build_app_models(tmp_path_factory.mktemp("app-models"), models_dir)


def build_app_models(root: Path, models_dir: Path) -> Path:
    from stylelens.checkpoints.native import load_generator
    from stylelens.checkpoints.preview_heads import save_preview_heads
    from stylelens.directions.core import Direction
    from stylelens.directions.store import save_directions
    from stylelens.networks.preview import FitConfig, PreviewHeads, fit_preview_heads

    torch.manual_seed(0)
    shutil.copytree(models_dir / "tiny-nvidia", root / "tiny")
    G, _ = load_generator(root / "tiny")
    heads = PreviewHeads(G)
    fit_preview_heads(G, heads, FitConfig(steps=10, batch=2, lr=0.02))
    save_preview_heads(root / "tiny", heads, {"steps": 10})
    v = torch.randn(G.w_dim, generator=torch.Generator().manual_seed(3))
    save_directions(root / "tiny", [Direction("smile", v / v.norm(), unit=2.0)])
    shutil.copytree(models_dir / "tiny-rosinality", root / "tiny-b")  # no heads, no directions
    return root


@pytest.fixture(scope="session")
def ray_cluster(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A local Ray instance (2 CPUs) serving two replicas of the tiny app models, for the whole
    test session (started by the first test that asks; tests/cluster.py)."""
    pytest.importorskip("ray.serve", reason="the cluster extra is not installed")
    from tests.cluster import start_cluster

    models = build_app_models(tmp_path_factory.mktemp("cluster-models"), models_dir)
    cluster = start_cluster(models, tmp_path_factory.mktemp("cluster-data"))
    try:
        yield cluster
    finally:
        cluster.shutdown()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests that use the Ray cluster run last, together: it starts once (ray_cluster is
    session-scoped) and its processes do not share the CPU with the other tests."""

    def uses_ray(item: pytest.Item) -> bool:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("client") if callspec is not None else None
        return "ray_cluster" in getattr(item, "fixturenames", ()) or backend == "cluster"

    items[:] = [i for i in items if not uses_ray(i)] + [i for i in items if uses_ray(i)]
