"""The points the report's figures draw, computed without matplotlib: the Pareto front of
a trade-off, ROC points per task kind, and reliability bins as the ECE counts them.

It is apart from reports.plots (the drawing) so the numbers can be tested against
scikit-learn and bench.stats without rendering a figure, and a figure's look can change
without touching what it shows.
"""

from __future__ import annotations

import numpy as np

N_BINS = 15  # as bench.stats.calibration (ECE)


def pareto_front(cost, value) -> list[int]:
    """Indices of the points no other point beats: lower cost and higher value (strictly
    better in one, no worse in the other), in order of increasing cost."""
    order = sorted(range(len(cost)), key=lambda i: (cost[i], -value[i]))
    front, best = [], -np.inf
    for i in order:
        if value[i] > best:
            front.append(i)
            best = value[i]
    return front


def _targets(kind: str, y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    """(targets, scores), one pair per (case, class), unknown targets dropped: binary
    P(positive) against the label, multiclass one-vs-rest, multilabel every label."""
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=np.float64)
    if kind == "binary":
        t, s = y.astype(np.float64), (s[:, -1] if s.ndim == 2 else s)
    elif kind == "multiclass":
        t = (y.astype(np.int64)[:, None] == np.arange(s.shape[1])).astype(np.float64)
    else:
        t = y.astype(np.float64)
    t, s = t.ravel(), s.ravel()
    keep = ~np.isnan(t)
    return t[keep], s[keep]


def roc_points(kind: str, y_true, y_score) -> tuple[np.ndarray, np.ndarray, str]:
    """(fpr, tpr, what was pooled) of a task kind: binary directly; multiclass and
    multilabel micro-averaged one-vs-rest (every (case, class) pair pooled; NaN targets
    of a multilabel task masked). The points are scikit-learn's roc_curve."""
    from sklearn.metrics import roc_curve

    t, s = _targets(kind, y_true, y_score)
    if not ((t == 1).any() and (t == 0).any()):
        raise ValueError("the test set has a single class: no ROC curve")
    fpr, tpr, _ = roc_curve(t, s)
    how = {"binary": "binary", "multiclass": "micro-averaged one-vs-rest"}.get(
        kind, "micro-averaged over labels, masked targets left out")
    return fpr, tpr, how


def reliability_bins(kind: str, y_true, y_score, n_bins: int = N_BINS):
    """(mean confidence, observed frequency, count) per equal-width bin, as in the ECE of
    bench.stats.calibration: binary P(positive) against the label, multiclass top-label
    confidence against 'argmax is correct', multilabel every unmasked label pooled.
    Empty bins are NaN; also returns the ECE."""
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=np.float64)
    if kind == "multiclass":
        conf, hit = s.max(axis=1), (s.argmax(axis=1) == y).astype(np.float64)
    else:
        hit, conf = _targets(kind, y, s)
    b = np.clip((conf * n_bins).astype(np.int64), 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(b, weights=conf, minlength=n_bins) / count
        freq = np.bincount(b, weights=hit, minlength=n_bins) / count
    ece = float(np.nansum(count * np.abs(freq - mean_conf)) / max(count.sum(), 1))
    return mean_conf, freq, count, ece
