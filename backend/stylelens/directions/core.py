"""The ``Direction`` value and the layer ranges it acts on.

A direction is a vector in W (``[w_dim]``, added to the chosen ws) or per layer
(``[num_ws, w_dim]``, added row by row). Slider amounts are in *units*: moving a slider by 1
adds ``unit * vector`` to the selected ws. For computed directions the unit is the standard
deviation of sampled w along the (unit-norm) vector, so ``smile=+2`` means "two standard
deviations of the model's own smile variation"; imported directions keep unit 1, the raw
scale of the tool that made them.

Layer ranges follow the StyleGAN naming (Karras et al. 2019, sec. 3.1): ws index ``i`` belongs
to resolution ``4 * 2**(i // 2)``, the block whose ``conv1`` (even i) or ``torgb`` (odd i)
reads it; the odd ws also drive the next block's ``conv0``. So for any model ``coarse`` is
4-8 px (ws 0-3), ``middle`` 16-32 px (ws 4-7) and ``fine`` 64 px and up (ws 8+), exactly the
usual split of an 18-ws 1024 px model. Explicit index ranges ``"0-5"`` or ``"2,4,6"`` work too.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from stylelens.errors import StyleLensError

LAYER_RANGES: dict[str, tuple[int, int | None]] = {  # name -> (lowest, highest) resolution
    "all": (4, None),
    "coarse": (4, 8),
    "middle": (16, 32),
    "fine": (64, None),
}
METHODS = ("sefa", "ganspace", "interfacegan", "imported")
Method = Literal["sefa", "ganspace", "interfacegan", "imported"]
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


class DirectionError(StyleLensError):
    """A direction is malformed, missing, or does not fit the model it is used with."""


def ws_resolution(index: int) -> int:
    """Resolution whose block reads ws[index] through its conv1 / toRGB (see module doc)."""
    return 4 * 2 ** (index // 2)


def layer_indices(layers: str, num_ws: int) -> list[int]:
    """ws indices a layer range names, for a model with ``num_ws`` ws.

    Args:
        layers: ``all``, ``coarse`` (4-8 px), ``middle`` (16-32 px), ``fine`` (64 px+), a
            ``+``-joined union (``coarse+middle``), or explicit indices (``0-5``, ``1,3,5``).
        num_ws: the model's number of ws (``G.num_ws``).

    Raises:
        DirectionError: for an unknown name, an index outside the model, or an empty range.
    """
    spec = layers.strip().lower()
    picked: set[int] = set()
    for part in spec.split("+"):
        if part in LAYER_RANGES:
            lo, hi = LAYER_RANGES[part]
            picked |= {i for i in range(num_ws) if lo <= ws_resolution(i) <= (hi or math.inf)}
        elif re.fullmatch(r"[\d,\s-]+", part):
            picked |= _explicit_indices(part, num_ws)
        else:
            names = ", ".join(LAYER_RANGES)
            raise DirectionError(
                f"unknown layer range {layers!r}: use {names}, a union like coarse+middle, "
                "or ws indices like 0-5"
            )
    if not picked:
        raise DirectionError(f"layer range {layers!r} selects no ws of this {num_ws}-ws model")
    return sorted(picked)


def _explicit_indices(spec: str, num_ws: int) -> set[int]:
    out: set[int] = set()
    for item in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", item)
        if m is None:
            raise DirectionError(f"malformed ws indices {spec!r}: use e.g. 0-5 or 1,3,5")
        lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
        if hi < lo or hi >= num_ws:
            raise DirectionError(f"ws indices {item.strip()!r} must lie in 0-{num_ws - 1}")
        out |= set(range(lo, hi + 1))
    return out


def layer_mask(layers: str, num_ws: int) -> torch.Tensor:
    """float [num_ws] with 1 on the ws ``layers`` selects and 0 elsewhere."""
    mask = torch.zeros(num_ws)
    mask[layer_indices(layers, num_ws)] = 1.0
    return mask


@dataclass(frozen=True)
class Direction:
    """One slider: a vector in W (or W+), the layers it moves, its range and where it came from.

    Attributes:
        name: id in the model's store (lowercase letters, digits, ``._-``).
        vector: float32 [w_dim] or [num_ws, w_dim].
        layers: layer range it acts on (see :func:`layer_indices`).
        unit: w distance of one slider unit (std of sampled w along ``vector`` when computed).
        slider: default slider range (low, high) in units.
        step: the default step in units: the edit its measured quality refers to.
        method: ``sefa``, ``ganspace``, ``interfacegan`` or ``imported``.
        provenance: JSON-able facts about how it was made (sample size, accuracy, source file).
    """

    name: str
    vector: torch.Tensor
    layers: str = "all"
    unit: float = 1.0
    slider: tuple[float, float] = (-3.0, 3.0)
    step: float = 1.0
    method: Method = "imported"
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if re.match(NAME_PATTERN, self.name) is None:
            raise DirectionError(
                f"direction name {self.name!r}: use lowercase letters, digits and ._- "
                "(at most 64 characters)"
            )
        if self.vector.ndim not in (1, 2) or not self.vector.is_floating_point():
            raise DirectionError(
                f"direction {self.name!r}: vector must be float [w_dim] or [num_ws, w_dim], "
                f"got {self.vector.dtype} {list(self.vector.shape)}"
            )
        if not torch.isfinite(self.vector).all():
            raise DirectionError(f"direction {self.name!r}: vector has NaN or inf entries")
        if self.method not in METHODS:
            raise DirectionError(f"direction {self.name!r}: method must be one of {METHODS}")
        if not self.slider[0] < self.slider[1] or self.unit <= 0:
            raise DirectionError(
                f"direction {self.name!r}: need slider low < high and unit > 0, got "
                f"slider={self.slider}, unit={self.unit}"
            )

    @property
    def w_dim(self) -> int:
        return int(self.vector.shape[-1])

    def check_fits(self, *, num_ws: int, w_dim: int) -> None:
        """Raise DirectionError unless the vector and layer range fit a model of this shape."""
        ok = self.vector.shape == (w_dim,) or self.vector.shape == (num_ws, w_dim)
        if not ok:
            raise DirectionError(
                f"direction {self.name!r} has shape {list(self.vector.shape)}, but the model "
                f"takes [{w_dim}] or [{num_ws}, {w_dim}]; it was made for another model"
            )
        layer_indices(self.layers, num_ws)

    def delta(self, amount: float, num_ws: int) -> torch.Tensor:
        """The ws offset [num_ws, w_dim] of moving this slider by ``amount`` units."""
        mask = layer_mask(self.layers, num_ws).to(self.vector)  # [num_ws]
        v = self.vector if self.vector.ndim == 2 else self.vector.expand(num_ws, -1)
        return (amount * self.unit) * mask[:, None] * v
