"""The framing SynthFaces are drawn in, derived from the renderer itself.

The template is where ``draw.landmarks`` puts the eyes and mouth corners of the mean face (every
continuous parameter of ``sample_params`` at its mean over the draws); the placement range is
the smallest box that holds the similarity from that template to every drawn face's points.
Nothing is tuned by hand: change the renderer or the parameter ranges and the framing follows
(``tests/test_align.py`` checks that the embedded model's card still matches).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from stylelens.data.framing import Framing, Placement, fit_similarity
from stylelens.data.synthfaces.draw import landmarks
from stylelens.data.synthfaces.params import FaceParams, sample_params

DRAWS = 4096  # seeds 0..4095: the first faces of every SynthFaces training stream
DIGITS = 4  # 1e-4 of the frame: 0.03 px at 256


def mean_face(params: list[FaceParams]) -> FaceParams:
    """``params[0]`` with every continuous field (floats and colour triples) replaced by its
    mean over ``params``; the categorical ones (hair style, glasses, beard) do not move the
    alignment points and are kept."""
    means: dict[str, object] = {}
    for f in dataclasses.fields(FaceParams):
        first = getattr(params[0], f.name)
        if isinstance(first, float):
            means[f.name] = float(np.mean([getattr(p, f.name) for p in params]))
        elif isinstance(first, tuple):
            column = np.mean([getattr(p, f.name) for p in params], axis=0)
            means[f.name] = tuple(float(c) for c in column)
    return dataclasses.replace(params[0], **means)  # type: ignore[arg-type]


@functools.cache  # a pure function of the installed code; Framing is frozen
def derive_framing(*, draws: int = DRAWS) -> Framing:
    """The ``synthfaces`` framing of the installed renderer, from ``draws`` parameter draws
    (seeds ``0 .. draws - 1``); about a second for the default 4096 (once per process)."""
    if draws < 2:
        raise ValueError(f"draws {draws}: need at least 2")
    params = [sample_params(seed) for seed in range(draws)]
    template = landmarks(mean_face(params))
    fits = [fit_similarity(template, landmarks(p)) for p in params]
    table = np.array([(s.scale, s.roll_deg, s.shift[0], s.shift[1]) for s in fits])
    lo = np.floor(table.min(axis=0) * 10**DIGITS) / 10**DIGITS  # rounded outwards
    hi = np.ceil(table.max(axis=0) * 10**DIGITS) / 10**DIGITS
    ranges = [(float(a), float(b)) for a, b in zip(lo, hi, strict=True)]
    points = [(round(float(x), DIGITS), round(float(y), DIGITS)) for x, y in template]
    return Framing(
        kind="synthfaces",
        points=tuple(points),  # type: ignore[arg-type]
        placement=Placement(
            scale=ranges[0], roll_deg=ranges[1], shift_x=ranges[2], shift_y=ranges[3]
        ),
        derived_from=(
            f"stylelens.data.synthfaces.framing: draw.landmarks() of the mean of {draws} "
            f"sample_params draws (seeds 0-{draws - 1}); placement: min-max over the same draws"
        ),
    )
