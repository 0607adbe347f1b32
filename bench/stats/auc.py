"""AUC as a Mann-Whitney statistic with case weights, for many bootstrap resamples at once.

A bootstrap resample is a vector of counts (how often each case was drawn), so the
AUC of every resample is the weighted Mann-Whitney U of the original cases. The
negatives are sorted by score once; per resample only a cumulative sum of their
counts and a lookup at each positive's place among them remain, in integers (exact;
int32 counts halve the memory traffic, the sums are taken in int64).
Ties between a positive and a negative count one half, as in roc_auc_score.
"""

from __future__ import annotations

import numpy as np


def weighted_auc(scores: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """AUC of each score row (k, N) or vector (N,) for targets `y` (1 positive, 0 negative,
    NaN ignored), once per row of the count matrix `weights` (B, N).

    Returns shape (k, B), or (B,) for one score vector, or a scalar without weights.
    A resample with no positive or no negative gives NaN.
    """
    y = np.asarray(y, dtype=np.float64)
    s2 = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    w = np.ones((1, y.size), dtype=np.int64) if weights is None else np.atleast_2d(weights)
    pos_idx, neg_idx = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    wp = w[:, pos_idx]
    n_pos = wp.sum(axis=1)
    out = np.empty((len(s2), len(w)))
    for k, s in enumerate(s2):
        order = neg_idx[np.argsort(s[neg_idx], kind="stable")]
        neg_sorted = s[order]
        cum = np.zeros((len(w), order.size + 1), dtype=w.dtype)
        np.cumsum(w[:, order], axis=1, out=cum[:, 1:])  # negative count below each place
        lo = np.searchsorted(neg_sorted, s[pos_idx], side="left")
        hi = np.searchsorted(neg_sorted, s[pos_idx], side="right")
        below = cum[:, lo]
        twice_u = np.einsum("bi,bi->b", wp, below + (cum[:, hi] if (hi != lo).any() else below),
                            dtype=np.int64)  # counts may be int32: sum exactly in int64
        with np.errstate(invalid="ignore", divide="ignore"):
            out[k] = 0.5 * twice_u / (n_pos * cum[:, -1])
    if weights is None:
        return out[:, 0] if np.ndim(scores) == 2 else out[0, 0]
    return out if np.ndim(scores) == 2 else out[0]


def one_vs_rest(kind: str, y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(targets, scores), both (N, C): one column per AUC of the task, NaN targets ignored.

    Binary: the one column of P(positive). Multiclass: each class against the rest.
    Multilabel: each label as it is.
    """
    if kind == "binary":
        return np.asarray(y_true, dtype=np.float64)[:, None], np.asarray(score)[:, None]
    if kind == "multiclass":
        y = np.asarray(y_true)
        return (y[:, None] == np.arange(score.shape[1])).astype(np.float64), score
    return np.asarray(y_true, dtype=np.float64), score


def has_both_classes(target: np.ndarray) -> bool:
    return bool((target == 1).any() and (target == 0).any())
