"""Framings: where a model's training faces sit in the frame, and the maths to place a face so.

A generator only reproduces faces framed the way its training images were. Two framings exist:

* ``ffhq``: FFHQ's oriented quad (``stylelens.data.align.ffhq_quad``). FFHQ's images *are* that
  quad, so every face is warped onto it.
* ``synthfaces``: the SynthFaces renderer's. Its faces are not aligned: the head moves, turns
  and scales within the ranges of ``synthfaces.params``. The framing is the four alignment
  points at the parameters' means (``points``) plus the range of placements the training faces
  cover (``placement``), both derived from the renderer (``synthfaces.framing``). A face
  already placed within that range keeps its own frame; any other is moved to the mean.

A placement is the similarity (scale, roll, shift) that takes the template points onto a face's
points, in units of the frame's side (``fit_similarity``). Cards carry their framing
(``ModelCard.framing``); ``docs/alignment.md`` explains the numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

Point = tuple[float, float]
Range = tuple[float, float]
# The frame's corners in its own units, in the order of ``ffhq_quad``: top-left, bottom-left,
# bottom-right, top-right.
UNIT_SQUARE = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])


@dataclass(frozen=True)
class Similarity:
    """``dst ~ scale * R(roll) (src - centre) + centre + shift`` with ``centre`` the mean of
    ``src``; ``roll_deg`` > 0 turns clockwise on screen (y points down), as the renderer's roll."""

    scale: float
    roll_deg: float
    shift: Point

    def apply(self, src: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Map ``points [N, 2]`` by the similarity fitted from ``src [M, 2]``."""
        centre = np.asarray(src, float).mean(axis=0)
        t = math.radians(self.roll_deg)
        rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
        d = np.asarray(points, float) - centre
        return self.scale * d @ rot.T + centre + np.asarray(self.shift)


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> Similarity:
    """Least-squares similarity (no reflection) from ``src [N, 2]`` to ``dst [N, 2]``.

    Raises:
        ValueError: ``src`` has all its points in one place, or the shapes differ.
    """
    src, dst = np.asarray(src, float), np.asarray(dst, float)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2:
        raise ValueError(f"point sets of shapes {src.shape} and {dst.shape}: need two [N, 2]")
    a, b = src - src.mean(axis=0), dst - dst.mean(axis=0)
    norm = float((a * a).sum())
    if norm < 1e-18:
        raise ValueError("degenerate template: all its points coincide")
    # With points as complex numbers, the best s * e^(i theta) is sum(conj(a) b) / sum(|a|^2).
    dot = float((a * b).sum())
    cross = float((a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum())
    shift = dst.mean(axis=0) - src.mean(axis=0)
    return Similarity(
        scale=math.hypot(dot, cross) / norm,
        roll_deg=math.degrees(math.atan2(cross, dot)),
        shift=(float(shift[0]), float(shift[1])),
    )


class Placement(BaseModel):
    """The placements a framing's training faces cover: each a (low, high) range of the
    similarity from the template points to a face's points, in units of the frame's side."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scale: Range
    roll_deg: Range
    shift_x: Range
    shift_y: Range

    def contains(self, s: Similarity) -> bool:
        values = (s.scale, s.roll_deg, s.shift[0], s.shift[1])
        ranges = (self.scale, self.roll_deg, self.shift_x, self.shift_y)
        return all(lo <= v <= hi for v, (lo, hi) in zip(values, ranges, strict=True))


class Framing(BaseModel):
    """How a model's training faces are framed (``card.json`` field ``framing``).

    Attributes:
        kind: ``ffhq`` (FFHQ's quad) or ``synthfaces`` (the SynthFaces renderer's framing).
        points: ``synthfaces`` only: eye_left, eye_right, mouth_left, mouth_right (the points
            of ``align.FaceLandmarks``) at the renderer's mean parameters, as (x, y) fractions
            of the frame's side. None: derived from the installed renderer when needed.
        placement: ``synthfaces`` only: the range of the training faces' placements.
        derived_from: how ``points`` and ``placement`` were obtained.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["ffhq", "synthfaces"] = "ffhq"
    points: tuple[Point, Point, Point, Point] | None = None
    placement: Placement | None = None
    derived_from: str = ""

    @model_validator(mode="after")
    def _check(self) -> Framing:
        if self.kind == "ffhq" and (self.points is not None or self.placement is not None):
            raise ValueError("the ffhq framing is FFHQ's quad: it takes no points or placement")
        if (self.points is None) != (self.placement is None):
            raise ValueError("give both points and placement, or neither (derived)")
        return self

    def resolved(self) -> Framing:
        """This framing with its numbers: a ``synthfaces`` framing without them gets the
        ones derived from the installed renderer (about a second, once per process)."""
        if self.kind == "synthfaces" and self.points is None:
            from stylelens.data.synthfaces.framing import derive_framing

            return derive_framing()
        return self

    def template(self) -> np.ndarray:
        """``float64 [4, 2]``: :attr:`points` (after :meth:`resolved`)."""
        if self.points is None:
            raise ValueError(f"the {self.kind} framing has no template points")
        return np.array(self.points, float)


FFHQ = Framing(kind="ffhq")
