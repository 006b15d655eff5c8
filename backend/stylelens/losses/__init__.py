"""Reconstruction losses for inversion: pixel MSE plus one perceptual distance.

Every perceptual backend is a module taking two image batches in [-1, 1] and returning one
distance per sample ([N]); zero for identical images. :func:`select_perceptual` picks the best
one a model directory allows (see its docstring); its ``name`` is recorded in results.
"""

from stylelens.losses.perceptual import (
    PERCEPTUAL_BACKENDS,
    PerceptualLoss,
    available_backends,
    load_perceptual,
    pixel_mse,
    select_perceptual,
)

__all__ = [
    "PERCEPTUAL_BACKENDS",
    "PerceptualLoss",
    "available_backends",
    "load_perceptual",
    "pixel_mse",
    "select_perceptual",
]
