"""Calibration: expected calibration error (ECE) and Brier score.

ECE uses 15 equal-width bins over [0, 1], left-closed ([i/15, (i+1)/15), the last bin
also holds 1.0), weighted by the share of entries in each bin. What is binned depends
on the task, so that each answers 'when the model says p, is it right p of the time':
  binary      P(positive) against the positive label (calibration of the positive class)
  multiclass  top-label confidence against 'argmax is correct'
  multilabel  every unmasked label probability against its label, pooled
Brier: binary mean (p - y)^2 of P(positive); multiclass the mean over cases of the sum
over classes; multilabel the mean over unmasked (case, label) entries.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import brier_score_loss

N_BINS = 15


def binned_ece(confidence: np.ndarray, outcome: np.ndarray, n_bins: int = N_BINS) -> float:
    """sum_b (n_b / N) |mean outcome in b - mean confidence in b|."""
    conf = np.asarray(confidence, dtype=np.float64).ravel()
    hit = np.asarray(outcome, dtype=np.float64).ravel()
    if conf.size == 0:
        return float("nan")
    b = np.clip((conf * n_bins).astype(np.int64), 0, n_bins - 1)  # 1.0 goes to the last bin
    gap = np.bincount(b, weights=hit, minlength=n_bins) - np.bincount(b, weights=conf, minlength=n_bins)
    return float(np.abs(gap).sum() / conf.size)  # |sum(hit - conf)| per bin = n_b |mean gap|


def ece(kind: str, y_true: np.ndarray, score: np.ndarray) -> float:
    """ECE for the task kind (score: P(positive) 1-D for binary, (N, K) otherwise)."""
    if kind == "binary":
        return binned_ece(score, y_true)
    if kind == "multiclass":
        return binned_ece(score.max(axis=1), score.argmax(axis=1) == y_true)
    mask = ~np.isnan(y_true)
    return binned_ece(score[mask], y_true[mask])


def brier(kind: str, y_true: np.ndarray, score: np.ndarray) -> float:
    if kind == "binary":
        return float(brier_score_loss(y_true, score, pos_label=1))
    if kind == "multiclass":
        return float(brier_score_loss(y_true, score, labels=list(range(score.shape[1]))))
    mask = ~np.isnan(y_true)
    return float(np.mean((score[mask] - y_true[mask]) ** 2))
