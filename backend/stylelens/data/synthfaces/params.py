"""SynthFaces parameters: the labelled attributes (with documented ranges) and the unlabelled
variety, drawn from a seed."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from stylelens.labels import ATTRIBUTES, BEARDS, GLASSES, HAIR_STYLES, Attribute

__all__ = [
    "ATTRIBUTES",
    "BEARDS",
    "GLASSES",
    "HAIR_STYLES",
    "Attribute",
    "FaceParams",
    "labels_vector",
    "sample_params",
]

# The labels' vocabulary lives in stylelens.labels (shared with the attribute network).
_HAIR_P = (0.3, 0.27, 0.1, 0.17, 0.16)
_GLASSES_P = (0.6, 0.2, 0.2)
_BEARD_P = (0.6, 0.2, 0.2)


@dataclass(frozen=True)
class FaceParams:
    """Everything that decides a face: the labelled attributes, then unlabelled variety."""

    yaw: float
    pitch: float
    roll: float
    smile: float
    mouth_open: float
    eye_open: float
    age: float
    skin_tone: float
    hair_lightness: float
    hair_hue: float
    face_width: float
    light: float
    background_hue: float
    hair_style: int
    glasses: int
    beard: int
    # unlabelled variety
    head_x: float
    head_y: float
    head_scale: float
    eye_spacing: float
    eye_size: float
    iris_rgb: tuple[float, float, float]
    brow_tilt: float
    brow_thickness: float
    nose_length: float
    mouth_width: float
    lip_fullness: float
    lip_red: float
    shirt_rgb: tuple[float, float, float]
    background_sat: float
    background_val: float
    hair_length: float
    hair_part: float
    glasses_rgb: tuple[float, float, float]
    texture_seed: int

    def labels(self) -> dict[str, float | int]:
        """The labelled attributes, by ``ATTRIBUTES`` name."""
        return {a.name: getattr(self, a.name) for a in ATTRIBUTES}


def sample_params(seed: int) -> FaceParams:
    """Draw a face's parameters; a pure function of ``seed`` (any non-negative int)."""
    rng = np.random.default_rng([int(seed), 0x5F17])
    u = rng.uniform

    def hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
        return tuple(float(c) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))  # type: ignore[return-value]

    iris = hsv(float(rng.choice([0.58, 0.3, 0.08, 0.1])) + u(-0.04, 0.04), u(0.4, 0.8), u(0.3, 0.7))
    return FaceParams(
        yaw=float(np.clip(rng.normal(0, 13), -30, 30)),
        pitch=float(np.clip(rng.normal(0, 6), -15, 15)),
        roll=float(np.clip(rng.normal(0, 6), -15, 15)),
        smile=float(u(-1, 1)),
        mouth_open=float(np.clip(rng.beta(0.9, 1.6), 0, 1)),
        eye_open=float(np.clip(rng.beta(2.5, 1.2), 0, 1)),
        age=float(u(0, 1)),
        skin_tone=float(u(0, 1)),
        hair_lightness=float(rng.beta(1.1, 1.5)),
        hair_hue=float(u(0, 1)),
        face_width=float(u(0, 1)),
        light=float(u(-1, 1)),
        background_hue=float(u(0, 1)),
        hair_style=int(rng.choice(len(HAIR_STYLES), p=_HAIR_P)),
        glasses=int(rng.choice(len(GLASSES), p=_GLASSES_P)),
        beard=int(rng.choice(len(BEARDS), p=_BEARD_P)),
        head_x=float(u(-0.05, 0.05)),
        head_y=float(u(-0.08, 0.0)),
        head_scale=float(u(0.92, 1.06)),
        eye_spacing=float(u(0.9, 1.1)),
        eye_size=float(u(0.85, 1.15)),
        iris_rgb=iris,
        brow_tilt=float(u(-0.25, 0.25)),
        brow_thickness=float(u(0.7, 1.4)),
        nose_length=float(u(0.85, 1.15)),
        mouth_width=float(u(0.85, 1.15)),
        lip_fullness=float(u(0.7, 1.3)),
        lip_red=float(u(0.2, 0.8)),
        shirt_rgb=hsv(u(0, 1), u(0.1, 0.7), u(0.2, 0.9)),
        background_sat=float(u(0.2, 0.6)),
        background_val=float(u(0.55, 0.92)),
        hair_length=float(u(0.0, 1.0)),
        hair_part=float(u(-1, 1)),
        glasses_rgb=hsv(u(0, 1), u(0, 0.6), u(0.05, 0.6)),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


def labels_vector(labels: dict[str, float | int]) -> np.ndarray:
    """Labels in ``ATTRIBUTES`` order as float32 (categoricals as their class index)."""
    return np.array([float(labels[a.name]) for a in ATTRIBUTES], dtype=np.float32)
