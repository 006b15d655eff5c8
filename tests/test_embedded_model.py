"""The embedded default model, ``models/synthfaces-256``: shipped, small, documented by its
card, and the source of the committed sample grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylelens.checkpoints import load_card, load_discriminator
from stylelens.cli import main
from stylelens.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
MODEL = MODELS / "synthfaces-256"


def test_models_folder_stays_under_60_mb():
    size = sum(p.stat().st_size for p in MODELS.rglob("*") if p.is_file())
    assert size < 60e6, f"models/ holds {size / 1e6:.1f} MB"


def test_the_default_model_is_the_embedded_256px_one():
    assert Settings().default_model == MODEL.name
    card = load_card(MODEL)
    g = card.generator
    assert (g.img_resolution, g.w_dim, g.z_dim, card.num_ws) == (256, 512, 512, 14)
    D, _ = load_discriminator(MODEL)
    assert D.img_resolution == 256


def _find(record: object, key: str) -> dict | None:
    """The first ``key`` entry in a nested card record (depth first), or None."""
    if isinstance(record, dict):
        if isinstance(record.get(key), dict):
            return record[key]
        for value in record.values():
            found = _find(value, key)
            if found is not None:
                return found
    return None


def test_card_records_the_training_and_the_measured_quality():
    card = load_card(MODEL).model_dump()
    training = card["training"]
    assert training["data"]["source"] == "synthfaces" and training["kimg"] > 0
    assert training["seconds"] > 0 and training["hardware"] and training["batch"] > 0
    stage1 = _find(training, "grown_from")  # the 64 px stage, however deep the history
    assert stage1 is not None and stage1["resolution"] == 64 and stage1["training"]["kimg"] > 0
    evaluation = card["evaluation"]
    assert evaluation["fad"] > 0 and evaluation["fad_floor"] > 0 and evaluation["n"] >= 1000
    assert card["storage"]["dtype"] == "float16"
    assert card["storage"]["max_render_change_255"] <= 1


def test_render_reproduces_the_committed_sample_grid(tmp_path: Path):
    """The grid in the model directory is what ``render --seeds 0-63`` gives (first row)."""
    out = tmp_path / "faces"
    assert (
        main(["render", "--models-dir", str(MODELS), "--seeds", "0-3", "--outdir", str(out)]) == 0
    )
    faces = [np.asarray(Image.open(out / f"seed{s:04d}.png"), dtype=np.int16) for s in range(4)]
    grid = np.asarray(Image.open(MODEL / "samples.png").convert("RGB"), dtype=np.int16)
    assert grid.shape == (8 * 256, 8 * 256, 3)
    for s, face in enumerate(faces):
        assert face.shape == (256, 256, 3) and face.std() > 20  # a picture, not a flat colour
        tile = grid[:256, s * 256 : (s + 1) * 256]
        diff = np.abs(face - tile)
        assert diff.mean() < 0.5 and diff.max() <= 4, f"seed {s} differs from samples.png"
    for a in range(4):
        for b in range(a + 1, 4):
            rms = np.sqrt(((faces[a] - faces[b]) ** 2).mean())
            assert rms > 15, f"seeds {a} and {b} look alike (RMS {rms:.1f})"


@pytest.mark.parametrize(
    "name", ["card.json", "generator.safetensors", "discriminator.safetensors"]
)
def test_model_files_are_present(name: str):
    assert (MODEL / name).is_file()


def test_the_shipped_learned_optimizer_fits_and_was_trained():
    from stylelens.checkpoints import load_generator
    from stylelens.inversion import LearnedEngine
    from stylelens.inversion.optimizer_store import load_optimizer

    g = load_optimizer(MODEL)
    assert g is not None and (g.num_ws, g.w_dim) == (14, 512)
    entry = load_card(MODEL).model_dump()["optimizer"]
    assert entry["source"] == "stylelens train-optimizer" and entry["images"] >= 100
    assert entry["machine"] and entry["seconds"] > 0 and len(entry["curve"]) >= 2
    # the best on the test set beats the untrained optimizer (which is Adam at lr 0.01)
    assert entry["best"]["test_log_loss"] < entry["untrained_test_log_loss"]
    G, _ = load_generator(MODEL)
    LearnedEngine(G, optimizer=g, perceptual=None)  # fits the model
