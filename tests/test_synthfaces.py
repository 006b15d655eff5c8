"""SynthFaces: determinism, documented label ranges, attributes that really show, datasets."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from stylelens.cli import main
from stylelens.data.synthfaces import (
    ATTRIBUTES,
    SynthFacesDataset,
    SynthFacesStream,
    render,
    render_face,
    sample_params,
    write_folder,
)


def test_same_seed_same_face_and_labels() -> None:
    a, la = render_face(7, 64)
    b, lb = render_face(7, 64)
    assert a.dtype == np.uint8 and a.shape == (64, 64, 3)
    assert np.array_equal(a, b) and la == lb
    c, _ = render_face(8, 64)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 5


def test_labels_lie_in_their_documented_ranges_and_every_class_occurs() -> None:
    assert len(ATTRIBUTES) >= 14
    labels = [sample_params(s).labels() for s in range(400)]
    for attr in ATTRIBUTES:
        values = np.array([lab[attr.name] for lab in labels])
        if attr.kind == "continuous":
            assert values.min() >= attr.low and values.max() <= attr.high, attr.name
            assert values.std() > 0.1 * (attr.high - attr.low), f"{attr.name} barely varies"
        else:
            assert set(values.tolist()) == set(range(len(attr.classes))), attr.name


def test_a_seed_is_the_same_face_at_every_resolution() -> None:
    small, _ = render_face(3, 64)
    big, _ = render_face(3, 256)
    down = np.asarray(Image.fromarray(big).resize((64, 64), Image.Resampling.BOX), dtype=float)
    assert np.abs(down - small).mean() < 6  # same face; only edge pixels differ
    other, _ = render_face(4, 64)
    assert np.abs(down - other).mean() > 4 * np.abs(down - small).mean()


def test_analytic_antialiasing_matches_supersampling() -> None:
    p = sample_params(11)
    plain = render(p, 64).astype(float)
    supersampled = render(p, 64, supersample=4).astype(float)
    assert np.abs(plain - supersampled).mean() < 3.0


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [
        ("yaw", -30.0, 30.0),
        ("pitch", -15.0, 15.0),
        ("roll", -15.0, 15.0),
        ("smile", -1.0, 1.0),
        ("mouth_open", 0.0, 1.0),
        ("eye_open", 0.0, 1.0),
        ("age", 0.0, 1.0),
        ("skin_tone", 0.0, 1.0),
        ("hair_lightness", 0.0, 1.0),
        ("hair_hue", 0.0, 1.0),
        ("face_width", 0.0, 1.0),
        ("light", -1.0, 1.0),
        ("background_hue", 0.0, 1.0),
        ("hair_style", 0, 2),
        ("glasses", 0, 2),
        ("beard", 0, 2),
    ],
)
def test_every_attribute_changes_the_image(name: str, low: float, high: float) -> None:
    # A light-haired, mid-age, mid-lit face so that every attribute has something to change.
    base = dataclasses.replace(sample_params(0), hair_lightness=0.6, age=0.8, hair_style=0)
    a = render(dataclasses.replace(base, **{name: low}), 128).astype(float)
    b = render(dataclasses.replace(base, **{name: high}), 128).astype(float)
    changed = (np.abs(a - b).max(axis=2) > 12).mean()
    assert changed > 0.002, f"{name}: only {changed:.4f} of pixels change"


def test_resolution_limits() -> None:
    with pytest.raises(ValueError, match="between 64 and 512"):
        render_face(0, 32)
    with pytest.raises(ValueError, match="supersample"):
        render(sample_params(0), 64, supersample=5)


def test_datasets_give_the_same_faces_in_the_same_order() -> None:
    ds = SynthFacesDataset(64, first_seed=10, length=4, labels=True)
    img, labels = ds[2]
    assert img.dtype == torch.uint8 and img.shape == (3, 64, 64)
    assert labels.shape == (len(ATTRIBUTES),)
    assert torch.equal(img.permute(1, 2, 0), torch.from_numpy(render_face(12, 64)[0]))
    with pytest.raises(IndexError):
        ds[4]
    stream = SynthFacesStream(64, first_seed=10)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
    got = [x for x, _ in zip(loader, range(4), strict=False)]
    for i, x in enumerate(got):
        assert torch.equal(x, SynthFacesDataset(64, first_seed=10)[i])


def test_write_folder_is_the_same_with_one_or_two_workers(tmp_path) -> None:
    one = write_folder(tmp_path / "a", n=5, resolution=64, first_seed=3, workers=1, progress=False)
    two = write_folder(tmp_path / "b", n=5, resolution=64, first_seed=3, workers=2, progress=False)
    rows = [json.loads(line) for line in one.read_text().splitlines()]
    assert rows == [json.loads(line) for line in two.read_text().splitlines()]
    assert [r["seed"] for r in rows] == [3, 4, 5, 6, 7]
    for r in rows:
        saved = np.asarray(Image.open(tmp_path / "a" / r["file"]))
        face, labels = render_face(r["seed"], 64)
        assert np.array_equal(saved, face)
        assert {k: r[k] for k in labels} == labels


def test_synthfaces_cli(tmp_path, capsys) -> None:
    assert (
        main(["synthfaces", "--n", "3", "--res", "64", "--out", str(tmp_path), "--workers", "1"])
        == 0
    )
    assert len(list(tmp_path.glob("*.png"))) == 3
    assert main(["synthfaces", "--n", "3", "--res", "63", "--out", str(tmp_path)]) == 2
    assert "between 64 and 512" in capsys.readouterr().err
    assert main(["synthfaces", "--n", "0", "--out", str(tmp_path)]) == 2


def test_no_two_seeds_look_alike() -> None:
    faces = np.stack([render_face(s, 64)[0] for s in range(120)]).astype(np.float32)
    flat = faces.reshape(len(faces), -1)
    sq = (flat**2).sum(1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * flat @ flat.T, 0) / flat.shape[1])
    np.fill_diagonal(dist, np.inf)
    assert dist.min() > 15  # RMS difference in 0-255 units between the two closest faces
