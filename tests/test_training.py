"""StyleGAN2 training on CPU with tiny 32x32 networks: losses, augmentation, exact resume,
freezing, image folders, export and the ``train`` / ``export`` commands."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image

from stylelens.checkpoints import load_card, load_discriminator, load_generator
from stylelens.cli_args import Commands
from stylelens.data.folder import ImageFolderDataset
from stylelens.data.sources import TrainingData, open_dataset
from stylelens.errors import DatasetError, StyleLensError, TrainingError
from stylelens.networks import ops
from stylelens.networks.discriminator import Discriminator
from stylelens.render import render_seeds, to_uint8, z_from_seed
from stylelens.settings import Settings
from stylelens.training import loss
from stylelens.training.augment import TRANSFORMS, AugmentConfig, augment
from stylelens.training.cli import register
from stylelens.training.config import (
    TrainConfig,
    architecture_of,
    config_from_dict,
    config_to_dict,
)
from stylelens.training.export import export_run
from stylelens.training.grow import grow_model
from stylelens.training.loop import (
    CONFIG_FILE,
    METRICS_FILE,
    EpochSampler,
    epoch_permutation,
    read_run,
    train,
)
from stylelens.training.state import CHECKPOINT_FILE, read_checkpoint, start_state
from tests.formats import TINY_D

TINY = TrainConfig(
    resolution=32, batch=4, kimg=0.016, z_dim=32, w_dim=32, mapping_layers=2, channel_base=256,
    channel_max=32, tick_kimg=0.008, snapshot_kimg=0.008, device="cpu", num_workers=0,
    r1_interval=2, pl_interval=2, augment=AugmentConfig(),
)  # fmt: skip


class Blobs(torch.utils.data.Dataset[torch.Tensor]):
    """16 deterministic blocky colour images, uint8 [3, 32, 32]."""

    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(i)
        small = (torch.rand(3, 4, 4, generator=g) * 255).to(torch.uint8)
        return small.repeat_interleave(8, 1).repeat_interleave(8, 2)


DATA = TrainingData(Blobs(), {"source": "blobs", "num_images": 16}, "16 blobs")


def run(config: TrainConfig, run_dir: Path, *, resume: bool = False):
    return train(config, run_dir=run_dir, data=DATA, resume=resume, progress=False, log=print)


def metrics(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / METRICS_FILE).open() as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------
# The loop


def test_a_few_steps_train_without_nan_and_move_the_weights(tmp_path: Path):
    start, _ = start_state(TINY.resolved(), torch.device("cpu"))
    state = run(TINY, tmp_path / "run")
    assert state.cur_nimg == 16 and state.step == 4
    rows = metrics(tmp_path / "run")
    assert [r["kimg"] for r in rows] == ["0.008", "0.016"]
    for row in rows:
        for key in ("loss_g", "loss_d", "r1", "pl", "d_real", "d_fake", "images_per_s"):
            assert math.isfinite(float(row[key])), (key, row)
    assert rows[0]["loss_g"] != rows[1]["loss_g"] and rows[0]["loss_d"] != rows[1]["loss_d"]
    for name, p in state.G.named_parameters():
        assert torch.isfinite(p).all(), name
        assert not torch.equal(p, start.G.state_dict()[name]), f"{name} did not change"
    for name, p in state.D.named_parameters():
        assert not torch.equal(p, start.D.state_dict()[name]), f"{name} did not change"
    assert not torch.equal(state.G.mapping.w_avg, start.G.mapping.w_avg)  # w_avg is tracked
    samples = sorted(p.name for p in (tmp_path / "run" / "samples").iterdir())
    assert samples == ["fakes000000.000.png", "fakes000000.008.png", "fakes000000.016.png"]
    assert Image.open(tmp_path / "run" / "samples" / samples[0]).size == (4 * 32, 4 * 32)
    payload = read_checkpoint(tmp_path / "run" / CHECKPOINT_FILE)
    assert payload["progress"]["cur_nimg"] == 16 and payload["progress"]["data_position"] == 16


def _assert_same_state(a, b) -> None:
    for name in ("G", "D", "G_ema"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), f"{name}.{key}"
    for opt in ("opt_g", "opt_d"):
        sa, sb = getattr(a, opt).state_dict()["state"], getattr(b, opt).state_dict()["state"]
        for idx in sa:
            for key in sa[idx]:
                assert torch.equal(sa[idx][key], sb[idx][key]), f"{opt}[{idx}].{key}"
    assert torch.equal(a.pl_mean, b.pl_mean)
    for key, value in a.rng.state_dict().items():
        assert torch.equal(value, b.rng.state_dict()[key]), key
    assert (a.cur_nimg, a.step, a.data_position) == (b.cur_nimg, b.step, b.data_position)


def test_resume_continues_bit_for_bit(tmp_path: Path):
    # 8 steps in one go against 4 + resume for 4 more; the data order crosses an epoch (16
    # images), the lazy regularisers fire on even steps, and the resumed half loads its
    # images with a worker process: none of it may change a single bit.
    full = run(dataclasses.replace(TINY, kimg=0.032), tmp_path / "full")
    run(TINY, tmp_path / "split")
    resumed = run(dataclasses.replace(TINY, kimg=0.032, num_workers=1), tmp_path / "split",
                  resume=True)  # fmt: skip
    _assert_same_state(full, resumed)
    assert [r["kimg"] for r in metrics(tmp_path / "split")] == ["0.008", "0.016", "0.024", "0.032"]


def test_channels_last_is_the_same_training_up_to_rounding(tmp_path: Path):
    # Two runs of the same 4 steps (every phase fires), one channels-last (the default), one
    # NCHW: the networks hold the same numbers up to float32 rounding, and only the memory
    # format differs. A layout mistake in any op would show as an O(1) difference.
    nhwc = run(TINY, tmp_path / "nhwc")
    nchw = run(dataclasses.replace(TINY, channels_last=False), tmp_path / "nchw")
    weight = nhwc.G.synthesis.b32.conv0.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert nchw.G.synthesis.b32.conv0.weight.is_contiguous()
    for name in ("G", "D", "G_ema"):
        sa, sb = getattr(nhwc, name).state_dict(), getattr(nchw, name).state_dict()
        for key in sa:
            assert torch.allclose(sa[key], sb[key], rtol=1e-3, atol=1e-5), f"{name}.{key}"
    # ... and a run may switch it on resume (it does not enter the maths)
    state = run(dataclasses.replace(TINY, kimg=0.024, channels_last=False), tmp_path / "nhwc",
                resume=True)  # fmt: skip
    assert state.cur_nimg == 24 and state.G.synthesis.b32.conv0.weight.is_contiguous()


@pytest.mark.slow  # compiling a tiny G and D takes about a minute on 2 cores
@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on a CPU needs g++")
def test_compiled_training_is_the_same_training_up_to_rounding(tmp_path: Path):
    # G main, the supervised-free phases and D main run compiled, R1 and path length eager;
    # the noise is drawn before the network, so the random streams match the eager run's.
    eager = run(TINY, tmp_path / "eager")
    compiled = run(dataclasses.replace(TINY, compile=True), tmp_path / "compiled")
    assert compiled.fast_D is not compiled.D and eager.fast_D is eager.D
    for name in ("G", "D", "G_ema"):
        sa, sb = getattr(compiled, name).state_dict(), getattr(eager, name).state_dict()
        for key in sa:
            assert torch.allclose(sa[key], sb[key], rtol=1e-3, atol=1e-5), f"{name}.{key}"
    for key, value in compiled.rng.state_dict().items():
        assert torch.equal(value, eager.rng.state_dict()[key]), key


def test_compile_without_a_cpp_compiler_is_refused_before_training(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(StyleLensError, match="C\\+\\+ compiler"):
        run(dataclasses.replace(TINY, compile=True), tmp_path / "run")
    assert not (tmp_path / "run" / CHECKPOINT_FILE).exists()
    G = start_state(TINY.resolved(), torch.device("cpu"))[0].G_ema  # and rendering, likewise
    with pytest.raises(StyleLensError, match="C\\+\\+ compiler"):
        next(render_seeds(G, [0], compile=True))


def test_random_noise_draws_what_the_layers_draw():
    G = start_state(TINY.resolved(), torch.device("cpu"))[0].G
    ws = G.mapping(torch.randn(3, G.z_dim))
    drawn = G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(5))
    noise = G.synthesis.random_noise(3, generator=torch.Generator().manual_seed(5))
    assert list(noise) == list(G.synthesis.noise_layers())
    assert torch.equal(G.synthesis(ws, noise=noise), drawn)


def test_resume_with_a_different_config_names_the_differences(tmp_path: Path):
    one_step = dataclasses.replace(TINY, kimg=0.004)
    run(one_step, tmp_path / "run")
    changed = dataclasses.replace(one_step, batch=8, seed=3, kimg=1.0)
    with pytest.raises(TrainingError, match=r"batch: 4 -> 8; seed: 0 -> 3") as err:
        run(changed, tmp_path / "run", resume=True)
    assert "kimg:" not in str(err.value)
    # "auto" (None) settings take the run's values; kimg may grow.
    resumed = run(dataclasses.replace(one_step, batch=None, r1_gamma=None, kimg=0.008),
                  tmp_path / "run", resume=True)  # fmt: skip
    assert resumed.cur_nimg == 8 and resumed.config.batch == 4
    other_data = TrainingData(Blobs(), {"source": "elsewhere", "num_images": 16}, "")
    with pytest.raises(TrainingError, match=r"data\.source: 'blobs' -> 'elsewhere'"):
        train(one_step, run_dir=tmp_path / "run", data=other_data, resume=True, progress=False)
    with pytest.raises(TrainingError, match="already holds a training run"):
        run(one_step, tmp_path / "run")
    with pytest.raises(TrainingError, match="not a training run"):
        run(one_step, tmp_path / "nothing", resume=True)


def test_data_order_is_a_pure_function_of_seed_and_position():
    perm0, perm1 = epoch_permutation(7, 0, 10), epoch_permutation(7, 1, 10)
    assert sorted(perm0.tolist()) == list(range(10)) and not np.array_equal(perm0, perm1)
    stream = iter(EpochSampler(10, seed=7))
    first = [next(stream) for _ in range(25)]
    assert first[:20] == perm0.tolist() + perm1.tolist()
    resumed = iter(EpochSampler(10, seed=7, start=13))
    assert [next(resumed) for _ in range(12)] == first[13:25]


def test_freeze_d_and_freeze_g_keep_exactly_what_they_name(tmp_path: Path, models_dir: Path):
    init = models_dir / "tiny-nvidia"
    card = load_card(init)
    cfg = dataclasses.replace(
        TINY, **architecture_of(card.generator, card.discriminator), init=str(init),
        freeze_d=2, freeze_g=("mapping", "b4"), kimg=0.008,
    )  # fmt: skip
    G0, _ = load_generator(init)
    D0, _ = load_discriminator(init)
    state = run(cfg, tmp_path / "run")
    assert list(D0.block_resolutions[:2]) == [32, 16]  # FreezeD counts from the image input
    checks = ((state.G, G0, state.opt_g, ("mapping.", "synthesis.b4.")),
              (state.D, D0, state.opt_d, ("b32.", "b16.")))  # fmt: skip
    for net, ref, opt, frozen in checks:
        ref_state = ref.state_dict()
        for name, p in net.named_parameters():
            unchanged = torch.equal(p.detach(), ref_state[name])
            assert unchanged == name.startswith(frozen), f"{name}: unchanged={unchanged}"
            if name.startswith(frozen):
                assert not p.requires_grad, name
        owned = sum(len(group["params"]) for group in opt.param_groups)
        assert owned == sum(1 for n, _ in net.named_parameters() if not n.startswith(frozen))


def test_bad_freeze_options_are_refused():
    with pytest.raises(ValueError, match="freeze between 0 and 3"):
        dataclasses.replace(TINY, freeze_d=4)
    with pytest.raises(ValueError, match="unknown parts"):
        dataclasses.replace(TINY, freeze_g=("b64",))
    with pytest.raises(ValueError, match="whole generator"):
        dataclasses.replace(TINY, freeze_g=("mapping", "synthesis"))


def test_bfloat16_training_on_a_cpu_without_native_bf16_is_refused(tmp_path: Path, monkeypatch):
    import stylelens.hardware

    monkeypatch.setattr(stylelens.hardware, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(TrainingError, match="no native bfloat16"):
        run(dataclasses.replace(TINY, precision="bfloat16"), tmp_path / "run")


def test_bfloat16_training_steps_keep_r1_and_path_length_finite(monkeypatch):
    """bfloat16 autocast on the CPU (taken where the CPU has native bfloat16): every loss, R1
    and the path-length penalty included, stays finite, and the weights stay float32."""
    import math

    import stylelens.hardware
    from stylelens.training.loop import resolve_precision, train_step
    from stylelens.training.state import start_state

    monkeypatch.setattr(stylelens.hardware, "cpu_has_native_bf16", lambda: True)
    cfg = dataclasses.replace(TINY, precision="bfloat16", r1_interval=2, pl_interval=2).resolved()
    assert resolve_precision(cfg.precision, torch.device("cpu")) == "bfloat16"
    state, _ = start_state(cfg, torch.device("cpu"))
    real = torch.rand(cfg.batch, 3, cfg.resolution, cfg.resolution) * 2 - 1
    reports = [train_step(state, real, precision="bfloat16") for _ in range(4)]
    assert any(r.r1 is not None for r in reports) and any(r.pl is not None for r in reports)
    for r in reports:
        for v in dataclasses.asdict(r).values():
            assert not isinstance(v, float) or math.isfinite(v), r
    assert all(p.dtype == torch.float32 for p in state.G.parameters())


def test_cpu_bf16_flags_are_read_from_cpuinfo(tmp_path: Path):
    from stylelens.hardware import cpu_has_native_bf16

    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags : fpu sse avx512f avx512_bf16\n")
    assert cpu_has_native_bf16(info)
    info.write_text("processor : 0\nflags : fpu sse amx_tile amx_bf16\n")
    assert cpu_has_native_bf16(info)
    info.write_text("processor : 0\nflags : fpu sse avx512f\n")
    assert not cpu_has_native_bf16(info)
    assert not cpu_has_native_bf16(tmp_path / "missing")


def test_config_round_trips_through_json():
    cfg = dataclasses.replace(TINY, freeze_g=("mapping",)).resolved()
    assert config_from_dict(config_to_dict(cfg)) == cfg
    with pytest.raises(ValueError, match="unknown training options"):
        config_from_dict({**config_to_dict(cfg), "lr": 1})
    auto = TrainConfig(resolution=256).resolved()
    assert (auto.batch, auto.channel_base, auto.mbstd_group_size) == (16, 16384, 4)
    assert auto.r1_gamma == pytest.approx(0.0002 * 256**2 / 16) and auto.ema_kimg == 5.0


# ----------------------------------------------------------------------------
# Losses and augmentation


def test_r1_penalty_is_positive_and_its_gradient_reaches_d():
    D = Discriminator(TINY_D)
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    penalty = loss.r1_penalty(D(x), x)
    assert penalty.shape == (4,) and (penalty > 0).all()
    loss.r1_loss(penalty, gamma=10, interval=16).backward()
    for name, p in D.named_parameters():
        if name.endswith("weight"):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert D.b4.out.bias.grad is None  # the penalty does not depend on the output bias


def test_schedules_and_style_mixing():
    lr, betas = loss.lazy_regularisation(0.0025, (0.0, 0.99), 16)
    assert lr == pytest.approx(0.0025 * 16 / 17) and betas == (
        0.0,
        pytest.approx(0.99 ** (16 / 17)),
    )
    assert loss.ema_beta(batch=32, cur_nimg=0, ema_kimg=10, ema_rampup=0.05) == 0  # G_ema = G
    assert loss.ema_beta(batch=32, cur_nimg=10**7, ema_kimg=10, ema_rampup=0.05) == pytest.approx(
        0.5 ** (32 / 10_000)
    )
    g = torch.Generator().manual_seed(0)
    cutoffs = [loss.mixing_cutoff(8, prob=0.9, generator=g) for _ in range(500)]
    assert set(cutoffs) == set(range(1, 9)) and 0.05 < cutoffs.count(8) / 500 < 0.25
    ws, ws2 = torch.zeros(2, 8, 4), torch.ones(2, 8, 4)
    mixed = loss.mix_styles(ws, ws2, 3)
    assert mixed[:, :3].eq(0).all() and mixed[:, 3:].eq(1).all()
    w_avg = loss.tracked_w_avg(torch.zeros(4), ws2, beta=0.995)
    assert torch.allclose(w_avg, torch.full([4], 0.005))


def test_augment_keeps_shapes_is_differentiable_and_seeded():
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    cfg = AugmentConfig(p=1.0)

    def aug(seed: int, config: AugmentConfig = cfg) -> torch.Tensor:
        return augment(x, config, generator=torch.Generator().manual_seed(seed))

    assert aug(1).shape == x.shape
    assert torch.equal(aug(1), aug(1)) and not torch.equal(aug(1), aug(2))
    assert torch.equal(aug(1, AugmentConfig(p=0.0)), x)
    for name in TRANSFORMS:  # every transform alone: changes the images, gradients flow
        leaf = x.clone().requires_grad_(True)
        out = augment(leaf, AugmentConfig(p=1.0, groups=((name,),)),
                      generator=torch.Generator().manual_seed(0))  # fmt: skip
        assert out.shape == x.shape and not torch.equal(out, x), name
        out.square().sum().backward()
        assert leaf.grad is not None and leaf.grad.abs().sum() > 0, name


# ----------------------------------------------------------------------------
# Image folders


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder_skips_unreadable_files_and_centre_crops(tmp_path: Path):
    wide = np.zeros((16, 32, 3), np.uint8)
    wide[:, :8] = (255, 0, 0)  # red left band, blue right band: cropped away
    wide[:, 24:] = (0, 0, 255)
    wide[:, 8:24] = (0, 200, 0)
    _save(tmp_path / "a" / "wide.png", wide)
    _save(tmp_path / "a" / "deep" / "tall.jpg", np.full((40, 20, 3), 90, np.uint8))
    (tmp_path / "a" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    ds = ImageFolderDataset(tmp_path / "a", 8)
    assert len(ds) == 2 and [p.name for p in ds.skipped] == ["broken.jpg"]
    assert "skipped 1 unreadable images: broken.jpg" in ds.summary()
    img = ds[[p.name for p in ds.files].index("wide.png")]
    assert img.dtype == torch.uint8 and img.shape == (3, 8, 8)
    assert (img[1] > 150).all() and (img[0] < 50).all() and (img[2] < 50).all()  # only green


def test_image_folder_errors(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        ImageFolderDataset(tmp_path / "empty", 32)
    with pytest.raises(DatasetError, match="no such folder"):
        ImageFolderDataset(tmp_path / "missing", 32)
    _save(tmp_path / "one" / "x.png", np.zeros((8, 8, 3), np.uint8))
    for res in (48, 4, 2048):
        with pytest.raises(DatasetError, match="not a power of two"):
            open_dataset(tmp_path / "one", res)


# ----------------------------------------------------------------------------
# Export and the commands


def test_export_writes_a_model_that_renders_like_g_ema(tmp_path: Path):
    state = run(dataclasses.replace(TINY, kimg=0.008), tmp_path / "run")
    card = export_run(tmp_path / "run", model_id="tiny-trained", models_dir=tmp_path / "models")
    G, loaded = load_generator(tmp_path / "models" / "tiny-trained")
    z = torch.cat([z_from_seed(s, 32) for s in range(3)])
    # The run kept G_ema channels-last (TrainConfig.channels_last); the exported weights are
    # the same numbers, which in the same memory format render the same image bit for bit.
    G_ema = state.G_ema.to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        assert torch.equal(G(z), G_ema(z))
    training = loaded.model_dump()["training"]
    assert training["kimg"] == 0.008 and training["data"]["source"] == "blobs"
    assert training["hardware"] and training["metrics"]["kimg"] == 0.008
    assert card.discriminator is not None and card.source.format == "native"
    with pytest.raises(TrainingError, match="not a valid model id"):
        export_run(tmp_path / "run", model_id="Bad Id", models_dir=tmp_path / "models")
    # float16 storage: half the bytes, the same pictures to within 1/255.
    half = export_run(tmp_path / "run", model_id="tiny-half", models_dir=tmp_path / "models",
                      storage="float16")  # fmt: skip
    assert half.model_dump()["storage"]["max_render_change_255"] <= 1
    stored = safetensors.torch.load_file(tmp_path / "models/tiny-half/generator.safetensors")
    assert {v.dtype for k, v in stored.items() if not k.startswith("mapping.")} == {torch.float16}
    assert {v.dtype for k, v in stored.items() if k.startswith("mapping.")} == {torch.float32}
    assert half.model_dump()["storage"]["float32"] == ["mapping.*"]
    G16, _ = load_generator(tmp_path / "models" / "tiny-half")
    with torch.no_grad():
        change = np.abs(to_uint8(G16(z)).astype(int) - to_uint8(G(z)).astype(int)).max()
    assert change <= 1


def _cli(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="stylelens")
    register(Commands(parser.add_subparsers(dest="command", required=True)), Settings())
    args = parser.parse_args(argv)
    args.func(args)


def test_train_resume_and_export_commands(tmp_path: Path, capsys, models_dir: Path):
    for i in range(5):
        rng = np.random.RandomState(i)
        _save(tmp_path / "faces" / f"{i}.png", (rng.rand(40, 48, 3) * 255).astype(np.uint8))
    run_dir = tmp_path / "runs" / "tiny"
    tiny = ["--res", "32", "--batch", "4", "--z-dim", "32", "--w-dim", "32", "--channel-base",
            "256", "--channel-max", "32", "--tick-kimg", "0.004", "--workers", "0",
            "--device", "cpu", "--no-progress"]  # fmt: skip
    _cli(["train", "--data", str(tmp_path / "faces"), "--outdir", str(run_dir), "--kimg", "0.004",
          "--freeze-g", "mapping", *tiny])  # fmt: skip
    record = read_run(run_dir)
    assert record.config.augment == AugmentConfig()  # a folder: augmentation on by default
    assert record.config.freeze_g == ("mapping",) and record.data["num_images"] == 5
    _cli(["train", "--resume", str(run_dir), "--kimg", "0.008", "--device", "cpu",
          "--no-progress"])  # fmt: skip
    assert read_checkpoint(run_dir / CHECKPOINT_FILE)["progress"]["cur_nimg"] == 8
    with pytest.raises(TrainingError, match="resolution: 32 -> 64"):
        _cli(["train", "--resume", str(run_dir), "--res", "64", "--no-progress"])
    with pytest.raises(TrainingError, match="needs --data"):
        _cli(["train", "--outdir", str(tmp_path / "x")])
    _cli(["export", str(run_dir), "--id", "tiny-cli", "--models-dir", str(tmp_path / "models")])
    assert "wrote" in capsys.readouterr().out
    assert load_card(tmp_path / "models" / "tiny-cli").generator.img_resolution == 32
    assert (run_dir / CONFIG_FILE).is_file()
    # Fine-tuning by model id: the architecture comes from the model's card.
    tuned = tmp_path / "runs" / "tuned"
    _cli(["train", "--data", str(tmp_path / "faces"), "--outdir", str(tuned), "--init",
          "tiny-nvidia", "--models-dir", str(models_dir), "--freeze-d", "1", "--batch", "4",
          "--kimg", "0.004", "--device", "cpu", "--no-progress"])  # fmt: skip
    cfg = read_run(tuned).config
    assert (cfg.resolution, cfg.z_dim, cfg.channel_base, cfg.conv_clamp) == (32, 32, 256, None)
    assert cfg.init == str((models_dir / "tiny-nvidia").resolve()) and cfg.freeze_d == 1
    assert read_run(tuned).init_model["id"] == "tiny-nvidia"


# ----------------------------------------------------------------------------
# Growing a model to a higher resolution


def test_grown_model_renders_the_source_upsampled_and_keeps_its_weights(
    tmp_path: Path, models_dir: Path
):
    source = models_dir / "tiny-nvidia"
    card = grow_model(source, resolution=64, model_id="tiny-64", models_dir=tmp_path)
    assert card.generator.img_resolution == 64 and card.num_ws == load_card(source).num_ws + 2
    G_src, _ = load_generator(source)
    G, _ = load_generator(tmp_path / "tiny-64")
    z = torch.cat([z_from_seed(s, 32) for s in range(3)])
    with torch.no_grad():
        expected = ops.upsample2d(G_src(z), ops.setup_filter())
        assert torch.allclose(G(z), expected, atol=1e-6)
        assert torch.equal(G.mapping.w_avg, G_src.mapping.w_avg)
    # The discriminator: a new input block; every source tensor but its fromRGB carried over.
    D_src, _ = load_discriminator(source)
    D, _ = load_discriminator(tmp_path / "tiny-64")
    src_state, state = D_src.state_dict(), D.state_dict()
    new = sorted({name.split(".")[0] for name in state if name not in src_state})
    assert new == ["b64"]
    for name, value in state.items():
        if name in src_state:
            assert torch.equal(value, src_state[name]), name
    assert set(src_state) - set(state) == {n for n in src_state if n.startswith("b32.fromrgb")}
    with pytest.raises(TrainingError, match="power of two above"):
        grow_model(source, resolution=32, model_id="x", models_dir=tmp_path)
    with pytest.raises(TrainingError, match="not a valid model id"):
        grow_model(source, resolution=64, model_id="Bad Id", models_dir=tmp_path)


def test_grow_command_then_train_the_new_blocks(tmp_path: Path, capsys, models_dir: Path):
    grown_dir = tmp_path / "models"
    _cli(["grow", str(models_dir / "tiny-nvidia"), "--res", "64", "--id", "tiny-64",
          "--models-dir", str(grown_dir)])  # fmt: skip
    out = capsys.readouterr().out
    assert "--freeze-g mapping,b4,b8,b16,b32" in out
    run_dir = tmp_path / "run"
    _cli(["train", "--data", "synthfaces", "--outdir", str(run_dir), "--init", "tiny-64",
          "--models-dir", str(grown_dir), "--freeze-g", "mapping,b4,b8,b16,b32", "--batch", "4",
          "--kimg", "0.004", "--device", "cpu", "--no-progress"])  # fmt: skip
    payload = read_checkpoint(run_dir / CHECKPOINT_FILE)
    G_src, _ = load_generator(grown_dir / "tiny-64")
    trained = payload["G"]
    for name, value in G_src.state_dict().items():  # frozen: bit-identical (w_avg is tracked)
        if not name.startswith("synthesis.b64.") and name != "mapping.w_avg":
            assert torch.equal(trained[name], value), name
    assert not torch.equal(trained["synthesis.b64.torgb.weight"], G_src.synthesis.b64.torgb.weight)
