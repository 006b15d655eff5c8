"""What a training run holds between minibatches, and its checkpoint file.

The state is G, D, G_ema, both Adam optimisers, the path-length running mean, three explicit
random generators and the counters. ``checkpoint.pt`` stores all of it (plus the global torch,
CUDA, numpy and Python random states) so that a resumed run continues bit for bit; it holds
only tensors and plain containers and is read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stylelens.checkpoints.native import (
    DISCRIMINATOR_FILE,
    load_card,
    load_discriminator,
    load_generator,
)
from stylelens.errors import TrainingError
from stylelens.networks.discriminator import Discriminator
from stylelens.networks.runtime import compiled
from stylelens.networks.stylegan2 import Generator
from stylelens.training.config import TrainConfig, architecture_of
from stylelens.training.loss import lazy_regularisation

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_VERSION = 1


@dataclass
class Randomness:
    """The run's random streams; nothing in training draws from the global generators."""

    latents: torch.Generator  # CPU: z of every phase, style-mixing cutoffs
    noise: torch.Generator  # training device: per-layer noise, path-length noise
    augment: torch.Generator  # CPU: augmentation parameters

    @classmethod
    def seeded(cls, seed: int, device: torch.device) -> Randomness:
        # Independent streams from one seed (SeedSequence avoids seed, seed + 1 overlaps).
        a, b, c = (int(s) for s in np.random.SeedSequence(seed).generate_state(3, np.uint64))
        return cls(
            latents=torch.Generator().manual_seed(a),
            noise=torch.Generator(device=device).manual_seed(b),
            augment=torch.Generator().manual_seed(c),
        )

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name).get_state() for name in ("latents", "noise", "augment")}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, value in state.items():
            getattr(self, name).set_state(value)


@dataclass
class TrainingState:
    """Networks, optimisers and counters of a run (``config`` is resolved)."""

    config: TrainConfig
    device: torch.device
    G: Generator
    D: Discriminator
    G_ema: Generator
    opt_g: torch.optim.Adam
    opt_d: torch.optim.Adam
    trainable_g: list[nn.Parameter]
    trainable_d: list[nn.Parameter]
    rng: Randomness
    pl_mean: torch.Tensor  # running mean of the path lengths, scalar on the device
    cur_nimg: int = 0  # real images shown so far
    step: int = 0  # minibatches done; the lazy regularisers count these
    data_position: int = 0  # index into the endless per-epoch-shuffled data order
    seconds: float = 0.0  # training time of the sessions before this one
    hardware: list[str] = field(default_factory=list)  # every machine the run has used
    # G.synthesis and D as the phases without a double backward run them (G main, the
    # supervised phase, D main): torch.compile'd when config.compile, else the modules.
    fast_synthesis: Callable[..., torch.Tensor] = field(init=False, repr=False)
    fast_D: Callable[..., torch.Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.fast_synthesis = compiled(self.G.synthesis, self.config.compile)
        self.fast_D = compiled(self.D, self.config.compile)


def frozen_prefixes(config: TrainConfig, D: Discriminator) -> tuple[list[str], list[str]]:
    """Parameter-name prefixes kept fixed in G (``freeze_g``) and D (FreezeD: the first
    ``freeze_d`` blocks from the image input; Mo et al., "Freeze the Discriminator", 2020)."""
    g = []
    for part in config.freeze_g:
        g.append({"mapping": "mapping.", "synthesis": "synthesis."}.get(part, f"synthesis.{part}."))
    d = [f"b{res}." for res in D.block_resolutions[: config.freeze_d]]
    return g, d


def freeze(module: nn.Module, prefixes: list[str]) -> list[nn.Parameter]:
    """Set ``requires_grad=False`` on parameters named with one of ``prefixes``; return the
    others (the ones an optimiser should own), in ``named_parameters`` order."""
    trainable = []
    for name, p in module.named_parameters():
        frozen = name.startswith(tuple(prefixes))
        p.requires_grad_(not frozen)
        if not frozen:
            trainable.append(p)
    return trainable


def _adam(
    params: list[nn.Parameter],
    lr: float,
    config: TrainConfig,
    reg_interval: int | None,
    *,
    faster: tuple[list[nn.Parameter], float] | None = None,
) -> torch.optim.Adam:
    """Adam over ``params``; the parameters in ``faster[0]`` (a subset) get lr x faster[1]."""
    betas = config.betas
    if reg_interval is not None:  # a lazy regulariser adds a step every reg_interval batches
        lr, betas = lazy_regularisation(lr, betas, reg_interval)
    fast, factor = faster or ([], 1.0)
    fast_ids = {id(p) for p in fast}
    groups: list[dict[str, Any]] = [{"params": [p for p in params if id(p) not in fast_ids]}]
    if fast_ids:
        groups.append({"params": [p for p in params if id(p) in fast_ids], "lr": lr * factor})
    return torch.optim.Adam(groups, lr=lr, betas=betas, eps=config.eps)


def _build_networks(
    config: TrainConfig, init: Path | None
) -> tuple[Generator, Discriminator, list[str]]:
    G, D = Generator(config.generator), Discriminator(config.discriminator)
    notes = []
    if init is not None:
        card = load_card(init)
        want = architecture_of(card.generator, card.discriminator)
        got = {k: getattr(config, k) for k in want}
        diff = [f"{k}: model {want[k]!r}, config {got[k]!r}" for k in want if want[k] != got[k]]
        if diff:
            raise TrainingError(f"--init {init}: architecture differs: " + "; ".join(diff))
        if card.generator != config.generator:  # e.g. img_channels, which training fixes at 3
            raise TrainingError(
                f"--init {init}: generator {card.generator} differs from {config.generator}"
            )
        G.load_state_dict(load_generator(init)[0].state_dict())
        if card.discriminator is not None and (init / DISCRIMINATOR_FILE).is_file():
            want_d = config.discriminator
            if dataclasses.replace(card.discriminator, c_dim=want_d.c_dim) != want_d:
                raise TrainingError(
                    f"--init {init}: its discriminator ({card.discriminator}) does not match "
                    f"the training config ({want_d})"
                )
            notes.append(f"G and D from {init}")
            notes += _load_discriminator(D, load_discriminator(init)[0])
        else:
            notes.append(f"G from {init}; it has no discriminator weights, D starts from scratch")
    return G, D, notes


def _load_discriminator(D: Discriminator, source: Discriminator) -> list[str]:
    """Copy ``source``'s weights into ``D``, which may differ in its condition (``c_dim``):
    a new projection starts at zero (the same logits as before), a dropped one is discarded.
    Returns notes for the log."""
    if source.config.c_dim == D.config.c_dim:
        D.load_state_dict(source.state_dict())
        return []
    weights = {k: v for k, v in source.state_dict().items() if not k.startswith("embed.")}
    D.load_state_dict(weights, strict=False)  # only embed.* can be missing here
    if D.config.c_dim:
        return [f"D sees {D.config.c_dim} condition values; their projection starts at zero"]
    return ["the model's D was conditional; its projection is dropped"]


def start_state(
    config: TrainConfig, device: torch.device, *, load_init: bool = True
) -> tuple[TrainingState, list[str]]:
    """Fresh networks (seeded by ``config.seed``, or from ``config.init`` if ``load_init``),
    freezing applied, optimisers built. Returns the state and notes for the log. The global
    random state is untouched. A resume passes ``load_init=False``: the checkpoint replaces
    every weight, so the init model need not exist any more."""
    init = Path(config.init) if config.init and load_init else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        G, D, notes = _build_networks(config, init)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    G, D, G_ema = G.to(device).train(), D.to(device).train(), G_ema.to(device)
    if config.channels_last:
        for net in (G, D, G_ema):  # (Module.to's typed overloads omit memory_format)
            net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    g_prefixes, d_prefixes = frozen_prefixes(config, D)
    trainable_g, trainable_d = freeze(G, g_prefixes), freeze(D, d_prefixes)
    pl_interval = config.pl_interval if config.pl_weight > 0 else None
    r1_interval = config.r1_interval if config.r1_gamma else None
    factor = config.mapping_lr_factor
    mapping = [p for p in G.mapping.parameters() if p.requires_grad] if factor != 1 else []
    state = TrainingState(
        config=config,
        device=device,
        G=G,
        D=D,
        G_ema=G_ema,
        opt_g=_adam(trainable_g, config.lr_g, config, pl_interval, faster=(mapping, factor)),
        opt_d=_adam(trainable_d, config.lr_d, config, r1_interval),
        trainable_g=trainable_g,
        trainable_d=trainable_d,
        rng=Randomness.seeded(config.seed, device),
        pl_mean=torch.zeros([], device=device),
    )
    if config.freeze_d or config.freeze_g:
        notes.append(
            f"frozen: D {', '.join(p.rstrip('.') for p in d_prefixes) or '-'}; "
            f"G {', '.join(p.rstrip('.') for p in g_prefixes) or '-'}"
        )
    return state, notes


@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, beta: float) -> None:
    """G_ema <- beta * G_ema + (1 - beta) * G for parameters; buffers (w_avg) are copied."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
        b_ema.copy_(b)


# ----------------------------------------------------------------------------
# Checkpoint


def _global_rng() -> dict[str, Any]:
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)
    kind, keys, pos, has_gauss, gauss = np_state
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": list(random.getstate()),
    }


def _restore_global_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):  # a different number of GPUs
            torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def save_checkpoint(path: Path, state: TrainingState, *, metrics: dict[str, float]) -> None:
    """Write everything a resume needs to ``path``, atomically (temporary file + rename)."""
    payload = {
        "version": CHECKPOINT_VERSION,
        "G": state.G.state_dict(),
        "D": state.D.state_dict(),
        "G_ema": state.G_ema.state_dict(),
        "opt_g": state.opt_g.state_dict(),
        "opt_d": state.opt_d.state_dict(),
        "pl_mean": state.pl_mean.detach().cpu(),
        "rng": state.rng.state_dict(),
        "global_rng": _global_rng(),
        "progress": {
            "cur_nimg": state.cur_nimg,
            "step": state.step,
            "data_position": state.data_position,
            "seconds": state.seconds,
            "hardware": list(state.hardware),
        },
        "metrics": dict(metrics),
    }
    write_state_file(path, payload)


def write_state_file(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` to ``path`` atomically (temporary file + rename), making its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_state_file(
    path: Path, version: int, what: str, *, resumable: tuple[str, ...], config: dict[str, Any]
) -> dict[str, Any]:
    """The payload of a resumable run's state file (``what``: "encoder training state"...),
    whose stored ``config`` must equal ``config`` except in the ``resumable`` fields.

    Raises:
        TrainingError: missing or unreadable file, another version, or other settings.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainingError(f"{path} not found; start a run without --resume") from None
    except Exception as exc:  # torch raises several types for damaged files
        raise TrainingError(f"{path}: not a readable {what} ({exc})") from None
    if not isinstance(payload, dict) or payload.get("version") != version:
        raise TrainingError(f"{path}: not a {what} of version {version}")
    stored = payload["config"]
    diff = [f"{k}: {stored.get(k)!r} -> {v!r}" for k, v in config.items()
            if k not in resumable and stored.get(k) != v]  # fmt: skip
    if diff:
        raise TrainingError(f"{path} was trained with other settings: " + "; ".join(diff))
    return payload


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's contents (tensors on the CPU). Raises TrainingError if unreadable."""
    try:
        payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise TrainingError(f"{path} is missing; the run has not finished a tick yet") from exc
    except Exception as exc:  # torch raises several types for damaged files
        raise TrainingError(f"{path}: not a readable training checkpoint ({exc})") from exc
    if payload.get("version") != CHECKPOINT_VERSION:
        raise TrainingError(f"{path}: unsupported checkpoint version {payload.get('version')}")
    return payload


def restore_state(state: TrainingState, payload: dict[str, Any]) -> dict[str, float]:
    """Load a ``read_checkpoint`` payload into ``state`` (built from the same config) and
    restore the global random states. Returns the last tick's metrics."""
    state.G.load_state_dict(payload["G"])
    state.D.load_state_dict(payload["D"])
    state.G_ema.load_state_dict(payload["G_ema"])
    state.opt_g.load_state_dict(payload["opt_g"])
    state.opt_d.load_state_dict(payload["opt_d"])
    state.pl_mean = payload["pl_mean"].to(state.device)
    state.rng.load_state_dict(payload["rng"])
    progress = payload["progress"]
    state.cur_nimg, state.step = progress["cur_nimg"], progress["step"]
    state.data_position, state.seconds = progress["data_position"], progress["seconds"]
    state.hardware = list(progress["hardware"])
    _restore_global_rng(payload["global_rng"])
    return dict(payload["metrics"])
