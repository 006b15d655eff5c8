"""Preview heads: shapes, what fitting improves, the AdaIN fit, storage in a model directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from stylelens.checkpoints.native import load_generator
from stylelens.checkpoints.preview_heads import load_preview_heads, save_preview_heads
from stylelens.errors import CheckpointError
from stylelens.evaluation.preview_heads import evaluate_preview_heads, raw_is_better
from stylelens.networks.preview import (
    FitConfig,
    PreviewHeads,
    downsample_to,
    fit_adain,
    fit_preview_heads,
    instance_norm,
    preview_targets,
    psnr,
    sample_ws,
    torgb_w_index,
)
from stylelens.networks.stylegan2 import BlockOutput


@pytest.fixture()
def tiny(models_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "tiny"
    shutil.copytree(models_dir / "tiny-nvidia", dst)
    return dst


def test_torgb_w_index_matches_iter_blocks() -> None:
    # b4: conv1 ws[0], torgb ws[1]; each later block two convs, torgb shares the next w.
    assert [torgb_w_index(r) for r in (4, 8, 16, 32, 1024)] == [1, 3, 5, 7, 17]


def test_instance_norm_statistics() -> None:
    x = torch.randn(2, 5, 8, 8) * 7 + 3
    y = instance_norm(x)
    assert torch.allclose(y.mean(dim=(2, 3)), torch.zeros(2, 5), atol=1e-5)
    assert torch.allclose(y.std(dim=(2, 3), unbiased=False), torch.ones(2, 5), atol=1e-4)


def test_untrained_head_without_norm_is_the_generator_skip_image(tiny: Path) -> None:
    G, _ = load_generator(tiny)
    heads = PreviewHeads(G)
    assert heads.resolutions == [8, 16]  # intermediate resolutions of a 32 px model
    ws = G.mapping(torch.randn(2, G.z_dim))
    outs, _ = preview_targets(G, ws, heads.resolutions)
    for r, out in outs.items():
        raw = heads.preview(G, out, ws, normalize=False)
        assert torch.allclose(raw, out.img, atol=1e-5)
        assert heads.preview(G, out, ws).shape == (2, 3, r, r)


def test_fitting_improves_every_resolution_and_leaves_g_alone(tiny: Path) -> None:
    G, _ = load_generator(tiny)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    heads = PreviewHeads(G)
    losses = fit_preview_heads(G, heads, FitConfig(steps=60, batch=4, lr=0.02))
    assert len(losses) == 60
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())
    table = evaluate_preview_heads(G, heads, samples=4)
    for row in table.values():
        assert row["fitted"] > row["instance_norm"]
        assert row["fitted_adain"] >= row["fitted"] - 0.05


def test_adain_fit_restores_colour(tiny: Path) -> None:
    G, _ = load_generator(tiny)
    heads = PreviewHeads(G).requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    ws = sample_ws(G, 1, psi_range=(0.7, 0.7), generator=gen)
    outs, img = preview_targets(G, ws, [16])
    out = outs[16]
    target = downsample_to(img, 16)

    def head_fn(adain):
        return heads.preview(G, BlockOutput(16, out.x, out.img), ws, adain=adain)

    plain = psnr(head_fn(adain=None), target)
    s, b = fit_adain(head_fn, target, out.x.shape[1], steps=60)
    assert s.shape == b.shape == (1, out.x.shape[1])
    assert psnr(head_fn(adain=(s, b)), target) > plain + 1.0


def test_save_load_round_trip_and_card(tiny: Path) -> None:
    G, _ = load_generator(tiny)
    assert load_preview_heads(tiny, G) is None
    heads = PreviewHeads(G)
    fit_preview_heads(G, heads, FitConfig(steps=3, batch=2))
    heads.raw_resolutions = [16]
    save_preview_heads(tiny, heads, {"steps": 3})
    back = load_preview_heads(tiny, G)
    assert back is not None and back.resolutions == heads.resolutions
    assert back.raw_resolutions == [16]
    for k, v in heads.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)
    card = json.loads((tiny / "card.json").read_text())
    assert card["preview_heads"]["steps"] == 3 and card["preview_heads"]["resolutions"] == [8, 16]
    (tiny / "preview_heads.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="fit-preview-heads"):
        load_preview_heads(tiny, G)


def test_bad_resolutions(tiny: Path) -> None:
    G, _ = load_generator(tiny)
    with pytest.raises(ValueError, match="intermediate resolutions"):
        PreviewHeads(G, [32])
    with pytest.raises(ValueError, match="no preview head"):
        PreviewHeads(G, [8]).head(16)


def test_raw_resolutions_fall_back_to_the_skip_image(tiny: Path) -> None:
    G, _ = load_generator(tiny)
    heads = PreviewHeads(G, raw_resolutions=[8])
    ws = G.mapping(torch.randn(1, G.z_dim))
    outs, _ = preview_targets(G, ws, [8, 16])
    assert torch.equal(heads.preview(G, outs[8], ws), outs[8].img)
    assert not torch.equal(heads.preview(G, outs[8], ws, allow_raw=False), outs[8].img)
    assert not torch.equal(heads.preview(G, outs[16], ws), outs[16].img)
    table = {8: {"raw": 20.0, "fitted": 18.0}, 16: {"raw": 10.0, "fitted": 25.0}}
    assert raw_is_better(table) == [8]
