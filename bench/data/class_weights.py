"""Class weights of the hard-label loss, for imbalanced training splits (--class-weights).

HAM10000's training split is 67% one class: unweighted, the loss is mostly that class's.
`balanced` weighs each class by n / (k * n_class), scikit-learn's "balanced" rule
(`compute_class_weight`), so every class contributes alike; for multilabel tasks each
label's positives are weighed n_negative / n_positive (torch's `pos_weight`). `auto`
does that for single-label tasks whose training split is imbalanced (its largest class at
least `IMBALANCE` times its smallest) and nothing otherwise; `none`, the default, never:
on an imbalanced real-image dataset weighting lowered validation AUC (docs/run.md, the
training rule's "class imbalance"). The distillation term is never
weighted: the soft labels carry the parent's own view of the classes. The weights go into
the task (bench.task_kinds.Task.class_weight), so every trained step (teacher, `student`,
`kd`, fine-tunes, QAT) uses the same ones.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

POLICIES = ("auto", "balanced", "none")
#: `auto` weighs a single-label training split whose largest class has at least this many
#: times the images of its smallest
IMBALANCE = 1.5


def check(policy: str) -> None:
    if policy not in POLICIES:
        raise ValueError(f"--class-weights {policy!r}: expected one of {', '.join(POLICIES)}")


def imbalance(kind: str, labels) -> float:
    """The largest class's images over the smallest's, in the labelled training images
    (single-label tasks; 1.0 for multilabel, where every label is its own balance)."""
    if kind == "multilabel":
        return 1.0
    y = np.asarray(labels)
    counts = np.bincount(y[y >= 0].astype(np.int64))
    counts = counts[counts > 0]
    return float(counts.max() / counts.min()) if len(counts) else 1.0


def weights(policy: str, kind: str, num_outputs: int, labels) -> tuple[float, ...] | None:
    """The loss weights `policy` gives the training labels (None: unweighted): one per class
    (single-label) or one per label's positives (multilabel)."""
    check(policy)
    if policy == "none" or (policy == "auto" and (kind == "multilabel"
                                                  or imbalance(kind, labels) < IMBALANCE)):
        return None
    y = np.asarray(labels, dtype=np.float64)
    if kind == "multilabel":
        known = ~np.isnan(y)
        pos = np.where(known, y, 0).sum(0)
        neg = known.sum(0) - pos
        return tuple(float(n / p) if p > 0 else 1.0 for n, p in zip(neg, pos, strict=True))
    y = y[y >= 0].astype(np.int64)
    present = np.unique(y)
    found = dict(zip(present, compute_class_weight("balanced", classes=present, y=y), strict=True))
    return tuple(float(found.get(c, 1.0)) for c in range(num_outputs))


def describe(policy: str, kind: str, weight: tuple[float, ...] | None, ratio: float) -> str:
    """The manifest's words for what the loss was weighted by."""
    if weight is None:
        why = ("--class-weights none" if policy == "none" else
               "auto weighs single-label tasks only" if kind == "multilabel" else
               f"auto: the largest class {ratio:.2f}x the smallest, under {IMBALANCE}x")
        return f"unweighted ({why})"
    return (f"{policy}: hard-label loss weighted " + ", ".join(f"{w:.3g}" for w in weight)
            + f" (largest class {ratio:.2f}x the smallest)" * (ratio > 1.0))
