"""Multi-code GAN prior (seed 004, mGANprior) as an engine of the step protocol.

N latent codes each run the generator's first blocks up to the composing resolution r,
giving feature maps F_n (and the skip image up to r, which StyleGAN2's skip architecture
carries beside the features). Each code has a per-channel importance alpha_n over the C
feature channels and the 3 skip-image channels. The rest of the generator runs once on
``sum_n F_n * alpha_n`` with its own W+ styles (the "tail"): x = G2(sum_n F_n * alpha_n).
Adam optimises the codes (one w each, in W: the prior stays that of the model), the alphas and
the tail styles to minimise a task's loss (:mod:`stylelens.restoration.tasks`): pixel error
plus the perceptual distance, both in the task's observation space.

With ``codes=1`` and ``learn_alpha=False`` this is a single-code W+ inversion under the same
task loss (the baseline the benchmark compares against).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from stylelens.inversion.common import perceptual_weight
from stylelens.inversion.protocol import InversionError, InversionResult, StepReport, Timer
from stylelens.losses.perceptual import PerceptualLoss
from stylelens.networks.stylegan2 import BlockOutput, Generator
from stylelens.render import z_from_seed
from stylelens.restoration.tasks import Reconstruct, RestorationError, Task, check_layer


@dataclass(frozen=True)
class MultiCodeConfig:
    steps: int = 200
    codes: int = 20
    layer: int = 8  # composing layer (mGANprior's numbering: features at 2^(layer/2+1) px)
    task: Task = field(default_factory=Reconstruct)
    lr: float = 0.02  # Adam, codes and tail styles (W units)
    alpha_lr: float = 0.02  # Adam, importances
    perceptual_weight: float | None = None  # None: the backend's default
    truncation: float = 0.7  # psi of the random initial codes toward w_avg
    learn_alpha: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if not 1 <= self.codes <= 64:
            raise ValueError(f"codes must be from 1 to 64, got {self.codes}")

    def describe(self) -> dict[str, Any]:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "task"}
        return {**d, **self.task.describe()}


@dataclass
class MultiCodeState:
    config: MultiCodeConfig
    observed: torch.Tensor  # the task's observation
    observed_view: torch.Tensor  # its full-resolution view, for the perceptual loss
    codes: torch.Tensor  # [N, 1, w_dim], requires grad
    alpha: torch.Tensor  # [N, C + img_channels], requires grad (unless fixed)
    tail: torch.Tensor  # [1, num_ws, w_dim] W+ styles of the blocks after r, requires grad
    optimizer: torch.optim.Optimizer
    resolution: int  # composing resolution r
    weight: float
    timer: Timer = field(default_factory=Timer)
    step: int = 0
    last: torch.Tensor | None = None  # the latest output [1, 3, R, R]

    @property
    def done(self) -> bool:
        return self.step >= self.config.steps


def compose(
    G: Generator,
    codes: torch.Tensor,
    alpha: torch.Tensor,
    tail: torch.Tensor,
    resolution: int,
) -> torch.Tensor:
    """x = G2(sum_n F_n * alpha_n): codes [N, 1, w_dim] run the blocks up to ``resolution``;
    their features and skip images, weighted per channel by alpha [N, C + img_channels] and
    summed, go through the remaining blocks with the W+ styles ``tail`` [1, num_ws, w_dim]
    (its first ws, those of the blocks up to ``resolution``, are not used)."""
    syn = G.synthesis
    head = syn.run_until(codes.expand(-1, G.num_ws, -1), resolution)
    C = head.x.shape[1]
    if alpha.shape != (codes.shape[0], C + head.img.shape[1]):
        raise ValueError(
            f"alpha must be [{codes.shape[0]}, {C + head.img.shape[1]}] for codes composed at "
            f"{resolution} px, got {list(alpha.shape)}"
        )
    x = (head.x * alpha[:, :C, None, None]).sum(dim=0, keepdim=True)
    img = (head.img * alpha[:, C:, None, None]).sum(dim=0, keepdim=True)
    *_, last = syn.iter_blocks(tail, start=BlockOutput(resolution, x, img))
    return last.img


class MultiCodeEngine:
    """mGANprior: N codes composed at an intermediate layer, for a task's loss."""

    name = "mganprior"

    def __init__(self, G: Generator, *, perceptual: PerceptualLoss | None) -> None:
        self.G, self.perceptual = G, perceptual

    def compose(self, state: MultiCodeState) -> torch.Tensor:
        """The image [1, 3, R, R] the state stands for."""
        return compose(self.G, state.codes, state.alpha, state.tail, state.resolution)

    # the step protocol ---------------------------------------------------------------------

    def start(
        self,
        target: torch.Tensor,
        config: MultiCodeConfig,
        init_ws: torch.Tensor | None = None,
    ) -> MultiCodeState:
        """``target`` is the task's observation (the gray image, the low-resolution image,
        the photo for inpainting: its hole is ignored); ``init_ws`` [1, num_ws, w_dim], when
        given, becomes the first code and the tail (the other codes stay random)."""
        G = self.G
        R = G.img_resolution
        r = check_layer(config.layer, R)
        device = G.mapping.w_avg.device
        try:
            observed = config.task.check_observation(target.to(device), R)
        except RestorationError as e:
            raise InversionError(str(e)) from None
        with torch.no_grad():
            z = torch.cat(
                [z_from_seed(config.seed * 1000 + i, G.z_dim) for i in range(config.codes)]
            )
            w = G.mapping(z.float().to(device), truncation_psi=config.truncation)[:, :1]
            tail = G.mapping.w_avg.view(1, 1, -1).repeat(1, G.num_ws, 1)
            if init_ws is not None:
                if tuple(init_ws.shape) != (1, G.num_ws, G.w_dim):
                    raise InversionError(
                        f"init latent must be [1, {G.num_ws}, {G.w_dim}], got {list(init_ws.shape)}"
                    )
                init_ws = init_ws.to(device).float()
                w[0, 0] = init_ws[0, : self._head_count(r)].mean(dim=0)
                tail = init_ws.clone()
        channels = getattr(G.synthesis, f"b{r}").conv1.weight.shape[0]
        width = channels + G.synthesis.img_channels
        alpha = torch.full((config.codes, width), 1.0 / config.codes, device=device)
        if init_ws is not None and config.codes > 1:
            alpha[0] = 0.5  # the guess leads; the random codes add to it
            alpha[1:] = 0.5 / (config.codes - 1)
        codes = w.clone().requires_grad_(True)
        tail = tail.clone().requires_grad_(True)
        groups: list[dict[str, Any]] = [{"params": [codes, tail], "lr": config.lr}]
        if config.learn_alpha:
            alpha.requires_grad_(True)
            groups.append({"params": [alpha], "lr": config.alpha_lr})
        return MultiCodeState(
            config=config,
            observed=observed,
            observed_view=config.task.view(observed, R),
            codes=codes,
            alpha=alpha,
            tail=tail,
            optimizer=torch.optim.Adam(groups, betas=(0.9, 0.999)),
            resolution=r,
            weight=perceptual_weight(self.perceptual, config.perceptual_weight),
        )

    def _head_count(self, r: int) -> int:
        """How many ws the blocks up to r use (their convs and the toRGB at r)."""
        return sum(b.num_conv for b in self.G.synthesis.blocks() if b.resolution <= r) + 1

    def loss(
        self, state: MultiCodeState, img: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        task = state.config.task
        pred = task.degrade(img)
        mse = task.pixel_loss(pred, state.observed).mean()
        loss = mse
        terms = {"mse": float(mse.detach())}
        if self.perceptual is not None and state.weight > 0:
            view = task.view(pred, self.G.img_resolution)
            p = self.perceptual(view, state.observed_view).mean()
            loss = loss + state.weight * p
            terms["perceptual"] = float(p.detach())
        terms["total"] = float(loss.detach())
        return loss, terms

    def step(self, state: MultiCodeState) -> StepReport:
        with state.timer:
            img = self.compose(state)
            loss, terms = self.loss(state, img)
            state.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            state.optimizer.step()
            state.step += 1
            state.last = img.detach()
        return StepReport(
            step=state.step,
            total=state.config.steps,
            elapsed=state.timer.seconds,
            losses=terms,
            resolution=self.G.img_resolution,
            preview=state.last.cpu(),
        )

    def image(self, state: MultiCodeState) -> torch.Tensor:
        """The current output [1, 3, R, R] (composed again: the last step's is one update
        behind)."""
        with torch.no_grad():
            return self.compose(state)

    def current_ws(self, state: MultiCodeState) -> torch.Tensor:
        """One W+ latent that stands for the state where one is needed (a checkpoint): the
        tail styles with the code of the largest mean importance in the first blocks. It is an
        approximation; the restoration itself is :meth:`image`."""
        n = int(state.alpha.detach().mean(dim=1).argmax())
        ws = state.tail.detach().clone()
        ws[:, : self._head_count(state.resolution)] = state.codes.detach()[n]
        return ws

    def result(self, state: MultiCodeState) -> InversionResult:
        """``image`` is the restoration (the task's :meth:`~Task.finish` of the output: the
        photo's luma or known pixels kept); the metrics compare the output's degradation with
        the observation (PSNR over the known pixels for inpainting)."""
        img = self.image(state)
        task = state.config.task
        with torch.no_grad():
            pred = task.degrade(img)
            mse = task.pixel_loss(pred, state.observed).clamp_min(1e-12)
            # PSNR in the observation space (the known pixels for inpainting); peak-to-peak 2.
            metrics = {"mse": float(mse[0]), "psnr": float(10 * torch.log10(4 / mse)[0])}
            if self.perceptual is not None:
                view = task.view(pred, self.G.img_resolution)
                metrics["perceptual"] = float(self.perceptual(view, state.observed_view)[0])
        return InversionResult(
            ws=self.current_ws(state).cpu(),
            noise={},
            adain={},
            metrics=metrics,
            engine=self.name,
            perceptual=self.perceptual.name if self.perceptual is not None else "none",
            steps=state.step,
            elapsed=state.timer.seconds,
            config=state.config.describe(),
            image=task.finish(img, state.observed).cpu(),
            codes={
                "codes": state.codes.detach().cpu().clone(),
                "alpha": state.alpha.detach().cpu().clone(),
                "tail": state.tail.detach().cpu().clone(),
            },
        )
