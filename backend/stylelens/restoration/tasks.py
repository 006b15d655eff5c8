"""Restoration tasks (seed 004): each is a degradation of the generator's output, so that the
same multi-code inversion reconstructs, colorizes, super-resolves or inpaints.

A task turns a full-resolution image ``x`` [N, 3, R, R] into the observation space
(:meth:`Task.degrade`): the gray image, the low-resolution image, or the known pixels. The
inversion minimises the distance between ``degrade(G(codes))`` and the user's degraded photo;
the generator's prior fills in what the degradation removed (colour, detail, the hole).

Where the composing layer sits (mGANprior's defaults, on its 1024-px ladder): layer ``L`` is
the output of the generator's ``L``-th convolution counted as in mGANprior's table (the input
latent is layer 0, every resolution from 4 px has two layers), so an even ``L`` is the end of
the block at ``2 ** (L // 2 + 1)`` px: layer 4 = 8 px, layer 6 = 16 px, layer 8 = 32 px. We
keep the feature-map resolution, not the depth, when a model has another output resolution:
a 16x16 feature grid divides an aligned face into the same parts at 256 px as at 1024 px.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from stylelens import masks
from stylelens.errors import StyleLensError
from stylelens.masks import Mask

TaskName = Literal["reconstruct", "colorize", "superres", "inpaint"]
TASKS: tuple[str, ...] = ("reconstruct", "colorize", "superres", "inpaint")
SCALES = (2, 4, 8, 16)
# ITU-R BT.601 luma, the weights of Pillow's "L" conversion.
LUMA = (0.299, 0.587, 0.114)


class RestorationError(StyleLensError):
    """A restoration cannot run as asked (bad mask, bad scale, bad photo)."""


@dataclass(frozen=True)
class TaskDefaults:
    """mGANprior's settings for a task: composing layer (1024-px ladder) and number of codes."""

    layer: int
    codes: int


# Adam steps of a restoration: about 25 s for the embedded model on a 2-core CPU.
DEFAULT_STEPS = 150

# genforce/mganprior's README, as gathered in ../shared/research/wave2.md.
DEFAULTS: dict[str, TaskDefaults] = {
    "reconstruct": TaskDefaults(layer=8, codes=20),
    "colorize": TaskDefaults(layer=6, codes=20),
    "superres": TaskDefaults(layer=6, codes=20),
    "inpaint": TaskDefaults(layer=4, codes=30),
}


def layer_resolution(layer: int) -> int:
    """The feature-map resolution at the end of composing layer ``layer`` (even, >= 2)."""
    return 2 ** (layer // 2 + 1)


def check_layer(layer: int, resolution: int) -> int:
    """The composing resolution of ``layer`` for a model of ``resolution``; errors name the
    layers this model has."""
    top = 2 * int(np.log2(resolution)) - 4  # the last block before the output one
    valid = list(range(2, top + 1, 2))
    if layer not in valid:
        lo, hi = (valid[0], valid[-1]) if valid else (0, 0)
        sizes = ", ".join(f"{v} = {layer_resolution(v)} px" for v in valid)
        raise RestorationError(
            f"--layer {layer}: a composing layer is the end of a block below the output "
            f"resolution, an even number from {lo} to {hi} for this {resolution}-px model "
            f"(layer L composes 2^(L/2+1)-px features: {sizes})"
        )
    return layer_resolution(layer)


def default_layer(task: str, resolution: int) -> int:
    """mGANprior's layer for ``task``, lowered when the model has no such resolution."""
    top = 2 * int(np.log2(resolution)) - 4
    return max(2, min(DEFAULTS[task].layer, top))


def gray(x: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] -> [N, 1, H, W] luma (the same affine map in [-1, 1] as in [0, 255])."""
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def downscale(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Box (area) down-scaling by ``scale``: each low-resolution pixel is the mean of its
    ``scale x scale`` block, the degradation super-resolution undoes."""
    return F.avg_pool2d(x, scale) if scale > 1 else x


class Task:
    """A degradation: ``degrade(x)`` maps the generator's output into the observation space,
    ``view(y)`` maps an observation back to a full-resolution RGB image for the perceptual
    loss (the same map for the prediction and the photo, so the two are comparable)."""

    name: TaskName

    def degrade(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def view(self, y: torch.Tensor, resolution: int) -> torch.Tensor:
        raise NotImplementedError

    def finish(self, x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """The restoration a user gets from the generator's output ``x``: what the photo
        says for sure is taken from the photo (its luma, its known pixels); the rest from x."""
        return x.clamp(-1, 1)

    def pixel_loss(self, pred: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """Mean squared error in the observation space, per sample."""
        return (pred - observed).square().flatten(1).mean(dim=1)

    def check_observation(self, y: torch.Tensor, resolution: int) -> torch.Tensor:
        shape = list(self.observation_shape(resolution))
        if list(y.shape) != shape:
            raise RestorationError(
                f"the {self.name} input must be {shape} for a {resolution}-px model, "
                f"got {list(y.shape)}"
            )
        if not torch.isfinite(y).all():
            raise RestorationError("the input holds NaN or infinite values")
        return y.float().clamp(-1, 1)

    def observation_shape(self, resolution: int) -> tuple[int, ...]:
        return (1, 3, resolution, resolution)

    def describe(self) -> dict[str, object]:
        return {"task": self.name}


class Reconstruct(Task):
    name: TaskName = "reconstruct"

    def degrade(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def view(self, y: torch.Tensor, resolution: int) -> torch.Tensor:
        return y


class Colorize(Task):
    """Observation: the luma [N, 1, R, R]."""

    name: TaskName = "colorize"

    def degrade(self, x: torch.Tensor) -> torch.Tensor:
        return gray(x)

    def view(self, y: torch.Tensor, resolution: int) -> torch.Tensor:
        return y.expand(-1, 3, -1, -1)

    def finish(self, x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        # The photo's luma with the generated colour: adding the same amount to R, G and B
        # moves the luma by that amount (the weights sum to 1) and keeps the chroma.
        return (x + (observed.to(x) - gray(x))).clamp(-1, 1)

    def observation_shape(self, resolution: int) -> tuple[int, ...]:
        return (1, 1, resolution, resolution)


class SuperResolve(Task):
    """Observation: the box-down-scaled image [N, 3, R/s, R/s]."""

    name: TaskName = "superres"

    def __init__(self, scale: int) -> None:
        if scale not in SCALES:
            raise RestorationError(
                f"--scale {scale}: super-resolution scales are {', '.join(map(str, SCALES))}"
            )
        self.scale = scale

    def degrade(self, x: torch.Tensor) -> torch.Tensor:
        return downscale(x, self.scale)

    def view(self, y: torch.Tensor, resolution: int) -> torch.Tensor:
        return F.interpolate(y, size=(resolution, resolution), mode="bilinear", align_corners=False)

    def observation_shape(self, resolution: int) -> tuple[int, ...]:
        if resolution // self.scale < 2:
            raise RestorationError(
                f"--scale {self.scale} leaves less than 2x2 pixels of a {resolution}-px model"
            )
        r = resolution // self.scale
        return (1, 3, r, r)

    def describe(self) -> dict[str, object]:
        return {"task": self.name, "scale": self.scale}


class Inpaint(Task):
    """Observation: the photo where ``known`` is 1; ``known`` [1, 1, R, R] in {0, 1}."""

    name: TaskName = "inpaint"

    def __init__(self, known: torch.Tensor) -> None:
        self.known = known.float()
        self.fraction = float(self.known.mean())

    def degrade(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.known.to(x)

    def view(self, y: torch.Tensor, resolution: int) -> torch.Tensor:
        return y

    def finish(self, x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        known = self.known.to(x)
        return (observed.to(x) * known + x * (1 - known)).clamp(-1, 1)

    def pixel_loss(self, pred: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        # The mean over the known pixels only: the hole's size does not change the loss scale.
        return super().pixel_loss(pred, observed) / max(self.fraction, 1e-6)

    def check_observation(self, y: torch.Tensor, resolution: int) -> torch.Tensor:
        if list(self.known.shape) != [1, 1, resolution, resolution]:
            raise RestorationError(
                f"the mask is {self.known.shape[-1]}x{self.known.shape[-2]}, the model makes "
                f"{resolution}x{resolution}"
            )
        return super().check_observation(y, resolution) * self.known.to(y)

    def describe(self) -> dict[str, object]:
        return {"task": self.name, "hole_fraction": round(1 - self.fraction, 4)}


def make_task(name: str, *, scale: int = 8, mask: torch.Tensor | None = None) -> Task:
    """A task by name; ``mask`` (inpainting) is the hole, 1 where pixels are to be filled in."""
    if name == "reconstruct":
        return Reconstruct()
    if name == "colorize":
        return Colorize()
    if name == "superres":
        return SuperResolve(scale)
    if name == "inpaint":
        if mask is None:
            raise RestorationError("inpainting needs a mask: white where the photo is to be filled")
        return Inpaint(1 - mask)
    raise RestorationError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")


# ---------------------------------------------------------------------------------------------
# Turning what a user gives into observations


def read_mask(image: Image.Image, resolution: int) -> Mask:
    """An inpainting hole mask (:func:`stylelens.masks.read_mask`: white or opaque marks the
    pixels to fill in); its refusals are :class:`RestorationError`."""
    try:
        return masks.read_mask(
            image,
            resolution,
            marks="the region to fill in",
            whole="nothing of the photo is left to restore from",
        )
    except masks.MaskError as e:
        raise RestorationError(str(e)) from None


def observe(
    task: Task, photo: torch.Tensor, resolution: int
) -> tuple[torch.Tensor, tuple[str, ...]]:
    """The observation of ``task`` from a photo tensor [1, 3, H, W] in [-1, 1] already
    cropped square: for colorization its luma (a colour photo is converted, and says so), for
    super-resolution the photo box-scaled to ``R / scale`` unless it already is that size, for
    inpainting the photo at ``R``. Returns (observation, notes)."""
    notes: list[str] = []
    if task.name == "superres":
        assert isinstance(task, SuperResolve)
        r = resolution // task.scale
        size = photo.shape[-1]
        if size != r:
            if size > r and size % r == 0:
                photo = downscale(photo, size // r)
            elif size > r:
                photo = F.interpolate(photo, size=(r, r), mode="area")
            else:
                photo = F.interpolate(photo, size=(r, r), mode="bicubic", align_corners=False)
            photo = photo.clamp(-1, 1)
            notes.append(
                f"the photo ({size}x{size}) was scaled to {r}x{r}, the input of x{task.scale} "
                f"super-resolution for a {resolution}-px model"
            )
        return task.check_observation(photo, resolution), tuple(notes)
    if photo.shape[-1] != resolution:
        photo = F.interpolate(photo, size=(resolution, resolution), mode="bilinear")
        photo = photo.clamp(-1, 1)
    if task.name == "colorize":
        spread = float((photo - gray(photo)).abs().max())  # 2/255 in [-1, 1] is one level
        if spread > 4 / 255:
            notes.append("the photo has colour: converted to gray (its luma) before colorizing")
        return task.check_observation(gray(photo), resolution), tuple(notes)
    return task.check_observation(photo, resolution), tuple(notes)
