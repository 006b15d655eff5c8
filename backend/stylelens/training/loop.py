"""The StyleGAN2 training loop: one minibatch at a time, ticks, checkpoints, sample grids.

One minibatch (``train_step``) runs the phases of stylegan2-ada-pytorch's training loop
(Karras et al., NeurIPS 2020) in their order: G main (non-saturating loss), G regularisation
(path length, every ``pl_interval`` minibatches), D main (logistic loss), D regularisation (R1,
every ``r1_interval``), each phase its own optimiser step; then the G_ema update. ``train``
repeats it in ticks of ``tick_kimg`` and after each tick writes a metrics row and an atomic
checkpoint; every ``snapshot_kimg`` it renders a fixed grid of seeds with G_ema.

Run directory::

    config.json               the resolved TrainConfig, the data description, the init model
    metrics.csv               one row per tick (METRIC_COLUMNS)
    samples/fakesKKKKKK.KKK.png G_ema on seeds 0-15 (as ``stylelens render --seeds 0-15``)
    checkpoint.pt             everything a bit-exact ``--resume`` needs

Resume is exact because every random draw comes from the run's own generators (saved) and the
data order is a pure function of (seed, epoch): epoch e shows ``permutation(seed, e)``, whatever
the number of DataLoader workers.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from stylelens import __version__
from stylelens.checkpoints.native import load_card, now_iso
from stylelens.data.sources import TrainingData
from stylelens.errors import TrainingError
from stylelens.hardware import describe_hardware
from stylelens.networks import ops
from stylelens.networks.runtime import autocast, resolve_device
from stylelens.render import image_grid, render_seeds
from stylelens.training.augment import augment
from stylelens.training.config import (
    AUTO_FIELDS,
    TrainConfig,
    config_differences,
    config_from_dict,
    config_to_dict,
)
from stylelens.training.loss import (
    discriminator_loss,
    ema_beta,
    generator_loss,
    mix_styles,
    mixing_cutoff,
    path_length_noise,
    path_length_penalty,
    path_lengths,
    r1_loss,
    r1_penalty,
    tracked_w_avg,
)
from stylelens.training.state import (
    CHECKPOINT_FILE,
    TrainingState,
    read_checkpoint,
    restore_state,
    save_checkpoint,
    start_state,
    update_ema,
)
from stylelens.training.supervise import reconstruction_loss, supervised_latents

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
SAMPLES_DIR = "samples"
GRID_SEEDS = tuple(range(16))
METRIC_COLUMNS = ("kimg", "images_per_s", "seconds", "tick_seconds", "loss_g", "loss_d",
                  "r1", "pl", "d_real", "d_fake", "augment_p", "recon")  # fmt: skip


# ----------------------------------------------------------------------------
# Data order


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of epoch ``epoch``: a permutation of range(n) that depends on nothing else."""
    return np.random.default_rng([seed, epoch]).permutation(n)


class EpochSampler(torch.utils.data.Sampler[int]):
    """Endless indices: epoch 0's permutation, then epoch 1's, ... from position ``start``."""

    def __init__(self, n: int, *, seed: int, start: int = 0) -> None:
        self.n, self.seed, self.start = n, seed, start

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.start, self.n)
        while True:
            yield from epoch_permutation(self.seed, epoch, self.n)[offset:].tolist()
            epoch, offset = epoch + 1, 0


# ----------------------------------------------------------------------------
# One minibatch


@dataclass(frozen=True)
class StepReport:
    """Losses of one minibatch; ``r1`` / ``pl`` are None when the lazy regulariser skipped it,
    ``recon`` when the run has no supervised phase."""

    loss_g: float
    loss_d: float
    d_real: float  # mean D logit on real images
    d_fake: float  # mean D logit on generated images
    r1: float | None  # mean ||grad D(x)||^2
    pl: float | None  # mean path-length penalty
    recon: float | None = None  # reconstruction loss of the supervised phase


def _generate(
    state: TrainingState, n: int, *, track_w_avg: bool = False, ws_grad: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """n images with style mixing and random noise: (img [n, 3, R, R], ws [n, num_ws, w_dim],
    D's condition [n, c_dim] or None): the condition of a conditional D is z's first c_dim
    entries (for SynthFaces, the parameters G was asked to draw; the config keeps mixing off).

    ``ws_grad`` makes ws differentiable even when the mapping network is frozen (path length,
    whose double backward runs the eager network; the other phases may run a compiled one).
    """
    cfg, G, dev = state.config, state.G, state.device
    z = torch.randn(n, G.z_dim, generator=state.rng.latents).to(dev)
    ws = G.mapping(z)
    if track_w_avg:
        G.mapping.w_avg.copy_(tracked_w_avg(G.mapping.w_avg, ws, beta=cfg.w_avg_beta))
    if cfg.style_mixing_prob > 0:
        z2 = torch.randn(n, G.z_dim, generator=state.rng.latents).to(dev)
        cutoff = mixing_cutoff(G.num_ws, prob=cfg.style_mixing_prob, generator=state.rng.latents)
        if cutoff < G.num_ws:
            ws = mix_styles(ws, G.mapping(z2), cutoff)
    if ws_grad and not ws.requires_grad:
        ws = ws.detach().requires_grad_(True)
    noise = G.synthesis.random_noise(n, generator=state.rng.noise, device=dev)
    synthesis = G.synthesis if ws_grad else state.fast_synthesis
    c_dim = state.D.config.c_dim
    return synthesis(ws, noise=noise), ws, (z[:, :c_dim] if c_dim else None)


def _discriminate(
    state: TrainingState, img: torch.Tensor, c: torch.Tensor | None, *, eager: bool = False
) -> torch.Tensor:
    """D's logits [N, 1] (after augmentation) given condition ``c`` (None for an unconditional
    D); ``eager`` for R1's double backward."""
    if state.config.augment is not None:
        img = augment(img, state.config.augment, generator=state.rng.augment)
    return state.D(img, c) if eager else state.fast_D(img, c)


def _optimise(opt: torch.optim.Optimizer, loss: torch.Tensor, params: list[Any]) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    for p in params:  # a non-finite gradient would poison Adam's moments for good
        if p.grad is not None:
            torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
    opt.step()


def _requires_grad(params: list[Any], flag: bool) -> None:
    for p in params:
        p.requires_grad_(flag)


def _g_main(state: TrainingState, batch: int, precision: str) -> float:
    """Non-saturating loss for G; D is a fixed function here. Returns the loss."""
    _requires_grad(state.trainable_g, True)
    _requires_grad(state.trainable_d, False)
    with autocast(state.device, precision):
        fake, _, c = _generate(state, batch, track_w_avg=True)
        fake_logits = _discriminate(state, fake, c)
    loss = generator_loss(fake_logits)
    _optimise(state.opt_g, loss, state.trainable_g)
    return loss.item()


def _g_reg(state: TrainingState, batch: int, precision: str) -> float:
    """Path-length regularisation on batch / pl_batch_shrink images. Returns the penalty."""
    cfg = state.config
    with autocast(state.device, precision):
        img, ws, _ = _generate(state, max(batch // cfg.pl_batch_shrink, 1), ws_grad=True)
    noise = path_length_noise(img.shape, generator=state.rng.noise, device=state.device)
    lengths = path_lengths(img, ws, noise)
    penalty, state.pl_mean = path_length_penalty(lengths, state.pl_mean, decay=cfg.pl_decay)
    _optimise(state.opt_g, penalty.mean() * cfg.pl_weight * cfg.pl_interval, state.trainable_g)
    return penalty.mean().item()


def _g_supervised(
    state: TrainingState, x: torch.Tensor, param_z: torch.Tensor, precision: str
) -> float:
    """G draws each real face from its parameters as z (``stylelens.training.supervise``),
    weighted by ``config.supervise`` (compared at ``supervise_res``, plus the eyes, mouth and
    chin at full size by ``supervise_detail``); no style mixing, random noise. Returns the loss."""
    _requires_grad(state.trainable_g, True)
    G = state.G
    z = supervised_latents(param_z, G.z_dim, generator=state.rng.latents).to(state.device)
    noise = G.synthesis.random_noise(len(z), generator=state.rng.noise, device=state.device)
    with autocast(state.device, precision):
        img = state.fast_synthesis(G.mapping(z), noise=noise)
    cfg = state.config
    loss = reconstruction_loss(img, x, resolution=cfg.supervise_res, detail=cfg.supervise_detail)
    _optimise(state.opt_g, loss * cfg.supervise, state.trainable_g)
    return loss.item()


def _d_main(
    state: TrainingState, x: torch.Tensor, c_real: torch.Tensor | None, precision: str
) -> tuple[float, float, float]:
    """Logistic loss for D on fresh fakes and the reals ``x`` (with their condition
    ``c_real`` when D is conditional; with ``condition_mismatch``, the reals shown with the
    next face's condition count as fakes too). Returns (loss, real, fake)."""
    _requires_grad(state.trainable_g, False)
    _requires_grad(state.trainable_d, True)
    with autocast(state.device, precision):
        with torch.no_grad():
            fake, _, c_fake = _generate(state, x.shape[0])
        fake_logits = _discriminate(state, fake, c_fake)
        real_logits = _discriminate(state, x, c_real)
    loss = discriminator_loss(real_logits, fake_logits)
    mismatch = state.config.condition_mismatch
    if mismatch and c_real is not None:
        with autocast(state.device, precision):
            wrong_logits = _discriminate(state, x, c_real.roll(1, dims=0))
        loss = loss + mismatch * F.softplus(wrong_logits.float()).mean()  # fake-side loss
    _optimise(state.opt_d, loss, state.trainable_d)
    return loss.item(), real_logits.float().mean().item(), fake_logits.float().mean().item()


def _d_reg(
    state: TrainingState, x: torch.Tensor, c_real: torch.Tensor | None, precision: str
) -> float:
    """Lazy R1 on the reals ``x`` (gradient in the image only). Returns the mean squared
    gradient norm."""
    cfg = state.config
    assert cfg.r1_gamma is not None
    x_in = x.detach().requires_grad_(True)
    with autocast(state.device, precision):
        logits = _discriminate(state, x_in, c_real, eager=True)
    penalty = r1_penalty(logits, x_in)
    _optimise(state.opt_d, r1_loss(penalty, gamma=cfg.r1_gamma, interval=cfg.r1_interval),
              state.trainable_d)  # fmt: skip
    return penalty.mean().item()


def train_step(
    state: TrainingState,
    real: torch.Tensor,
    *,
    precision: str,
    param_z: torch.Tensor | None = None,
) -> StepReport:
    """One minibatch: G main, G supervised (when ``config.supervise``), G reg (every
    pl_interval), D main, D reg (every r1_interval), each its own optimiser step as in
    stylegan2-ada-pytorch; then the EMA and the counters. With ``config.condition_d`` D sees
    each image's parameters: the reals' ``param_z``, the fakes' first entries of z.

    Args:
        state: the run (modified in place).
        real: [N, 3, R, R] uint8 real images, N = the batch size.
        precision: "float32" or "bfloat16" (autocast of the forward passes).
        param_z: [N, PARAM_DIMS] the real faces' parameter latents; needed when the config
            supervises or conditions D, ignored otherwise.
    """
    cfg = state.config
    assert cfg.r1_gamma is not None and cfg.ema_kimg is not None
    batch = real.shape[0]
    ops.assert_shape(real, [batch, 3, cfg.resolution, cfg.resolution], "real images")
    x = real.to(state.device, non_blocking=True).float() / 127.5 - 1  # [N, 3, R, R] in [-1, 1]
    c_real = None
    if cfg.condition_d:
        if param_z is None:
            raise TrainingError("config.condition_d needs the real faces' parameter latents")
        c_real = param_z.to(state.device).float()
    loss_g = _g_main(state, batch, precision)
    recon = None
    if cfg.supervise > 0:
        if param_z is None:
            raise TrainingError("config.supervise needs the real faces' parameter latents")
        recon = _g_supervised(state, x, param_z, precision)
    do_pl = cfg.pl_weight > 0 and state.step % cfg.pl_interval == 0
    pl = _g_reg(state, batch, precision) if do_pl else None
    loss_d, d_real, d_fake = _d_main(state, x, c_real, precision)
    do_r1 = cfg.r1_gamma > 0 and state.step % cfg.r1_interval == 0
    r1 = _d_reg(state, x, c_real, precision) if do_r1 else None
    beta = ema_beta(batch=batch, cur_nimg=state.cur_nimg, ema_kimg=cfg.ema_kimg,
                    ema_rampup=cfg.ema_rampup)  # fmt: skip
    update_ema(state.G_ema, state.G, beta)
    state.cur_nimg += batch
    state.data_position += batch
    state.step += 1
    return StepReport(loss_g=loss_g, loss_d=loss_d, d_real=d_real, d_fake=d_fake, r1=r1, pl=pl,
                      recon=recon)  # fmt: skip


# ----------------------------------------------------------------------------
# Run directory


@dataclass(frozen=True)
class RunRecord:
    """What ``config.json`` says about a run."""

    config: TrainConfig
    data: dict[str, Any]
    init_model: dict[str, Any] | None
    created: str


def read_run(run_dir: Path) -> RunRecord:
    """Read ``run_dir/config.json``. Raises TrainingError if it is not a training run."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        raw = json.loads(path.read_text())
        return RunRecord(
            config=config_from_dict(raw["train"]),
            data=dict(raw["data"]),
            init_model=raw.get("init_model"),
            created=raw.get("created", ""),
        )
    except FileNotFoundError as exc:
        raise TrainingError(f"{run_dir} is not a training run (no {CONFIG_FILE})") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TrainingError(f"{path}: not a valid training config ({exc})") from exc


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _write_run(run_dir: Path, record: RunRecord) -> None:
    _write_json(
        run_dir / CONFIG_FILE,
        {
            "train": config_to_dict(record.config),
            "data": record.data,
            "init_model": record.init_model,
            "created": record.created,
            "stylelens": __version__,
        },
    )


def _check_resume(run_dir: Path, config: TrainConfig, data: dict[str, Any]) -> TrainConfig:
    """The config to continue ``run_dir`` with: "auto" (None) fields of ``config`` take the
    stored values, so only settings the caller chose can differ; TrainingError if any does."""
    stored = read_run(run_dir)
    auto = {
        name: getattr(stored.config, name) for name in AUTO_FIELDS if getattr(config, name) is None
    }
    config = dataclasses.replace(config, **auto).resolved()
    diffs = config_differences(stored.config, config)
    for key in sorted(set(stored.data) | set(data)):
        if stored.data.get(key) != data.get(key):
            diffs.append(f"data.{key}: {stored.data.get(key)!r} -> {data.get(key)!r}")
    if diffs:
        raise TrainingError(
            f"{run_dir} was trained with a different configuration ({'; '.join(diffs)}); "
            "resume with the original settings (only kimg, tick_kimg, snapshot_kimg, device and "
            "num_workers may change) or start a new run"
        )
    return config


def _metrics_rows_until(path: Path, kimg: float) -> list[dict[str, str]]:
    """The rows of an earlier session up to the checkpoint (a crash may have left more)."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [row for row in csv.DictReader(f) if float(row["kimg"]) <= kimg + 1e-9]


def _write_metrics(path: Path, rows: list[dict[str, Any]], *, append: bool) -> None:
    with path.open("a" if append else "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        if not append:
            writer.writeheader()
        writer.writerows(rows)


def _snapshot(state: TrainingState, run_dir: Path) -> Path:
    images = [img for _, img in render_seeds(state.G_ema, GRID_SEEDS, batch_size=8)]
    # kimg with three decimals: short CPU ticks must not overwrite each other's grids
    path = run_dir / SAMPLES_DIR / f"fakes{state.cur_nimg / 1000:010.3f}.png"
    image_grid(images, cols=4).save(path)
    return path


def _summarise(reports: list[StepReport], state: TrainingState, seconds: float) -> dict[str, Any]:
    def mean(values: list[float | None]) -> float | str:
        present = [v for v in values if v is not None]
        return round(sum(present) / len(present), 6) if present else ""

    n = len(reports) * (state.config.batch or 1)
    aug = state.config.augment
    return {
        "kimg": round(state.cur_nimg / 1000, 3),
        "images_per_s": round(n / max(seconds, 1e-9), 2),
        "seconds": round(state.seconds, 1),
        "tick_seconds": round(seconds, 2),
        "loss_g": mean([r.loss_g for r in reports]),
        "loss_d": mean([r.loss_d for r in reports]),
        "r1": mean([r.r1 for r in reports]),
        "pl": mean([r.pl for r in reports]),
        "d_real": mean([r.d_real for r in reports]),
        "d_fake": mean([r.d_fake for r in reports]),
        "augment_p": aug.p if aug is not None else 0.0,
        "recon": mean([r.recon for r in reports]),
    }


# ----------------------------------------------------------------------------
# The run


def resolve_precision(precision: str, device: torch.device) -> str:
    """Resolve "auto": bfloat16 on CUDA, float32 on a CPU. bfloat16 on a CPU is taken where the
    CPU computes it natively (AVX-512-BF16 or AMX; about 1.5x faster at 256 px, performance.md)
    and refused where it would be emulated (tens of times slower)."""
    from stylelens.hardware import cpu_has_native_bf16

    if precision == "auto":
        return "bfloat16" if device.type == "cuda" else "float32"
    if precision == "bfloat16" and device.type == "cpu" and not cpu_has_native_bf16():
        raise TrainingError(
            "this CPU has no native bfloat16 (AVX-512-BF16 or AMX): bfloat16 autocast would "
            "run tens of times slower than float32; use --precision float32"
        )
    return precision


def default_tick_kimg(device: torch.device) -> float:
    """Tick length when the config says None: 1 kimg on a CPU (a few minutes), 10 on CUDA."""
    return 10.0 if device.type == "cuda" else 1.0


def default_workers(device: torch.device) -> int:
    """DataLoader workers when the config says None: 2 on CUDA; 0 on a CPU, where worker
    processes take cores from PyTorch's threads (on a loaded 2-core machine a busy core made
    a tiny training step 30-100x slower: threads wait for a descheduled sibling at every op)."""
    return 2 if device.type == "cuda" else 0


def train(
    config: TrainConfig,
    *,
    run_dir: Path,
    data: TrainingData,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainingState:
    """Train (or continue training) a StyleGAN2 until ``config.kimg``.

    Args:
        config: hyper-parameters; "auto" fields are resolved here.
        run_dir: the run directory; created for a new run, continued with ``resume``.
        data: images and their description (``stylelens.data.sources.open_dataset``).
        resume: continue from ``run_dir/checkpoint.pt``; the config must equal the stored one
            except for kimg, tick_kimg, snapshot_kimg, device and num_workers.
        progress: show a tqdm bar (img/s) on stderr.
        log: where one-line messages go (default: above the progress bar on stderr).

    Returns:
        The final state (networks, optimisers, counters).

    Raises:
        TrainingError: run directory clash, config mismatch on resume, unreadable checkpoint,
            bfloat16 on a CPU, or a dataset with images of the wrong size.
    """
    say = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    run_dir = Path(run_dir)
    try:
        cfg = _check_resume(run_dir, config, data.description) if resume else config.resolved()
        device = resolve_device(cfg.device)
    except ValueError as exc:
        raise TrainingError(str(exc)) from exc
    precision = resolve_precision(cfg.precision, device)
    state = _resume(run_dir, cfg, device) if resume else _start(run_dir, cfg, device, data, say)
    hardware = describe_hardware(device)
    if hardware not in state.hardware:
        state.hardware.append(hardware)
    metrics_path = run_dir / METRICS_FILE
    kept = _metrics_rows_until(metrics_path, state.cur_nimg / 1000) if resume else []
    _write_metrics(metrics_path, kept, append=False)
    say(f"data: {data.summary}")
    say(f"{cfg.resolution}px, batch {cfg.batch}, {device.type} {precision}; {hardware}")
    if resume:
        say(f"resuming {run_dir} at {state.cur_nimg / 1000:.3f} kimg")
    else:
        _snapshot(state, run_dir)
    _run_ticks(state, run_dir, data, precision=precision, progress=progress, say=say)
    return state


def _start(
    run_dir: Path,
    cfg: TrainConfig,
    device: torch.device,
    data: TrainingData,
    say: Callable[[str], None],
) -> TrainingState:
    """A new run: refuse to overwrite one, build the state, write config.json."""
    if (run_dir / CONFIG_FILE).exists() or (run_dir / CHECKPOINT_FILE).exists():
        raise TrainingError(
            f"{run_dir} already holds a training run; continue it with --resume {run_dir} "
            "or choose another --outdir"
        )
    state, notes = start_state(cfg, device)
    init_model = None
    if cfg.init:
        card = load_card(Path(cfg.init))
        init_model = {"id": card.id, "name": card.name, "license": card.license,
                      "source": card.source.format}  # fmt: skip
        for history in ("training", "grown_from", "param_mapping"):  # how it was made, if known
            if getattr(card, history, None) is not None:
                init_model[history] = getattr(card, history)
    (run_dir / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
    _write_run(run_dir, RunRecord(cfg, data.description, init_model, now_iso()))
    for note in notes:
        say(note)
    return state


def _resume(run_dir: Path, cfg: TrainConfig, device: torch.device) -> TrainingState:
    """The state of ``run_dir``'s checkpoint; config.json records the new resumable fields."""
    payload = read_checkpoint(run_dir / CHECKPOINT_FILE)
    state, _ = start_state(cfg, device, load_init=False)
    restore_state(state, payload)
    (run_dir / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
    _write_run(run_dir, dataclasses.replace(read_run(run_dir), config=cfg))
    return state


def _run_ticks(
    state: TrainingState,
    run_dir: Path,
    data: TrainingData,
    *,
    precision: str,
    progress: bool,
    say: Callable[[str], None],
) -> None:
    cfg = state.config
    assert cfg.batch is not None
    total = round(cfg.kimg * 1000)
    tick_kimg = default_tick_kimg(state.device) if cfg.tick_kimg is None else cfg.tick_kimg
    tick_nimg = max(1, round(tick_kimg * 1000))
    snap_nimg = max(1, round(cfg.snapshot_kimg * 1000))
    if state.cur_nimg >= total:
        say(f"already trained for {state.cur_nimg / 1000:.3f} kimg; raise --kimg to go on")
        return
    sampler = EpochSampler(len(data.dataset), seed=cfg.seed, start=state.data_position)  # type: ignore[arg-type]
    loader = torch.utils.data.DataLoader(
        data.dataset,
        batch_size=cfg.batch,
        sampler=sampler,
        num_workers=default_workers(state.device) if cfg.num_workers is None else cfg.num_workers,
        pin_memory=state.device.type == "cuda",
        generator=torch.Generator(),  # keeps the DataLoader off the global random state
    )
    bar = tqdm(total=total, initial=state.cur_nimg, unit="img", unit_scale=True, desc="train",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)  # fmt: skip
    batches = iter(loader)
    try:
        while state.cur_nimg < total:
            tick_start_nimg, t0, reports = state.cur_nimg, time.perf_counter(), []
            while state.cur_nimg < min(tick_start_nimg + tick_nimg, total):
                real, param_z = next(batches), None
                if isinstance(real, (list, tuple)):  # (images, parameter latents)
                    real, param_z = real
                if tuple(real.shape[1:]) != (3, cfg.resolution, cfg.resolution):
                    raise TrainingError(
                        f"the dataset yields images of shape {list(real.shape[1:])}, "
                        f"training needs [3, {cfg.resolution}, {cfg.resolution}]"
                    )
                reports.append(train_step(state, real, precision=precision, param_z=param_z))
                bar.update(cfg.batch)
            if state.device.type == "cuda":
                torch.cuda.synchronize(state.device)
            seconds = time.perf_counter() - t0
            state.seconds += seconds
            row = _summarise(reports, state, seconds)
            save_checkpoint(run_dir / CHECKPOINT_FILE, state, metrics=row)
            _write_metrics(run_dir / METRICS_FILE, [row], append=True)
            crossed = state.cur_nimg // snap_nimg > tick_start_nimg // snap_nimg
            if crossed or state.cur_nimg >= total:
                _snapshot(state, run_dir)
            bar.set_postfix(G=row["loss_g"], D=row["loss_d"], refresh=False)
            if not math.isfinite(float(row["loss_g"])) or not math.isfinite(float(row["loss_d"])):
                raise TrainingError(
                    f"losses became non-finite at {row['kimg']} kimg; lower the learning rate or "
                    "raise r1_gamma and start again"
                )
    finally:
        bar.close()
        del batches  # stops the worker processes
