"""AUC, the one implementation: per class, macro, and for many bootstrap resamples at once.

Every AUC in the bench (a row's auc_roc, its bootstrap, `bench compare`) goes through
`weighted_auc` on the columns `one_vs_rest` makes, so the figures cannot drift apart.
The task kind is always given by the caller (a bench.task_kinds.Task or its kind), never
guessed from array shapes: a binary task with two score columns and a multiclass task
look alike.

A bootstrap resample is a vector of counts (how often each case was drawn), so the
AUC of every resample is the weighted Mann-Whitney U of the original cases. The
negatives are sorted by score once; per resample only a cumulative sum of their
counts and a lookup at each positive's place among them remain, in integers (exact;
int32 counts halve the memory traffic, the sums are taken in int64).
Ties between a positive and a negative count one half, as in roc_auc_score, which it
equals within 1e-12 (tests/stats/test_metrics.py, tests/stats/test_stats.py).
"""

from __future__ import annotations

import numpy as np

NAN = float("nan")


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


def kind_of(task) -> str:
    """The kind of a bench.task_kinds.Task, or the kind itself when given as a string."""
    kind = getattr(task, "kind", task)
    if kind not in ("binary", "multiclass", "multilabel"):
        raise ValueError(f"unknown task kind {kind!r}")
    return kind


def one_vs_rest(task, y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(targets, scores), both (N, C): one column per AUC of the task, NaN targets ignored.

    Binary: the one column of P(positive) (given as such, or as the two-column
    probabilities). Multiclass: each class against the rest. Multilabel: each label as it is.
    """
    kind = kind_of(task)
    score = np.asarray(score, dtype=np.float64)
    if kind == "binary":
        score = score[:, 1] if score.ndim == 2 else score
        return np.asarray(y_true, dtype=np.float64)[:, None], score[:, None]
    if kind == "multiclass":
        y = np.asarray(y_true)
        return (y[:, None] == np.arange(score.shape[1])).astype(np.float64), score
    return np.asarray(y_true, dtype=np.float64), score


def has_both_classes(target: np.ndarray) -> bool:
    return bool((target == 1).any() and (target == 0).any())


def column_aucs(targets: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The AUC of each one_vs_rest column; NaN where a column has a single class."""
    return np.array([weighted_auc(cols[:, j], targets[:, j]) if has_both_classes(targets[:, j])
                     else NAN for j in range(targets.shape[1])])


def class_names(task, n_columns: int) -> tuple[str, ...]:
    """A Task's class names; for a bare kind, placeholder names (binary: the positive)."""
    names = getattr(task, "class_names", None)
    if names is not None:
        return tuple(names)
    if kind_of(task) == "binary":
        return ("negative", "positive")
    return tuple(f"class {j}" for j in range(n_columns))


def per_class_auc(task, y_true: np.ndarray, y_score: np.ndarray) -> dict[str, float]:
    """AUC per label (multilabel, NaN targets ignored), per class one-vs-rest (multiclass),
    or of the positive class (binary), keyed by class name; NaN where the test set has a
    single class for it (never 0.5)."""
    targets, cols = one_vs_rest(task, y_true, y_score)
    aucs = column_aucs(targets, cols)
    names = class_names(task, cols.shape[1])
    if kind_of(task) == "binary":
        return {names[1]: float(aucs[0])}
    return {name: float(a) for name, a in zip(names, aucs, strict=True)}


def macro_auc(task, y_true: np.ndarray, per: dict[str, float]) -> tuple[float, list[str]]:
    """Mean of the defined per-class AUCs (`per`, from per_class_auc), with the reasons for
    those left out: a reader must see why a macro averages fewer classes than the task has."""
    kind = kind_of(task)
    valid = [v for v in per.values() if not np.isnan(v)]
    if kind == "binary":
        return (valid[0], []) if valid else (NAN, ["test set has a single class"])
    if kind == "multiclass":
        present = np.unique(np.asarray(y_true))
        if len(present) < 2 or not valid:
            return NAN, ["test set has a single class"]
        names = list(per)
        missing = sorted(set(range(len(names))) - set(present.tolist()))
        reasons = (["classes absent from test: " + ", ".join(names[i] for i in missing)]
                   if missing else [])
        return float(np.mean(valid)), reasons
    reasons = [f"{name}: single class in test, left out of the macro AUC"
               for name, v in per.items() if np.isnan(v)]
    return (float(np.mean(valid)) if valid else NAN), reasons


def auc_roc(task, y_true: np.ndarray, y_score: np.ndarray) -> tuple[float, list[str]]:
    """A row's auc_roc: binary AUC, or the macro over classes / labels, with its reasons."""
    return macro_auc(task, y_true, per_class_auc(task, y_true, y_score))
