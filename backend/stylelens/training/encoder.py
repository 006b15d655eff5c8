"""Training a light encoder for a generator, resumable bit for bit, on a CPU or a GPU.

Each minibatch mixes two kinds of images:

- pairs ``(ws, G(ws))`` sampled on the fly: ``z`` through ``G.mapping``, each truncated
  toward ``w_avg`` with its own psi drawn from ``psi_range`` (variety from the average face to
  the tails). Their target latent is known, so they get the latent loss ``||ws_hat - ws||^2``
  (mean over W+) besides the image losses;
- real SynthFaces drawn by the renderer (``real_fraction`` of the batch, consecutive seeds from
  ``real_first_seed``; the evaluation's held-out seeds start at 60,000,000). No latent
  exists for them: pixel MSE and the perceptual distance only.

Reconstructions are ``G.synthesis(ws_hat, noise_mode="const")``, as served. The perceptual
distance is one of :mod:`stylelens.losses` (``auto``: LPIPS-VGG16 when installed, else the
model's discriminator features, else MS-SSIM). e4e's two regularisers keep the ws near one
``w`` so that edits made for W still apply (Tov et al. 2021, sec. 3.3): the delta regulariser
``sum_i ||delta_i||_2`` (e4e's L_d-reg, weight ``delta_weight``) and progressive training,
which frees one more delta every ``unlock_kimg`` (until then ``ws = w_avg + w`` on the locked
layers). The state file holds the encoder, Adam, the counters and every random state; a
resumed run reproduces the uninterrupted one exactly.

A run may also start from an encoder already trained for the model (``warm_start``: its
weights, a fresh Adam, every delta free from the first step), so training can go on across
machines from what ``models/<id>/encoder.safetensors`` holds; the card then records the
earlier runs next to the new one.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from stylelens.data.synthfaces import MIN_RESOLUTION, render_face
from stylelens.encoders.light import LightEncoder, compose_ws
from stylelens.encoders.store import save_encoder
from stylelens.errors import TrainingError
from stylelens.hardware import describe_hardware
from stylelens.losses import PerceptualLoss, pixel_mse
from stylelens.networks.stylegan2 import Generator
from stylelens.training.state import (
    _global_rng,
    _restore_global_rng,
    read_state_file,
    write_state_file,
)

STATE_VERSION = 1
# Fields a resume may change; every other one must equal the stored config.
RESUMABLE = ("kimg", "tick_steps")


@dataclass(frozen=True)
class EncoderTrainConfig:
    """Hyper-parameters of ``stylelens train-encoder`` (defaults for a 256 px model on a CPU)."""

    kimg: float = 10.0  # images shown in total, thousands
    batch: int = 8
    real_fraction: float = 0.25  # share of each batch drawn by the SynthFaces renderer
    real_first_seed: int = 0
    psi_range: tuple[float, float] = (0.5, 1.0)  # truncation of the sampled pairs
    lr: float = 5e-4  # Adam
    latent_weight: float = 1.0
    pixel_weight: float = 1.0
    perceptual_weight: float = 0.8  # e4e's lambda_lpips
    delta_weight: float = 2e-4  # e4e's lambda_d-reg
    perceptual: str = "auto"  # a stylelens.losses backend (the caller builds it)
    unlock_kimg: float | None = 0.25  # e4e progressive training; None: all deltas free at once
    warm_start: bool = False  # start from the model's installed light encoder
    seed: int = 0
    tick_steps: int = 25  # steps between state-file writes
    # LightEncoder keywords (num_ws and w_dim come from the generator)
    input_resolution: int = 128
    channels: tuple[int, ...] = (32, 64, 128, 256)
    pyramid_channels: int = 128

    def __post_init__(self) -> None:
        if self.kimg <= 0 or self.batch < 1 or self.tick_steps < 1:
            raise ValueError("kimg must be positive, batch and tick_steps at least 1")
        if not 0 <= self.real_fraction <= 1:
            raise ValueError(f"real_fraction {self.real_fraction}: must be in [0, 1]")
        lo, hi = self.psi_range
        if not 0 <= lo <= hi:
            raise ValueError(f"psi_range {self.psi_range}: need 0 <= low <= high")
        if self.warm_start and self.unlock_kimg is not None:
            raise ValueError("a warm start trains every delta at once: set unlock_kimg to None")

    def encoder_config(self, G: Generator) -> dict[str, Any]:
        """The LightEncoder keywords, as the card's ``config`` stores them."""
        return {
            "num_ws": G.num_ws,
            "w_dim": G.w_dim,
            "input_resolution": self.input_resolution,
            "channels": list(self.channels),
            "pyramid_channels": self.pyramid_channels,
        }

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass
class EncoderTrainingState:
    config: EncoderTrainConfig
    encoder: LightEncoder
    opt: torch.optim.Adam
    latents: torch.Generator  # CPU: z and psi of the sampled pairs
    step: int = 0
    cur_nimg: int = 0
    real_position: int = 0  # real faces drawn so far (the next seed is first_seed + this)
    seconds: float = 0.0
    hardware: list[str] = field(default_factory=list)
    last: dict[str, float] = field(default_factory=dict)  # mean losses of the last tick


def start_state(
    config: EncoderTrainConfig, G: Generator, init: torch.nn.Module | None = None
) -> EncoderTrainingState:
    """A fresh encoder (seeded by ``config.seed``) with ``w_avg`` from ``G``, or a copy of
    ``init`` (the warm start); global random state untouched.

    Raises:
        TrainingError: ``init`` is not a light encoder of the configured shape.
    """
    device = G.mapping.w_avg.device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        encoder = LightEncoder(**config.encoder_config(G))
    if init is not None:
        try:
            encoder.load_state_dict(init.state_dict())
        except (RuntimeError, KeyError) as exc:
            raise TrainingError(
                "the installed encoder is not a light encoder with this run's settings "
                f"({config.encoder_config(G)}): {str(exc).splitlines()[0]}"
            ) from None
    encoder.w_avg.copy_(G.mapping.w_avg.detach())
    encoder = encoder.to(device).train()
    (a,) = (int(s) for s in np.random.SeedSequence(config.seed).generate_state(1, np.uint64))
    return EncoderTrainingState(
        config=config,
        encoder=encoder,
        opt=torch.optim.Adam(encoder.parameters(), lr=config.lr),
        latents=torch.Generator().manual_seed(a),
    )


def active_deltas(config: EncoderTrainConfig, cur_nimg: int, num_ws: int) -> int:
    """How many ws take their own delta at ``cur_nimg`` (e4e's progressive training)."""
    if config.unlock_kimg is None:
        return num_ws
    return min(num_ws, 1 + int(cur_nimg // max(1, round(config.unlock_kimg * 1000))))


def delta_regulariser(deltas: torch.Tensor) -> torch.Tensor:
    """e4e's L_d-reg: sum over layers of ||delta_i||_2, mean over the batch ([N, num_ws, C])."""
    return deltas.norm(dim=2).sum(dim=1).mean()


def sample_pairs(
    G: Generator, n: int, gen: torch.Generator, psi_range: tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` latents ws [n, num_ws, w_dim] (per-sample truncation) and their images."""
    device = G.mapping.w_avg.device
    z = torch.randn(n, G.z_dim, generator=gen).to(device)
    psi = torch.empty(n).uniform_(*psi_range, generator=gen).to(device)
    ws = G.mapping(z)
    ws = G.mapping.w_avg.lerp(ws, psi.view(-1, 1, 1))  # truncation, one psi per sample
    return ws, G.synthesis(ws, noise_mode="const")


def draw_real(first_seed: int, n: int, resolution: int) -> torch.Tensor:
    """SynthFaces of seeds ``first_seed ...``: [n, 3, R, R] in [-1, 1] (drawn at >= 64 px)."""
    if n == 0:
        return torch.empty(0, 3, resolution, resolution)
    draw_res = max(resolution, MIN_RESOLUTION)
    imgs = [render_face(first_seed + i, draw_res)[0] for i in range(n)]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 127.5 - 1
    if draw_res != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="area")
    return x


def encoder_input(img: torch.Tensor, resolution: int) -> torch.Tensor:
    """Images at the encoder's resolution (area-downsampled; bilinear if larger)."""
    if img.shape[-1] == resolution:
        return img
    mode = "area" if img.shape[-1] > resolution else "bilinear"
    return F.interpolate(img, size=(resolution, resolution), mode=mode)


def train_step(
    state: EncoderTrainingState, G: Generator, perceptual: PerceptualLoss
) -> dict[str, float]:
    """One Adam step on one minibatch. Returns its losses."""
    cfg, enc = state.config, state.encoder
    device = G.mapping.w_avg.device
    n_real = round(cfg.batch * cfg.real_fraction)
    n_pairs = cfg.batch - n_real
    with torch.no_grad():
        ws_t, img_pairs = sample_pairs(G, n_pairs, state.latents, cfg.psi_range)
        real = draw_real(cfg.real_first_seed + state.real_position, n_real, G.img_resolution)
        target = torch.cat([img_pairs, real.to(device)])  # [B, 3, R, R]
    active = active_deltas(cfg, state.cur_nimg, G.num_ws)
    w, deltas = enc.predict(encoder_input(target, enc.input_resolution))
    ws = compose_ws(enc.w_avg, w, deltas, active)  # [B, num_ws, w_dim]
    recon = G.synthesis(ws, noise_mode="const")
    losses = {
        "latent": (ws[:n_pairs] - ws_t).square().mean() if n_pairs else ws.sum() * 0,
        "pixel": pixel_mse(recon, target).mean(),
        "perceptual": perceptual(recon, target).mean(),
        "delta": delta_regulariser(ws - ws[:, :1]),
    }
    total = (
        cfg.latent_weight * losses["latent"]
        + cfg.pixel_weight * losses["pixel"]
        + cfg.perceptual_weight * losses["perceptual"]
        + cfg.delta_weight * losses["delta"]
    )
    state.opt.zero_grad(set_to_none=True)
    total.backward()
    state.opt.step()
    state.step += 1
    state.cur_nimg += cfg.batch
    state.real_position += n_real
    out = {k: float(v.detach()) for k, v in losses.items()}
    out["total"], out["active"] = float(total.detach()), float(active)
    return out


def save_state(path: Path, state: EncoderTrainingState) -> None:
    """Write everything a resume needs, atomically."""
    payload = {
        "version": STATE_VERSION,
        "config": state.config.as_dict(),
        "encoder": state.encoder.state_dict(),
        "opt": state.opt.state_dict(),
        "latents": state.latents.get_state(),
        "global_rng": _global_rng(),
        "progress": {
            "step": state.step,
            "cur_nimg": state.cur_nimg,
            "real_position": state.real_position,
            "seconds": state.seconds,
            "hardware": list(state.hardware),
            "last": dict(state.last),
        },
    }
    write_state_file(path, payload)


def resume_state(path: Path, config: EncoderTrainConfig, G: Generator) -> EncoderTrainingState:
    """The state stored in ``path``; ``config`` may differ from the stored one only in
    :data:`RESUMABLE` fields. Restores the global random states too.

    Raises:
        TrainingError: missing or unreadable file, or another config.
    """
    payload = read_state_file(
        path, STATE_VERSION, "encoder training state", resumable=RESUMABLE, config=config.as_dict()
    )
    state = start_state(config, G)
    state.encoder.load_state_dict(payload["encoder"])
    state.opt.load_state_dict(payload["opt"])
    state.latents.set_state(payload["latents"])
    p = payload["progress"]
    state.step, state.cur_nimg, state.real_position = p["step"], p["cur_nimg"], p["real_position"]
    state.seconds, state.hardware, state.last = p["seconds"], list(p["hardware"]), dict(p["last"])
    _restore_global_rng(payload["global_rng"])
    return state


def train_encoder(
    G: Generator,
    perceptual: PerceptualLoss,
    config: EncoderTrainConfig,
    *,
    state_path: Path,
    resume: bool = False,
    init: torch.nn.Module | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> EncoderTrainingState:
    """Train until ``config.kimg``, writing ``state_path`` every ``tick_steps`` and at the end.
    ``init``: the encoder a warm start copies (``config.warm_start``; unused on resume).

    Raises:
        TrainingError: a state file exists without ``resume`` (or is unusable with it), or
            the losses become non-finite.
    """
    say = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    G = G.eval().requires_grad_(False)
    if resume:
        state = resume_state(state_path, config, G)
        say(f"resuming {state_path} at {state.cur_nimg / 1000:.3f} kimg")
    elif state_path.exists():
        raise TrainingError(f"{state_path} exists; continue it with --resume or choose --out-state")
    else:
        if config.warm_start and init is None:
            raise TrainingError("a warm start needs the model's installed encoder")
        state = start_state(config, G, init if config.warm_start else None)
    hardware = describe_hardware(G.mapping.w_avg.device)
    if hardware not in state.hardware:
        state.hardware.append(hardware)
    total = round(config.kimg * 1000)
    bar = tqdm(total=total, initial=state.cur_nimg, unit="img", desc="train-encoder",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)  # fmt: skip
    try:
        while state.cur_nimg < total:
            t0, reports = time.perf_counter(), []
            for _ in range(config.tick_steps):
                if state.cur_nimg >= total:
                    break
                reports.append(train_step(state, G, perceptual))
                bar.update(config.batch)
                bar.set_postfix(loss=f"{reports[-1]['total']:.4f}", refresh=False)
            state.seconds += time.perf_counter() - t0
            state.last = {k: sum(r[k] for r in reports) / len(reports) for k in reports[0]}
            save_state(state_path, state)
            if not math.isfinite(state.last["total"]):
                raise TrainingError(
                    f"losses became non-finite at step {state.step}; lower --lr and start again"
                )
    finally:
        bar.close()
    return state


def training_info(
    state: EncoderTrainingState,
    perceptual: PerceptualLoss,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What the card's ``encoder`` entry records about the run; ``previous`` is the entry of
    the encoder a warm start began from (its runs are kept under ``earlier_runs``)."""
    info: dict[str, Any] = {
        "source": "stylelens train-encoder",
        "kimg": round(state.cur_nimg / 1000, 3),
        "steps": state.step,
        "seconds": round(state.seconds, 1),
        "machine": list(state.hardware),
        "perceptual": perceptual.name,
        "losses": {k: round(v, 5) for k, v in state.last.items() if k != "active"},
        "training": state.config.as_dict(),
    }
    if previous is not None:
        keep = ("kimg", "steps", "seconds", "machine", "perceptual", "losses", "training")
        earlier = list(previous.get("earlier_runs", []))
        earlier.append({k: previous[k] for k in keep if k in previous})
        info["earlier_runs"] = earlier
        info["kimg_total"] = round(info["kimg"] + sum(r.get("kimg", 0) for r in earlier), 3)
    return info


def save_trained_encoder(
    model_dir: Path,
    state: EncoderTrainingState,
    perceptual: PerceptualLoss,
    G: Generator,
    previous: dict[str, Any] | None = None,
) -> Path:
    """``save_encoder`` with the run's config and :func:`training_info`."""
    return save_encoder(
        model_dir,
        state.encoder.eval(),
        architecture="light",
        config=state.config.encoder_config(G),
        info=training_info(state, perceptual, previous),
    )
