"""DeLong's test for two correlated ROC curves, with Sun & Xu's fast algorithm.

DeLong, DeLong & Clarke-Pearson (1988) estimate the covariance of AUCs measured on the
same cases from their structural components (each positive's share of negatives it
outranks, and each negative's share of positives that outrank it). Sun & Xu (2014,
IEEE Signal Processing Letters 21(11)) obtain those components from midranks in
O(N log N) instead of O(m n) comparisons. Cases are assumed independent: with several
cases per patient use the patient-level bootstrap instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata


def structural_components(scores: np.ndarray, positive: np.ndarray):
    """(aucs (k,), V10 (k, m), V01 (k, n)) for k score rows; m positives, n negatives."""
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    positive = np.asarray(positive, dtype=bool)
    x, y = scores[:, positive], scores[:, ~positive]
    m, n = x.shape[1], y.shape[1]
    tz = rankdata(np.concatenate([x, y], axis=1), axis=1)  # midranks, ties averaged
    tx, ty = rankdata(x, axis=1), rankdata(y, axis=1)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    aucs = v10.mean(axis=1)
    return aucs, v10, v01


def delong_covariance(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(aucs (k,), covariance (k, k)) = S10/m + S01/n."""
    aucs, v10, v01 = structural_components(scores, positive)
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10))
    s01 = np.atleast_2d(np.cov(v01))
    return aucs, s10 / m + s01 / n


@dataclass(frozen=True)
class DeLongResult:
    auc_a: float
    auc_b: float
    delta: float  # auc_a - auc_b
    se: float
    z: float
    p: float


def delong_test(y_true: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> DeLongResult:
    """Two-sided test of AUC(a) = AUC(b) on the same cases.

    Needs both classes. Identical curves (zero variance, zero difference) give p = 1;
    a difference with zero variance cannot be tested and gives p = NaN.
    """
    positive = np.asarray(y_true) == 1
    if positive.all() or not positive.any():
        nan = float("nan")
        return DeLongResult(nan, nan, nan, nan, nan, nan)
    aucs, cov = delong_covariance(np.vstack([score_a, score_b]), positive)
    delta = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = float(np.sqrt(max(var, 0.0)))
    return DeLongResult(float(aucs[0]), float(aucs[1]), delta, se, *wald(delta, se))


def wald(delta: float, se: float) -> tuple[float, float]:
    """(z, two-sided normal p) of delta / se; delta 0 with se 0 is p = 1, not NaN."""
    if not np.isfinite(delta) or not np.isfinite(se):
        return float("nan"), float("nan")
    if se <= 1e-15 * max(1.0, abs(delta)):
        return (0.0, 1.0) if abs(delta) <= 1e-15 else (float("nan"), float("nan"))
    z = delta / se
    return float(z), float(2 * norm.sf(abs(z)))
