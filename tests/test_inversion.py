"""Inversion engines: the step protocol, determinism, convergence, and the invert command."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from stylelens.checkpoints.native import load_generator
from stylelens.checkpoints.preview_heads import save_preview_heads
from stylelens.cli import main
from stylelens.inversion import (
    AdamConfig,
    AdamEngine,
    InversionError,
    ProgressiveConfig,
    ProgressiveEngine,
    make_engine,
    run,
)
from stylelens.inversion.adam import noise_regularization
from stylelens.inversion.common import projector_lr
from stylelens.inversion.progressive import stage_plan
from stylelens.latents import load_latent
from stylelens.losses import load_perceptual
from stylelens.networks.preview import FitConfig, PreviewHeads, fit_preview_heads


@pytest.fixture(scope="module")
def tiny_with_heads(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("inv-models")
    shutil.copytree(models_dir / "tiny-nvidia", root / "tiny")
    G, _ = load_generator(root / "tiny")
    heads = PreviewHeads(G)
    fit_preview_heads(G, heads, FitConfig(steps=40, batch=4, lr=0.02))
    save_preview_heads(root / "tiny", heads, {"steps": 40})
    return root


@pytest.fixture()
def setup(tiny_with_heads: Path):
    from stylelens.checkpoints.preview_heads import load_preview_heads

    G, _ = load_generator(tiny_with_heads / "tiny")
    heads = load_preview_heads(tiny_with_heads / "tiny", G)
    with torch.no_grad():
        ws_true = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(5)))
        target = G.synthesis(ws_true)
    return G, heads, target


def test_adam_reduces_the_error_and_reports_every_step(setup) -> None:
    G, _, target = setup
    engine = AdamEngine(
        G, perceptual=load_perceptual("ms-ssim", models_dir=Path(), model_dir=Path())
    )
    reports = []
    result = run(engine, target, AdamConfig(steps=30, lr=0.05), on_step=reports.append)
    assert [r.step for r in reports] == list(range(1, 31))
    assert all(r.total == 30 and r.resolution == 32 for r in reports)
    assert reports[-1].losses["total"] < 0.5 * reports[0].losses["total"]
    assert reports[0].preview.shape == (1, 3, 32, 32)
    assert result.ws.shape == (1, G.num_ws, G.w_dim) and result.steps == 30
    assert result.metrics["psnr"] > 0 and result.perceptual == "ms-ssim"
    assert reports[-1].elapsed >= reports[0].elapsed > 0


def test_same_seed_same_run(setup) -> None:
    G, _, target = setup
    engine = AdamEngine(G, perceptual=None)
    cfg = AdamConfig.projector(steps=6)
    a = run(engine, target, cfg)
    b = run(engine, target, cfg)
    assert torch.equal(a.ws, b.ws)
    assert a.noise.keys() == G.synthesis.noise_layers().keys()
    c = run(engine, target, AdamConfig(**{**cfg.__dict__, "seed": 1}))
    assert not torch.equal(a.ws, c.ws)


def test_projector_preset_is_w_space_with_noise(setup) -> None:
    G, _, target = setup
    result = run(AdamEngine(G, perceptual=None), target, AdamConfig.projector(steps=3))
    assert torch.equal(result.ws[:, 0], result.ws[:, -1])  # one w for every layer
    for n in result.noise.values():  # renormalised to N(0, 1)
        assert abs(float(n.mean())) < 1e-4 and abs(float(n.std(unbiased=False)) - 1) < 1e-3


def test_projector_lr_schedule() -> None:
    lrs = [projector_lr(t / 100, 0.1, rampup=0.05, rampdown=0.25) for t in range(101)]
    assert lrs[0] == 0 and max(lrs) == pytest.approx(0.1) and lrs[-1] == pytest.approx(0)
    assert lrs[50] == pytest.approx(0.1)


def test_noise_regularization_penalises_correlation() -> None:
    g = torch.Generator().manual_seed(0)
    white = {"a": torch.randn(1, 1, 32, 32, generator=g)}
    smooth = {"a": torch.ones(1, 1, 32, 32)}
    assert noise_regularization(white) < 0.01 < noise_regularization(smooth)


def test_progressive_climbs_the_schedule_and_converges(setup) -> None:
    G, heads, target = setup
    engine = ProgressiveEngine(G, heads=heads, perceptual=None)
    cfg = ProgressiveConfig(steps=40, schedule=((8, 1), (16, 1), (32, 2)), lr=0.05)
    state = engine.start(target, cfg)
    reports = []
    while not state.done:
        reports.append(engine.step(state))
    assert [r.resolution for r in reports] == [8] * 10 + [16] * 10 + [32] * 20
    assert all(r.preview.shape[-1] == r.resolution for r in reports)
    result = engine.result(state)
    assert set(result.adain) == {8, 16}  # colour fit of the preview heads used
    start_psnr = run(engine, target, ProgressiveConfig(steps=1, schedule=((32, 1),))).metrics
    assert result.metrics["psnr"] > start_psnr["psnr"] + 1


def test_progressive_steps_below_full_resolution_do_not_run_the_last_blocks(setup) -> None:
    G, heads, target = setup
    engine = ProgressiveEngine(G, heads=heads, perceptual=None)
    calls = []
    hook = G.synthesis.b32.register_forward_hook(lambda *a: calls.append(1))
    try:
        state = engine.start(target, ProgressiveConfig(steps=3, schedule=((16, 1),)))
        while not state.done:
            engine.step(state)
    finally:
        hook.remove()
    assert calls == []


def test_stage_plan_and_bad_schedules(setup) -> None:
    G, heads, _ = setup
    # default: 10 % at R/8 (4 has no head: the lowest head above it, 8), then full resolution
    assert stage_plan(G, heads, ProgressiveConfig(steps=10)) == [(8, 1), (32, 9)]
    assert stage_plan(
        G, heads, ProgressiveConfig(steps=10, schedule=((8, 2), (16, 1), (32, 2)))
    ) == [
        (8, 4),
        (16, 2),
        (32, 4),
    ]
    assert sum(n for _, n in stage_plan(G, heads, ProgressiveConfig(steps=7))) == 7
    # from a given start (an encoder's guess): full resolution alone, unless a schedule is given
    assert stage_plan(G, heads, ProgressiveConfig(steps=10), from_init=True) == [(32, 10)]
    assert stage_plan(
        G, heads, ProgressiveConfig(steps=4, schedule=((8, 1), (32, 1))), from_init=True
    ) == [(8, 2), (32, 2)]
    with pytest.raises(InversionError, match="no preview head"):
        stage_plan(G, heads, ProgressiveConfig(schedule=((4, 1), (32, 1))))
    with pytest.raises(ValueError, match="increase"):
        ProgressiveConfig(schedule=((16, 1), (8, 1)))
    with pytest.raises(InversionError, match="fit-preview-heads"):
        make_engine("progressive", G, steps=5, perceptual=None, heads=None)
    with pytest.raises(InversionError, match="unknown engine"):
        make_engine("sgd", G, steps=5, perceptual=None)


def test_progressive_from_a_start_keeps_its_fine_styles(setup) -> None:
    """Below full resolution the ws above the stage move with its last w from their own start
    values: from a guess with distinct fine ws they keep them (plus the move), from w_avg they
    equal the last w; a start with no schedule given skips the coarse stage."""
    G, heads, target = setup
    engine = ProgressiveEngine(G, heads=heads, perceptual=None)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        guess = G.mapping(torch.randn(1, G.z_dim, generator=gen))
        guess = guess + 0.5 * torch.randn(guess.shape, generator=gen)  # every w different
    config = ProgressiveConfig(steps=6, schedule=((8, 2), (32, 1)))
    state = engine.start(target, config, guess)
    for _ in range(3):  # L-BFGS's first step evaluates the start itself
        engine.step(state)
    assert state.last_resolution == 8
    ws = engine.current_ws(state)
    k = 3  # the last w a stage at 8 px reaches (torgb of the 8 px block)
    move = ws[:, k] - guess[:, k]
    assert move.abs().max() > 0  # the stage moved it
    torch.testing.assert_close(ws[:, k + 1 :], guess[:, k + 1 :] + move.unsqueeze(1))
    plain = engine.start(target, config)
    for _ in range(3):
        engine.step(plain)
    ws = engine.current_ws(plain)
    torch.testing.assert_close(ws[:, k + 1 :], ws[:, k : k + 1].expand_as(ws[:, k + 1 :]))
    assert engine.start(target, ProgressiveConfig(steps=4), guess).plan == [(32, 4)]


def test_bad_targets(setup) -> None:
    G, _, _ = setup
    engine = AdamEngine(G, perceptual=None)
    with pytest.raises(InversionError, match="crop and resize"):
        engine.start(torch.zeros(1, 3, 16, 16), AdamConfig())
    with pytest.raises(InversionError, match=r"\[1, 3, H, W\]"):
        engine.start(torch.zeros(3, 32, 32), AdamConfig())
    with pytest.raises(InversionError, match="NaN"):
        engine.start(torch.full((1, 3, 32, 32), float("nan")), AdamConfig())


def test_init_latent_is_used_and_not_mutated(setup) -> None:
    G, heads, target = setup
    init = G.mapping(torch.randn(1, G.z_dim)).detach()
    copy = init.clone()
    engine = ProgressiveEngine(G, heads=heads, perceptual=None)
    state = engine.start(target, ProgressiveConfig(steps=2), init)
    assert torch.equal(state.latent.detach(), init)
    engine.step(state)
    assert torch.equal(init, copy)


def _photo(path: Path, size=(90, 60), mode="RGB") -> Path:
    Image.effect_noise(size, 60).convert(mode).save(path)
    return path


@pytest.mark.parametrize("engine", ["progressive", "adam", "projector"])
def test_invert_command_writes_everything(tiny_with_heads: Path, tmp_path: Path, engine: str):
    photo = _photo(tmp_path / "face.png", mode="LA")
    out = tmp_path / "out"
    argv = ["invert", str(photo), "--model", "tiny", "--models-dir", str(tiny_with_heads),
            "--engine", engine, "--steps", "6", "--out", str(out), "--frames", "3"]  # fmt: skip
    assert main(argv) == 0
    latent = load_latent(out / "latent.safetensors")
    assert latent.ws.shape == (1, 8, 32) and latent.model == "tiny-nvidia"  # the card id
    assert Image.open(out / "reconstruction.png").size == (32, 32)
    assert Image.open(out / "steps.png").size == (32 * 4, 32)
    # the WebP encoder merges identical consecutive frames (a rejected L-BFGS trial shows the
    # last accepted preview again)
    assert 2 <= Image.open(out / "steps.webp").n_frames <= 4
    summary = json.loads((out / "result.json").read_text())
    assert summary["engine"] == ("adam" if engine == "projector" else engine)
    assert summary["perceptual"] == "d-features" and summary["steps"] == 6
    # resume from the latent just written
    assert main([*argv[:-4], "--init", str(out / "latent.safetensors"), "--out", str(out)]) == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"not an image"), "not an image"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40), "corrupt|not an image"),
        (lambda p: None, "cannot read"),
    ],
)
def test_invert_bad_files_exit_2(tiny_with_heads: Path, tmp_path: Path, capsys, make, message):
    bad = tmp_path / "bad.png"
    make(bad)
    argv = ["invert", str(bad), "--model", "tiny", "--models-dir", str(tiny_with_heads),
            "--steps", "2", "--out", str(tmp_path / "o")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error" in err and __import__("re").search(message, err)


def test_invert_wrong_latent_and_missing_heads_exit_2(
    tiny_with_heads: Path, models_dir: Path, tmp_path: Path, capsys
):
    from stylelens.latents import Latent, save_latent

    photo = _photo(tmp_path / "p.png")
    wrong = save_latent(tmp_path / "w.safetensors", Latent(torch.zeros(1, 4, 32), {}, {}))
    base = ["invert", str(photo), "--steps", "2", "--out", str(tmp_path / "o")]
    assert main([*base, "--model", "tiny", "--models-dir", str(tiny_with_heads),
                 "--init", str(wrong)]) == 2  # fmt: skip
    assert "shape" in capsys.readouterr().err
    assert main([*base, "--model", "tiny-nvidia", "--models-dir", str(models_dir)]) == 2
    assert "fit-preview-heads" in capsys.readouterr().err


def test_ws_above_a_coarse_stage_follow_its_last_w(setup) -> None:
    G, heads, target = setup
    engine = ProgressiveEngine(G, heads=heads, perceptual=None)
    state = engine.start(target, ProgressiveConfig(steps=4, schedule=((8, 1), (32, 1))))
    engine.step(state)
    engine.step(state)  # two steps at 8: b8's toRGB takes ws[3]
    ws = engine.current_ws(state)
    assert all(torch.equal(ws[0, i], ws[0, 3]) for i in range(4, G.num_ws))
    assert not torch.equal(ws[0, 3], G.mapping.w_avg)
    engine.step(state)  # the full-resolution stage starts from the tied latent (L-BFGS
    assert torch.equal(engine.current_ws(state)[0, 7], ws[0, 3])  # evaluates it first)
    engine.step(state)  # then moves
    assert not torch.equal(engine.current_ws(state)[0, 7], ws[0, 3])


def test_invert_crop_modes(tiny_with_heads: Path, tmp_path: Path, capsys) -> None:
    photo = _photo(tmp_path / "noise.png")  # no face in it
    base = ["invert", str(photo), "--model", "tiny", "--models-dir", str(tiny_with_heads),
            "--steps", "1", "--out", str(tmp_path / "o")]  # fmt: skip
    assert main([*base, "--crop", "center"]) == 0
    assert json.loads((tmp_path / "o" / "result.json").read_text())["crop"] == "centre crop"
    assert main([*base, "--crop", "auto"]) == 0  # falls back to the centre crop, and says why
    assert "centre crop (" in capsys.readouterr().out
    assert main([*base, "--crop", "align"]) == 2  # extra missing, or no face: a clear error
    assert __import__("re").search("align' extra|no face", capsys.readouterr().err, flags=2)


def test_progressive_lbfgs_reports_the_accepted_point(setup) -> None:
    """With L-BFGS a rejected trial is not shown: loss and preview are the last accepted."""
    G, heads, target = setup
    engine = ProgressiveEngine(G, heads=heads, perceptual=None)
    state = engine.start(target, ProgressiveConfig(steps=30, schedule=((32, 1),), lr=0.5))
    reports = [engine.step(state) for _ in range(30)]
    totals = [r.losses["total"] for r in reports]
    assert all(b <= a for a, b in itertools.pairwise(totals))
    assert state.lbfgs is not None and state.lbfgs.rejected_total > 0  # lr 0.5 overshoots
    rejected = [i for i in range(1, 30) if totals[i] == totals[i - 1]]
    assert rejected
    assert all(torch.equal(reports[i].preview, reports[i - 1].preview) for i in rejected)
    assert totals[-1] < 0.5 * totals[0]


def test_progressive_adam_option_still_converges(setup) -> None:
    G, heads, target = setup
    engine = ProgressiveEngine(G, heads=heads, perceptual=None)
    cfg = ProgressiveConfig(steps=20, schedule=((32, 1),), optimizer="adam", lr=0.05)
    result = run(engine, target, cfg)
    start = run(engine, target, ProgressiveConfig(steps=1, schedule=((32, 1),))).metrics
    assert result.config["optimizer"] == "adam"
    assert result.metrics["psnr"] > start["psnr"] + 1
    with pytest.raises(ValueError, match="optimizer"):
        ProgressiveConfig(optimizer="sgd")  # type: ignore[arg-type]


def test_steps_taken_together_are_the_steps_taken_alone(setup) -> None:
    """Three inversions (different targets, optimisers, stages) stepped as one batched pass
    follow the same path as each stepped alone: the same losses, previews and latents."""
    from stylelens.inversion.progressive import step_together

    G, heads, target = setup
    with torch.no_grad():
        z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(9))
        other = G.synthesis(G.mapping(z))
    targets = [target, other[:1], other[1:]]
    configs = [
        ProgressiveConfig(steps=12),
        ProgressiveConfig(steps=12, lr=0.2),
        ProgressiveConfig(steps=12, optimizer="adam", lr=0.05),
    ]
    engines = [ProgressiveEngine(G, heads=heads, perceptual=None) for _ in targets]
    alone = [e.start(t, c) for e, t, c in zip(engines, targets, configs, strict=True)]
    together = [e.start(t, c) for e, t, c in zip(engines, targets, configs, strict=True)]
    batched_calls = 0
    for _ in range(12):
        solo = [e.step(s) for e, s in zip(engines, alone, strict=True)]
        items = list(zip(engines, together, strict=True))
        groups: dict[int, list] = {}
        for item in items:  # as the worker does: only inversions at the same stage go together
            groups.setdefault(item[1].resolution(), []).append(item)
        reports = {}
        for group in groups.values():
            batched_calls += len(group) > 1
            for (_, s), r in zip(group, step_together(group), strict=True):
                reports[id(s)] = r
        for a, s in zip(solo, together, strict=True):
            b = reports[id(s)]
            assert (a.step, a.resolution) == (b.step, b.resolution)
            assert a.losses["total"] == pytest.approx(b.losses["total"], rel=1e-3, abs=1e-6)
            assert (a.preview - b.preview).abs().max() < 1e-3
    assert batched_calls > 0
    for e, a, b in zip(engines, alone, together, strict=True):
        assert torch.allclose(e.current_ws(a), e.current_ws(b), atol=1e-4)


def test_steps_of_different_stages_or_models_are_refused_together(
    setup, tiny_with_heads: Path
) -> None:
    from stylelens.inversion.progressive import can_step_together, step_together

    G, heads, target = setup
    e = ProgressiveEngine(G, heads=heads, perceptual=None)
    low = e.start(target, ProgressiveConfig(steps=10, schedule=((8, 1),)))
    full = e.start(target, ProgressiveConfig(steps=10, schedule=((32, 1),)))
    assert not can_step_together((e, low), (e, full))
    with pytest.raises(ValueError, match="cannot step together"):
        step_together([(e, low), (e, full)])
    G2, _ = load_generator(tiny_with_heads / "tiny")  # the same weights, another generator
    other = ProgressiveEngine(G2, heads=heads, perceptual=None)
    theirs = other.start(target, ProgressiveConfig(steps=10, schedule=((32, 1),)))
    assert not can_step_together((e, full), (other, theirs))
    assert can_step_together(
        (e, full), (e, e.start(target, ProgressiveConfig(steps=3, schedule=((32, 1),))))
    )
