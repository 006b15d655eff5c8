"""A SynthFaces face's parameters as a standard-normal latent.

Every parameter ``sample_params`` draws has a known distribution, so it can be carried to a
standard normal through its own CDF: ``z = Phi^-1(F(v))`` (a continuous parameter), a uniform
draw inside the class's probability interval (a categorical one), or a draw from the clipped
tail (a clipped normal at its bound). Faces drawn with ``sample_params`` then give latents
distributed exactly as N(0, I), dimension by dimension and independently: a generator trained
to draw ``render_face(seed)`` from ``param_latent(seed)`` (padded with noise to ``z_dim``)
draws the SynthFaces distribution from ordinary Gaussian z (``stylelens train --supervise``).

The random parts of the transform come from ``seed`` alone, so the latent of a seed never
changes. The texture seed is not encoded: it stays in the noise dimensions.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable
from statistics import NormalDist

import numpy as np

from stylelens.data.synthfaces.params import (
    _BEARD_P,
    _GLASSES_P,
    _HAIR_P,
    FaceParams,
    sample_params,
)

__all__ = ["PARAM_DIMS", "PARAM_NAMES", "beta_cdf", "param_latent"]

_NORMAL = NormalDist()
_EPS = 1e-7
_IRIS_HUES = (0.58, 0.3, 0.08, 0.1)  # sample_params: one of these +- 0.04, each 1/4


def _probit(u: float) -> float:
    return _NORMAL.inv_cdf(min(max(u, _EPS), 1 - _EPS))


def beta_cdf(x: float, a: float, b: float) -> float:
    """The regularised incomplete beta function I_x(a, b): the CDF of Beta(a, b) at ``x``.

    Continued fraction (modified Lentz), on the side of the symmetry relation
    I_x(a, b) = 1 - I_{1-x}(b, a) where it converges fast.
    """
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(1 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-12:
            break
    return h


def _uniform(lo: float, hi: float) -> Callable[[float, np.random.Generator], float]:
    return lambda v, rng: _probit((v - lo) / (hi - lo))


def _clipped_normal(sigma: float, bound: float) -> Callable[[float, np.random.Generator], float]:
    """np.clip(N(0, sigma), -bound, bound): inside, v / sigma; at a bound, a draw from the tail
    beyond it (the values the clip folded onto the bound)."""
    tail = _NORMAL.cdf(-bound / sigma)

    def gaussian(v: float, rng: np.random.Generator) -> float:
        if abs(v) < bound:
            return v / sigma
        u = float(rng.uniform(0, tail))
        return -_probit(u) if v > 0 else _probit(u)

    return gaussian


def _beta(a: float, b: float) -> Callable[[float, np.random.Generator], float]:
    return lambda v, rng: _probit(beta_cdf(v, a, b))


def _categorical(p: tuple[float, ...]) -> Callable[[float, np.random.Generator], float]:
    """Class k of probabilities p: a uniform draw inside [P(<k), P(<=k)), then Phi^-1."""
    edges = np.concatenate([[0.0], np.cumsum(p)])
    return lambda v, rng: _probit(float(rng.uniform(edges[int(v)], edges[int(v) + 1])))


def _iris_hue(h: float, rng: np.random.Generator) -> float:
    """The iris hue: an equal mixture of four uniforms of width 0.08 (a piecewise-linear CDF)."""
    u = sum(min(max((h - (c - 0.04)) / 0.08, 0.0), 1.0) for c in _IRIS_HUES) / len(_IRIS_HUES)
    return _probit(u)


def _hsv(rgb: tuple[float, float, float]) -> tuple[float, float, float]:
    return colorsys.rgb_to_hsv(*rgb)


# (name, how to read it from FaceParams, its transform); the order is the latent's order.
_Reader = Callable[[FaceParams], float]
_FIELDS: tuple[tuple[str, _Reader, Callable[[float, np.random.Generator], float]], ...] = (
    ("yaw", lambda p: p.yaw, _clipped_normal(13, 30)),
    ("pitch", lambda p: p.pitch, _clipped_normal(6, 15)),
    ("roll", lambda p: p.roll, _clipped_normal(6, 15)),
    ("smile", lambda p: p.smile, _uniform(-1, 1)),
    ("mouth_open", lambda p: p.mouth_open, _beta(0.9, 1.6)),
    ("eye_open", lambda p: p.eye_open, _beta(2.5, 1.2)),
    ("age", lambda p: p.age, _uniform(0, 1)),
    ("skin_tone", lambda p: p.skin_tone, _uniform(0, 1)),
    ("hair_lightness", lambda p: p.hair_lightness, _beta(1.1, 1.5)),
    ("hair_hue", lambda p: p.hair_hue, _uniform(0, 1)),
    ("face_width", lambda p: p.face_width, _uniform(0, 1)),
    ("light", lambda p: p.light, _uniform(-1, 1)),
    ("background_hue", lambda p: p.background_hue, _uniform(0, 1)),
    ("hair_style", lambda p: p.hair_style, _categorical(_HAIR_P)),
    ("glasses", lambda p: p.glasses, _categorical(_GLASSES_P)),
    ("beard", lambda p: p.beard, _categorical(_BEARD_P)),
    ("head_x", lambda p: p.head_x, _uniform(-0.05, 0.05)),
    ("head_y", lambda p: p.head_y, _uniform(-0.08, 0.0)),
    ("head_scale", lambda p: p.head_scale, _uniform(0.92, 1.06)),
    ("eye_spacing", lambda p: p.eye_spacing, _uniform(0.9, 1.1)),
    ("eye_size", lambda p: p.eye_size, _uniform(0.85, 1.15)),
    ("iris_hue", lambda p: _hsv(p.iris_rgb)[0], _iris_hue),
    ("iris_sat", lambda p: _hsv(p.iris_rgb)[1], _uniform(0.4, 0.8)),
    ("iris_val", lambda p: _hsv(p.iris_rgb)[2], _uniform(0.3, 0.7)),
    ("brow_tilt", lambda p: p.brow_tilt, _uniform(-0.25, 0.25)),
    ("brow_thickness", lambda p: p.brow_thickness, _uniform(0.7, 1.4)),
    ("nose_length", lambda p: p.nose_length, _uniform(0.85, 1.15)),
    ("mouth_width", lambda p: p.mouth_width, _uniform(0.85, 1.15)),
    ("lip_fullness", lambda p: p.lip_fullness, _uniform(0.7, 1.3)),
    ("lip_red", lambda p: p.lip_red, _uniform(0.2, 0.8)),
    ("shirt_hue", lambda p: _hsv(p.shirt_rgb)[0], _uniform(0, 1)),
    ("shirt_sat", lambda p: _hsv(p.shirt_rgb)[1], _uniform(0.1, 0.7)),
    ("shirt_val", lambda p: _hsv(p.shirt_rgb)[2], _uniform(0.2, 0.9)),
    ("background_sat", lambda p: p.background_sat, _uniform(0.2, 0.6)),
    ("background_val", lambda p: p.background_val, _uniform(0.55, 0.92)),
    ("hair_length", lambda p: p.hair_length, _uniform(0.0, 1.0)),
    ("hair_part", lambda p: p.hair_part, _uniform(-1, 1)),
    ("glasses_hue", lambda p: _hsv(p.glasses_rgb)[0], _uniform(0, 1)),
    ("glasses_sat", lambda p: _hsv(p.glasses_rgb)[1], _uniform(0, 0.6)),
    ("glasses_val", lambda p: _hsv(p.glasses_rgb)[2], _uniform(0.05, 0.6)),
)

PARAM_NAMES: tuple[str, ...] = tuple(name for name, _, _ in _FIELDS)
PARAM_DIMS = len(PARAM_NAMES)


def param_latent(seed: int) -> np.ndarray:
    """The parameters of SynthFaces seed ``seed`` as float32 [PARAM_DIMS], each N(0, 1) over
    seeds (in ``PARAM_NAMES`` order). A pure function of ``seed`` (0.2 ms; not cached, since a
    training run asks for each of up to a million seeds about once)."""
    params = sample_params(int(seed))
    rng = np.random.default_rng([int(seed), 0x2A7E])  # the transform's own draws
    z = [transform(read(params), rng) for _, read, transform in _FIELDS]
    return np.asarray(z, dtype=np.float32)
