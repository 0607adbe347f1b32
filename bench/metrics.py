"""Quality metrics from saved predictions, computed with scikit-learn.

Binary: AUC of P(positive). Multiclass: macro one-vs-rest AUC. Multilabel: per-label
AUC, macro over the labels that have both classes in the test set; a label with one
class gets NaN (and a reason), never 0.5. NaN targets (ignored labels) are masked.
Confidence intervals, the comparison with the teacher and the metrics at a threshold
are in bench.stats.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, roc_auc_score

from bench.tasks import Task


def auc_roc(task: Task, y_true: np.ndarray, y_score: np.ndarray) -> tuple[float, list[str]]:
    """(AUC, reasons for anything left out)."""
    return macro_auc(task, y_true, per_class_auc(task, y_true, y_score))


def per_class_auc(task: Task, y_true: np.ndarray, y_score: np.ndarray) -> dict[str, float]:
    """AUC per label (multilabel), per class one-vs-rest (multiclass), or of the positive
    class (binary); NaN where the test set has a single class for it."""
    if task.kind == "multilabel":
        return per_label_auc(task, y_true, y_score)
    if task.kind == "binary":
        ok = len(np.unique(y_true)) == 2
        return {task.class_names[1]: float(roc_auc_score(y_true, y_score)) if ok else float("nan")}
    return {name: float(roc_auc_score(y_true == k, y_score[:, k])) if 0 < (y_true == k).sum() < len(y_true)
            else float("nan") for k, name in enumerate(task.class_names)}


def macro_auc(task: Task, y_true: np.ndarray, per: dict[str, float]) -> tuple[float, list[str]]:
    """Mean of the defined per-class AUCs, with the reasons for those left out."""
    valid = [v for v in per.values() if not np.isnan(v)]
    if task.kind == "binary":
        return (valid[0], []) if valid else (float("nan"), ["test set has a single class"])
    if task.kind == "multiclass":
        present = np.unique(y_true)
        if len(present) < 2:
            return float("nan"), ["test set has a single class"]
        reasons = []
        if len(present) < task.num_outputs:
            missing = sorted(set(range(task.num_outputs)) - set(present.tolist()))
            reasons.append("classes absent from test: " + ", ".join(task.class_names[i] for i in missing))
        return float(np.mean(valid)), reasons
    reasons = [f"{name}: single class in test, left out of the macro AUC"
               for name, v in per.items() if np.isnan(v)]
    return (float(np.mean(valid)) if valid else float("nan")), reasons


def per_label_auc(task: Task, y_true: np.ndarray, y_score: np.ndarray) -> dict[str, float]:
    out = {}
    for j, name in enumerate(task.class_names):
        mask = ~np.isnan(y_true[:, j])
        t = y_true[mask, j]
        out[name] = float(roc_auc_score(t, y_score[mask, j])) if len(np.unique(t)) == 2 else float("nan")
    return out


def accuracy(task: Task, y_true: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> float:
    pred = task.predicted_labels(probs, threshold)
    if task.kind == "multilabel":
        mask = ~np.isnan(y_true)
        return float((pred[mask] == y_true[mask]).mean())
    return float(accuracy_score(y_true, pred))
