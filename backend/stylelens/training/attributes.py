"""Training and measuring the attribute network on SynthFaces.

Seed ranges keep the sets apart: the network trains on seeds ``[0, n_train)``, is validated on
``VAL_FIRST_SEED ..``, and ``stylelens eval-model`` draws its held-out real faces from
``HELD_OUT_FIRST_SEED ..``, so no set overlaps another (GAN training uses seeds below
``VAL_FIRST_SEED`` too).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from stylelens.checkpoints.attribute_net import AttributeNetCard
from stylelens.data.synthfaces.dataset import render_arrays
from stylelens.data.synthfaces.params import Attribute
from stylelens.hardware import describe_hardware
from stylelens.networks.attributes import AttributeNet, AttributeNetConfig, attribute_loss

VAL_FIRST_SEED = 50_000_000
HELD_OUT_FIRST_SEED = 60_000_000

# A horizontal flip mirrors these labels; the others are symmetric.
_MIRRORED = ("yaw", "roll", "light")


@dataclass(frozen=True)
class AttributeTrainConfig:
    """Hyper-parameters of ``train_attribute_net``."""

    n_train: int = 20_000
    n_val: int = 2_000
    epochs: int = 10
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    precision: str = "float32"  # "bfloat16": CPU autocast, ~3.5x faster with AMX


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> float [-1, 1], the generator's range."""
    return images.float() / 127.5 - 1.0


def _flip(x: torch.Tensor, y: torch.Tensor, specs: list[Attribute], mask: torch.Tensor) -> None:
    """Mirror the images selected by ``mask`` and their labels, in place."""
    x[mask] = x[mask].flip(3)
    for j, a in enumerate(specs):
        if a.name in _MIRRORED:
            y[mask, j] = -y[mask, j]


def evaluate(
    net: AttributeNet, images: torch.Tensor, labels: torch.Tensor, *, batch: int = 256
) -> dict[str, dict[str, float]]:
    """Held-out quality per attribute: R^2 for continuous, accuracy for categorical."""
    net.eval()
    with torch.no_grad():
        pred = torch.cat(
            [net.decode(net(to_float(images[i : i + batch]))) for i in range(0, len(images), batch)]
        )
    out: dict[str, dict[str, float]] = {}
    for j, a in enumerate(net.config.specs):
        p, t = pred[:, j].double(), labels[:, j].double()
        if a.kind == "categorical":
            out[a.name] = {"accuracy": float((p == t).double().mean())}
        else:
            r2 = 1 - ((p - t) ** 2).sum() / ((t - t.mean()) ** 2).sum().clamp_min(1e-12)
            out[a.name] = {"r2": float(r2)}
    return out


def train_attribute_net(
    data: tuple[torch.Tensor, torch.Tensor],
    *,
    config: AttributeTrainConfig,
    net_config: AttributeNetConfig,
    progress: bool = True,
) -> tuple[AttributeNet, list[dict[str, float]]]:
    """Train on ``(uint8 images [N, 3, R, R], labels [N, A])``; returns the eval-mode net and
    one log row per epoch (loss, seconds). Random horizontal flips mirror yaw, roll and light.
    """
    images, labels = data
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    net = AttributeNet(net_config)
    specs = net_config.specs
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * max(1, len(images) // config.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps)
    bar = tqdm(total=steps, desc="train-attributes", disable=not progress, file=sys.stderr)
    log = []
    for epoch in range(config.epochs):
        net.train()
        order = torch.randperm(len(images), generator=gen)
        t0, total, count = time.perf_counter(), 0.0, 0
        for i in range(0, len(images) - config.batch + 1, config.batch):
            idx = order[i : i + config.batch]
            x, y = to_float(images[idx]), labels[idx].clone()
            _flip(x, y, specs, torch.rand(len(idx), generator=gen) < 0.5)
            with torch.autocast("cpu", torch.bfloat16, enabled=config.precision == "bfloat16"):
                raw = net(x)
            loss, _ = attribute_loss(raw.float(), y, specs)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, count = total + loss.item(), count + 1
            bar.update()
            bar.set_postfix(epoch=epoch, loss=f"{total / count:.3f}")
        log.append({"epoch": epoch, "loss": total / count, "seconds": time.perf_counter() - t0})
    bar.close()
    return net.eval(), log


def render_training_sets(
    config: AttributeTrainConfig, resolution: int, *, workers: int | None = None
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The training faces (seeds from 0) and validation faces (from ``VAL_FIRST_SEED``)."""
    train = render_arrays(first_seed=0, n=config.n_train, resolution=resolution, workers=workers)
    val = render_arrays(
        first_seed=VAL_FIRST_SEED, n=config.n_val, resolution=resolution, workers=workers
    )
    return (
        (torch.from_numpy(train[0]), torch.from_numpy(train[1])),
        (torch.from_numpy(val[0]), torch.from_numpy(val[1])),
    )


def fit_attribute_model(
    config: AttributeTrainConfig,
    net_config: AttributeNetConfig,
    *,
    model_id: str,
    workers: int | None = None,
    progress: bool = True,
) -> tuple[AttributeNet, AttributeNetCard]:
    """Render the training and validation faces, train, measure: the net and its card."""
    t0 = time.time()
    train, val = render_training_sets(config, net_config.resolution, workers=workers)
    net, log = train_attribute_net(train, config=config, net_config=net_config, progress=progress)
    res = net_config.resolution
    card = AttributeNetCard(
        id=model_id,
        description="Predicts every SynthFaces label; its penultimate features define FAD.",
        config=net_config,
        metrics=evaluate(net, *val),
        training={
            "data": f"synthfaces seeds 0-{config.n_train - 1} at {res}px, random h-flips",
            "validation": f"{config.n_val} synthfaces from seed {VAL_FIRST_SEED}",
            "epochs": config.epochs,
            "batch": config.batch,
            "lr": config.lr,
            "precision": config.precision,
            "seconds": round(time.time() - t0, 1),
            "hardware": describe_hardware(torch.device("cpu")),
            "final_loss": log[-1]["loss"],
        },
    )
    return net, card


def summarize(metrics: dict[str, dict[str, float]]) -> str:
    """A markdown table of per-attribute held-out metrics."""
    rows = ["| attribute | metric | value |", "|---|---|---|"]
    for name, m in metrics.items():
        ((key, value),) = m.items()
        rows.append(f"| {name} | {'R²' if key == 'r2' else 'accuracy'} | {value:.3f} |")
    return "\n".join(rows)
