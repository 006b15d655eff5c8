"""Fréchet Attribute Distance, per-attribute coverage and near duplicates: pure maths over
feature sets.

FAD is the Fréchet distance between Gaussians fitted to attribute-network features
(Heusel et al. 2017, eq. 6 with the attribute network in place of Inception):
``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``.
"""

from __future__ import annotations

import numpy as np


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [F] and covariance [F, F] of features [N, F] (float64)."""
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need features [N >= 2, F], got {features.shape}")
    f = features.astype(np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``Tr((S1 S2)^(1/2))`` is the sum of square roots of the eigenvalues of ``S1 S2``, which are
    real and non-negative for covariance matrices; tiny negative round-off is clipped.
    """
    diff = mu1 - mu2
    eig = np.linalg.eigvals(sigma1 @ sigma2)
    tr_sqrt = np.sqrt(np.clip(eig.real, 0.0, None)).sum()
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_sqrt
    return float(max(value, 0.0))


def fad(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FAD between two feature sets [N, F]."""
    return frechet_distance(*feature_stats(features_a), *feature_stats(features_b))


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / len(a)
    cdf_b = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


def total_variation(a: np.ndarray, b: np.ndarray, num_classes: int) -> float:
    """Total-variation distance between the class frequencies of two label sets."""
    pa = np.bincount(a.astype(int), minlength=num_classes) / len(a)
    pb = np.bincount(b.astype(int), minlength=num_classes) / len(b)
    return float(0.5 * np.abs(pa - pb).sum())


def nearest_neighbour_distances(features: np.ndarray) -> np.ndarray:
    """For each row of [N, F] features, the Euclidean distance to its nearest other row."""
    f = features.astype(np.float64)
    sq = (f * f).sum(axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (f @ f.T)
    np.fill_diagonal(d2, np.inf)
    return np.sqrt(np.clip(d2.min(axis=1), 0.0, None))


def near_duplicates(generated: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """How close a generator's samples come to repeating themselves, against real data.

    Mode collapse shows as generated samples whose nearest generated neighbour is much closer
    than real samples ever are to each other (two different seeds, the same face). Reports
    the minimum and median nearest-neighbour distance within each set (same N for a fair
    comparison) and the fraction of generated samples closer to another generated sample than
    the closest pair of real samples.
    """
    g, r = nearest_neighbour_distances(generated), nearest_neighbour_distances(real)
    return {
        "generated_min": float(g.min()),
        "generated_median": float(np.median(g)),
        "real_min": float(r.min()),
        "real_median": float(np.median(r)),
        "fraction_below_real_min": float((g < r.min()).mean()),
    }
