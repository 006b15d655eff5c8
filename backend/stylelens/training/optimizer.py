"""Training seed 001's learned optimizer for a generator, resumable, on a CPU or a GPU.

Targets are synthetic, ``I = G(w_gt)`` with ``w_gt`` from a random ``z`` (each truncated with
its own psi from ``psi_range``), so the true latent is known. ``batch`` inversions run side by
side, each for ``trajectory`` steps from its own start: the model's encoder (``encoder(I)``,
as the paper), a random latent (the ``w`` of another random ``z``, in every layer) or
``w_avg``, mixed by ``start_mix``. When one finishes, a new target takes its place (the first
ones finish at staggered times, so every batch mixes early and late steps).

One training iteration is one step of every inversion: ``w_t = w_{t-1} + g_theta(f_{t-1},
w_{t-1})``, one generator pass at ``w_t`` gives the image loss and its gradient ``dL/dw_t`` (the
inversion's next Adam direction ``f_t`` comes from it), and theta takes an Adam step on the
gradient, through that last update, of the image loss plus the latent loss ``||w_t -
w_gt||^2`` (seed 001). Both are taken in log, i.e. each inversion counts by its relative
improvement: with plain losses the first steps from a random start (losses 10-100x larger)
would decide everything, and the steps that matter for reaching a good loss would not. So one
iteration costs one forward and backward pass per inversion, the same as inverting.

Early stopping as the paper: every ``eval_every`` finished trajectories ("training images")
the optimizer inverts a fixed test set (model samples from seeds no training draws, half from
the encoder, half from random starts) for ``trajectory`` steps; the score is the mean log image
loss at the end. Training stops after ``patience`` images without a better score (or at
``images``) and keeps the best optimizer. The first evaluation, before any training, scores
the untrained optimizer, which is exactly Adam at ``base_lr``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from stylelens.encoders.encode import encode
from stylelens.errors import TrainingError
from stylelens.hardware import describe_hardware
from stylelens.inversion.common import perceptual_weight, w_std
from stylelens.inversion.learned import AdamMoments, LearnedOptimizer, image_loss
from stylelens.inversion.optimizer_store import save_optimizer
from stylelens.losses import PerceptualLoss
from stylelens.networks.stylegan2 import Generator
from stylelens.render import z_from_seed
from stylelens.training.state import (
    _global_rng,
    _restore_global_rng,
    read_state_file,
    write_state_file,
)

STATE_VERSION = 1
RESUMABLE = ("images", "patience", "tick_iterations")
STARTS = ("encoder", "random", "average")
# z seeds of the early-stopping test set (z_from_seed); training draws z from its own
# torch.Generator stream, and the benchmarks use seeds 10,000+ and the held-out SynthFaces.
EVAL_FIRST_SEED = 7_000_000
EVAL_PSI = 0.75


@dataclass(frozen=True)
class OptimizerTrainConfig:
    """Hyper-parameters of ``stylelens train-optimizer`` (defaults for a 256 px model)."""

    images: int = 5000  # training targets at most (the paper's 5,000)
    batch: int = 8  # inversions side by side
    trajectory: int = 50  # steps per target
    lr: float = 1e-3  # Adam on the optimizer's weights
    grad_clip: float = 1.0  # on the weights' gradient norm
    latent_weight: float = 1.0  # of log ||w_t - w_gt||^2 next to log image loss
    perceptual: str = "auto"  # a stylelens.losses backend (the caller builds it)
    perceptual_weight: float | None = None  # None: the backend's default, as in inversion
    start_mix: tuple[float, float, float] = (0.5, 0.25, 0.25)  # encoder, random, average
    psi_range: tuple[float, float] = (0.5, 1.0)
    eval_every: int = 100  # images between test-set evaluations (the paper's 100)
    patience: int = 1000  # images without improvement before stopping (the paper's 1,000)
    eval_targets: int = 8
    hidden: int = 64
    depth: int = 4
    base_lr: float = 0.01  # the untrained optimizer is Adam at this rate (seed 001's)
    max_factor: float = 10.0
    seed: int = 0
    tick_iterations: int = 25  # iterations between state-file writes

    def __post_init__(self) -> None:
        if min(self.images, self.batch, self.trajectory, self.eval_every) < 1:
            raise ValueError("images, batch, trajectory and eval_every must be at least 1")
        if self.eval_targets < 2 or self.tick_iterations < 1 or self.patience < 1:
            raise ValueError("eval_targets must be at least 2, tick_iterations and patience 1")
        if not (self.lr > 0 and self.grad_clip > 0 and self.latent_weight >= 0):  # NaN fails
            raise ValueError("lr and grad_clip must be positive, latent_weight >= 0")
        if not math.isfinite(self.lr) or not math.isfinite(self.latent_weight):
            raise ValueError("lr and latent_weight must be finite")
        if len(self.start_mix) != 3 or min(self.start_mix) < 0 or sum(self.start_mix) <= 0:
            raise ValueError(f"start_mix {self.start_mix}: three shares >= 0, not all 0")
        lo, hi = self.psi_range
        if not 0 <= lo <= hi:
            raise ValueError(f"psi_range {self.psi_range}: need 0 <= low <= high")

    def optimizer_config(self, G: Generator) -> dict[str, Any]:
        return {
            "num_ws": G.num_ws,
            "w_dim": G.w_dim,
            "hidden": self.hidden,
            "depth": self.depth,
            "base_lr": self.base_lr,
            "max_factor": self.max_factor,
        }

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass
class Pool:
    """The inversions in flight, one row each."""

    target: torch.Tensor  # [B, 3, R, R]
    w_gt: torch.Tensor  # [B, num_ws, w_dim]
    ws: torch.Tensor  # current latents
    direction: torch.Tensor  # Adam's direction from the last gradient (0 before the first)
    moments: AdamMoments
    length: torch.Tensor  # [B] steps this row's trajectory runs
    start: torch.Tensor  # [B] index into STARTS


@dataclass
class OptimizerTrainingState:
    config: OptimizerTrainConfig
    optimizer: LearnedOptimizer
    opt: torch.optim.Adam
    latents: torch.Generator  # CPU: z, psi and starts of new targets
    pool: Pool | None = None
    best: dict[str, torch.Tensor] | None = None  # state dict of the best optimizer so far
    best_score: float = math.inf
    best_images: int = 0
    curve: list[list[float]] = field(default_factory=list)  # [images, test score, mse]
    iterations: int = 0
    images: int = 0  # trajectories finished
    next_eval: int = 0
    seconds: float = 0.0
    hardware: list[str] = field(default_factory=list)
    last: dict[str, float] = field(default_factory=dict)

    @property
    def stopped_early(self) -> bool:
        return self.images - self.best_images >= self.config.patience and bool(self.curve)


class Context:
    """What training needs besides its state: the frozen generator, the losses, the encoder."""

    def __init__(
        self,
        G: Generator,
        perceptual: PerceptualLoss | None,
        config: OptimizerTrainConfig,
        encoder: torch.nn.Module | None,
    ) -> None:
        self.G, self.perceptual, self.encoder = G, perceptual, encoder
        self.weight = perceptual_weight(perceptual, config.perceptual_weight)
        mix = list(config.start_mix)
        if encoder is None:  # its share goes to w_avg
            mix = [0.0, mix[1], mix[2] + mix[0]]
        self.mix = torch.tensor(mix) / sum(mix)
        self.device = G.mapping.w_avg.device

    def starts(self, target: torch.Tensor, kind: torch.Tensor, gen: torch.Generator):
        """Start latents [n, num_ws, w_dim] for targets [n, 3, R, R] by start kind [n]."""
        G = self.G
        n = target.shape[0]
        z = torch.randn(n, G.z_dim, generator=gen).to(self.device)
        with torch.no_grad():
            ws = G.mapping(z)  # "random": another random latent
        for i in range(n):
            if STARTS[int(kind[i])] == "average":
                ws[i] = G.mapping.w_avg.detach()
            elif STARTS[int(kind[i])] == "encoder":
                assert self.encoder is not None
                ws[i] = encode(self.encoder, target[i : i + 1]).to(self.device)[0]
        return ws

    def loss(self, ws: torch.Tensor, target: torch.Tensor):
        """Per-row image loss [N] and its gradient at ``ws``; also the mean MSE."""
        leaf = ws.detach().requires_grad_(True)
        img = self.G.synthesis(leaf)
        loss, mse, _ = image_loss(img, target, self.perceptual, self.weight)
        (grad,) = torch.autograd.grad(loss.sum(), leaf)
        return loss.detach(), grad, float(mse.detach().mean())


def _targets(ctx: Context, n: int, gen: torch.Generator, psi_range: tuple[float, float]):
    G = ctx.G
    z = torch.randn(n, G.z_dim, generator=gen).to(ctx.device)
    psi = torch.empty(n).uniform_(*psi_range, generator=gen).to(ctx.device)
    with torch.no_grad():
        w_gt = G.mapping.w_avg.lerp(G.mapping(z), psi.view(-1, 1, 1))
        return w_gt, G.synthesis(w_gt)


def new_pool(state: OptimizerTrainingState, ctx: Context) -> Pool:
    cfg = state.config
    w_gt, target = _targets(ctx, cfg.batch, state.latents, cfg.psi_range)
    kind = torch.multinomial(ctx.mix, cfg.batch, replacement=True, generator=state.latents)
    ws = ctx.starts(target, kind, state.latents)
    # staggered first trajectories, so that each batch mixes early and late steps
    length = torch.tensor(
        [max(1, round(cfg.trajectory * (i + 1) / cfg.batch)) for i in range(cfg.batch)]
    )
    return Pool(target, w_gt, ws, torch.zeros_like(ws), AdamMoments.zeros_like(ws), length, kind)


def refill(state: OptimizerTrainingState, ctx: Context, rows: torch.Tensor) -> None:
    """Give the rows where ``rows`` is set new targets and starts."""
    pool, cfg = state.pool, state.config
    assert pool is not None
    idx = rows.nonzero().flatten()
    if idx.numel() == 0:
        return
    w_gt, target = _targets(ctx, idx.numel(), state.latents, cfg.psi_range)
    kind = torch.multinomial(ctx.mix, idx.numel(), replacement=True, generator=state.latents)
    ws = ctx.starts(target, kind, state.latents)
    pool.target[idx], pool.w_gt[idx], pool.ws[idx] = target, w_gt, ws
    pool.direction[idx] = 0
    pool.moments.reset(rows.to(ctx.device))
    pool.length[idx] = cfg.trajectory
    pool.start[idx] = kind


def train_iteration(state: OptimizerTrainingState, ctx: Context) -> dict[str, float]:
    """One step of every inversion in the pool and one Adam step on the optimizer."""
    cfg, pool, g = state.config, state.pool, state.optimizer
    assert pool is not None
    moved = pool.moments.t > 0  # rows whose update came from g (the others only start)
    step = g.step_size(pool.direction, pool.ws)
    ws_new = pool.ws + step * pool.direction
    loss, grad, mse = ctx.loss(ws_new, pool.target)
    latent = (ws_new - pool.w_gt).square().mean(dim=(1, 2))  # [B], through g
    # log L(w_t) to first order in the update: its gradient through g is (dL/dw_t / L) dw_t/dθ
    surrogate = (ws_new * grad).sum(dim=(1, 2)) / loss.clamp_min(1e-12)
    objective = surrogate + cfg.latent_weight * latent.clamp_min(1e-12).log()
    out = {"image": float(loss.mean()), "mse": mse, "latent": float(latent.detach().mean())}
    if bool(moved.any()):
        state.opt.zero_grad(set_to_none=True)
        objective[moved].mean().backward()
        torch.nn.utils.clip_grad_norm_(g.parameters(), cfg.grad_clip)
        state.opt.step()
        out["step_factor"] = float((step.detach()[moved] / cfg.base_lr).mean())
    with torch.no_grad():
        pool.ws = ws_new.detach()
        pool.direction = pool.moments.direction(grad)
    state.iterations += 1
    finished = pool.moments.t.cpu() >= pool.length
    state.images += int(finished.sum())
    refill(state, ctx, finished)
    return out


@dataclass
class TestSet:
    target: torch.Tensor
    start: torch.Tensor


def test_set(ctx: Context, config: OptimizerTrainConfig) -> TestSet:
    """Fixed model samples (seeds from EVAL_FIRST_SEED), half started by the encoder (w_avg
    without one), half from random latents."""
    G, n = ctx.G, config.eval_targets
    z = torch.cat([z_from_seed(EVAL_FIRST_SEED + i, G.z_dim) for i in range(2 * n)]).float()
    with torch.no_grad():
        w_gt = G.mapping(z[:n].to(ctx.device), truncation_psi=EVAL_PSI)
        target = G.synthesis(w_gt)
        random_ws = G.mapping(z[n:].to(ctx.device))
    first = STARTS.index("encoder" if ctx.encoder is not None else "average")
    kind = torch.tensor([first] * (n // 2) + [STARTS.index("random")] * (n - n // 2))
    start = ctx.starts(target, kind, torch.Generator().manual_seed(0))
    start[n // 2 :] = random_ws[n // 2 :]
    return TestSet(target, start)


def evaluate(
    optimizer: LearnedOptimizer, ctx: Context, tests: TestSet, steps: int
) -> tuple[float, float]:
    """(mean log image loss, mean MSE) of the test set after ``steps`` learned steps."""
    ws = tests.start.clone()
    moments = AdamMoments.zeros_like(ws)
    for _ in range(steps):
        _, grad, _ = ctx.loss(ws, tests.target)
        with torch.no_grad():
            direction = moments.direction(grad)
            ws = ws + optimizer(direction, ws)
    with torch.no_grad():
        img = ctx.G.synthesis(ws)
        loss, mse, _ = image_loss(img, tests.target, ctx.perceptual, ctx.weight)
    return float(loss.clamp_min(1e-12).log().mean()), float(mse.mean())


def start_state(config: OptimizerTrainConfig, G: Generator) -> OptimizerTrainingState:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        optimizer = LearnedOptimizer(**config.optimizer_config(G))
    optimizer.set_latent_statistics(G, w_std(G))
    optimizer = optimizer.to(G.mapping.w_avg.device).train()
    return OptimizerTrainingState(
        config=config,
        optimizer=optimizer,
        opt=torch.optim.Adam(optimizer.parameters(), lr=config.lr),
        latents=torch.Generator().manual_seed(config.seed + 1),
    )


def save_state(path: Path, state: OptimizerTrainingState) -> None:
    """Write everything a resume needs, atomically."""
    pool = None
    if state.pool is not None:
        p = state.pool
        pool = {
            "target": p.target, "w_gt": p.w_gt, "ws": p.ws, "direction": p.direction,
            "m": p.moments.m, "v": p.moments.v, "t": p.moments.t, "length": p.length,
            "start": p.start,
        }  # fmt: skip
    payload = {
        "version": STATE_VERSION,
        "config": state.config.as_dict(),
        "optimizer": state.optimizer.state_dict(),
        "opt": state.opt.state_dict(),
        "latents": state.latents.get_state(),
        "global_rng": _global_rng(),
        "pool": pool,
        "best": state.best,
        "progress": {
            "best_score": state.best_score, "best_images": state.best_images,
            "curve": state.curve, "iterations": state.iterations, "images": state.images,
            "next_eval": state.next_eval, "seconds": state.seconds,
            "hardware": list(state.hardware), "last": dict(state.last),
        },
    }  # fmt: skip
    write_state_file(path, payload)


def resume_state(path: Path, config: OptimizerTrainConfig, G: Generator) -> OptimizerTrainingState:
    """The state stored in ``path`` (``config`` may differ only in :data:`RESUMABLE` fields).

    Raises:
        TrainingError: missing or unreadable file, or another config.
    """
    payload = read_state_file(
        path, STATE_VERSION, "optimizer training state", resumable=RESUMABLE,
        config=config.as_dict(),
    )  # fmt: skip
    state = start_state(config, G)
    device = G.mapping.w_avg.device
    state.optimizer.load_state_dict(payload["optimizer"])
    state.opt.load_state_dict(payload["opt"])
    state.latents.set_state(payload["latents"])
    if payload["pool"] is not None:
        p = {k: v.to(device) if k not in ("length", "start") else v
             for k, v in payload["pool"].items()}  # fmt: skip
        state.pool = Pool(
            p["target"], p["w_gt"], p["ws"], p["direction"],
            AdamMoments(p["m"], p["v"], p["t"]), p["length"], p["start"],
        )  # fmt: skip
    state.best = payload["best"]
    q = payload["progress"]
    state.best_score, state.best_images = q["best_score"], q["best_images"]
    state.curve, state.iterations, state.images = q["curve"], q["iterations"], q["images"]
    state.next_eval, state.seconds = q["next_eval"], q["seconds"]
    state.hardware, state.last = list(q["hardware"]), dict(q["last"])
    _restore_global_rng(payload["global_rng"])
    return state


def train_optimizer(
    G: Generator,
    perceptual: PerceptualLoss | None,
    config: OptimizerTrainConfig,
    *,
    state_path: Path,
    encoder: torch.nn.Module | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> OptimizerTrainingState:
    """Train until ``config.images`` or early stopping, writing ``state_path`` every
    ``tick_iterations`` and after every evaluation; the state's ``best`` is the optimizer to
    keep.

    Raises:
        TrainingError: a state file exists without ``resume`` (or is unusable with it), or the
            losses become non-finite.
    """
    say = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    G = G.eval().requires_grad_(False)
    ctx = Context(G, perceptual, config, encoder)
    if resume:
        state = resume_state(state_path, config, G)
        say(f"resuming {state_path} at {state.images} images")
    elif state_path.exists():
        raise TrainingError(f"{state_path} exists; continue it with --resume or choose --out-state")
    else:
        state = start_state(config, G)
    hardware = describe_hardware(ctx.device)
    if hardware not in state.hardware:
        state.hardware.append(hardware)
    tests = test_set(ctx, config)
    bar = tqdm(total=config.images, initial=state.images, unit="img", desc="train-optimizer",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)  # fmt: skip
    try:
        while True:
            t0 = time.perf_counter()
            due = state.images >= min(state.next_eval, config.images)
            if due and (not state.curve or state.curve[-1][0] != state.images):
                score, mse = evaluate(state.optimizer, ctx, tests, config.trajectory)
                state.curve.append([state.images, round(score, 5), round(mse, 6)])
                if score < state.best_score:
                    state.best_score, state.best_images = score, state.images
                    state.best = copy.deepcopy(state.optimizer.state_dict())
                say(f"{state.images} images: test log-loss {score:.4f} (best {state.best_score:.4f}"
                    f" at {state.best_images}), mse {mse:.5f}")  # fmt: skip
                state.next_eval = state.images + config.eval_every
            elif state.images >= config.images or state.stopped_early:
                break
            else:
                if state.pool is None:
                    state.pool = new_pool(state, ctx)
                reports = []
                for _ in range(config.tick_iterations):
                    before = state.images
                    reports.append(train_iteration(state, ctx))
                    bar.update(state.images - before)
                    if state.images >= min(state.next_eval, config.images):
                        break
                state.last = {k: sum(r.get(k, 0.0) for r in reports) / len(reports)
                              for k in reports[-1]}  # fmt: skip
                bar.set_postfix(
                    img=f"{state.last['image']:.4f}",
                    step=f"{state.last.get('step_factor', 1):.2f}x",
                    refresh=False,
                )
                if not all(math.isfinite(v) for v in state.last.values()):
                    raise TrainingError(
                        f"losses became non-finite at iteration {state.iterations}; lower --lr"
                    )
            state.seconds += time.perf_counter() - t0
            save_state(state_path, state)
    finally:
        bar.close()
    return state


def best_optimizer(state: OptimizerTrainingState, G: Generator) -> LearnedOptimizer:
    """The optimizer that scored best on the test set (the untrained one if none did)."""
    out = start_state(state.config, G).optimizer
    out.load_state_dict(state.best if state.best is not None else state.optimizer.state_dict())
    return out.eval()


def training_info(
    state: OptimizerTrainingState, perceptual: PerceptualLoss | None, encoder_used: bool
) -> dict[str, Any]:
    """What the card's ``optimizer`` entry records about the run."""
    return {
        "source": "stylelens train-optimizer",
        "images": state.images,
        "iterations": state.iterations,
        "seconds": round(state.seconds, 1),
        "machine": list(state.hardware),
        "perceptual": perceptual.name if perceptual is not None else "none",
        "encoder_starts": encoder_used,
        "stopped_early": state.stopped_early,
        "best": {"images": state.best_images, "test_log_loss": round(state.best_score, 5)},
        "untrained_test_log_loss": state.curve[0][1] if state.curve else None,
        "curve": state.curve,
        "training": state.config.as_dict(),
    }


def save_trained_optimizer(
    model_dir: Path,
    state: OptimizerTrainingState,
    G: Generator,
    perceptual: PerceptualLoss | None,
    encoder_used: bool,
) -> Path:
    return save_optimizer(
        model_dir, best_optimizer(state, G), training_info(state, perceptual, encoder_used)
    )
