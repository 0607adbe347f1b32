"""Operating points and the metrics read at a threshold.

An operating point is a fixed threshold (`0.5`, `threshold=0.3`) or a target chosen on
the validation split and carried unchanged to test (`spec=0.9`: the lowest threshold
whose validation specificity is >= 0.9, i.e. the most sensitive such one; `sens=0.9`:
the highest threshold whose validation sensitivity is >= 0.9). A case is positive when
its score is >= the threshold. Multiclass predictions are the argmax: no threshold.
Multilabel targets chosen on validation give one threshold per label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import confusion_matrix, roc_curve


@dataclass(frozen=True)
class OperatingPoint:
    kind: str  # "threshold", "spec" or "sens"
    value: float

    def __str__(self) -> str:
        return f"{self.kind}={self.value:g}"


def parse_operating_point(text: str | float) -> OperatingPoint:
    """`0.5`, `threshold=0.3`, `spec=0.9` or `sens=0.9` (values in [0, 1])."""
    key, _, val = str(text).strip().rpartition("=")
    key = key.strip() or "threshold"
    try:
        value = float(val)
    except ValueError:
        value = float("nan")
    if key not in ("threshold", "spec", "sens") or not 0.0 <= value <= 1.0:
        raise ValueError(f"bad operating point {text!r}: expected 0.5, threshold=T, spec=S or "
                         "sens=S with a value in [0, 1]")
    return OperatingPoint(key, value)


def threshold_for(point: OperatingPoint, val_true: np.ndarray | None = None,
                  val_score: np.ndarray | None = None) -> float:
    """The threshold of one binary score; spec/sens targets are met on the validation data."""
    if point.kind == "threshold":
        return point.value
    if val_true is None or val_score is None:
        raise ValueError(f"operating point {point} needs validation predictions")
    y = np.asarray(val_true) == 1
    if y.all() or not y.any():
        raise ValueError(f"operating point {point}: the validation split has a single class")
    fpr, tpr, thr = roc_curve(y, val_score, drop_intermediate=False)  # thresholds descending
    if point.kind == "spec":
        ok = np.flatnonzero(1.0 - fpr >= point.value - 1e-12)
        return float(thr[ok[-1]])  # specificity falls as thr falls: lowest one that meets it
    ok = np.flatnonzero(tpr >= point.value - 1e-12)
    return float(thr[ok[0]])  # the highest threshold meeting the sensitivity target


def predict(kind: str, score: np.ndarray, threshold) -> np.ndarray:
    """Predicted labels: score >= threshold (per label if an array), argmax for multiclass."""
    if kind == "multiclass":
        return score.argmax(axis=1)
    return (score >= threshold).astype(np.int64)


@dataclass(frozen=True)
class AtThreshold:
    accuracy: float
    f1: float
    sensitivity: float
    specificity: float


def metrics_at(kind: str, y_true: np.ndarray, pred: np.ndarray, n_outputs: int) -> AtThreshold:
    """Accuracy, macro F1, sensitivity and specificity of predicted labels.

    F1 is sklearn's f1_score(average="macro") for each kind: binary averages the F1 of
    both classes, multiclass of every class, multilabel of every label's positive class.
    Binary: sensitivity/specificity of the positive class. Multiclass: one-vs-rest
    recall and specificity, macro over classes. Multilabel: per label on its unmasked
    entries, macro over labels; accuracy over unmasked (case, label) entries.
    Undefined figures (0/0, e.g. the recall of a class absent from the test set) are
    left out of the macro, never counted as 0.
    """
    if kind == "multilabel":
        known = ~np.isnan(y_true)
        yes, said = (y_true == 1) & known, (pred == 1) & known
        tp = (yes & said).sum(axis=0)
        fn, fp = (yes & ~said).sum(axis=0), (~yes & said & known).sum(axis=0)
        tn = known.sum(axis=0) - tp - fn - fp
        f1 = _ratio(2 * tp, 2 * tp + fp + fn)
        acc = float(_ratio(tp.sum() + tn.sum(), known.sum()))
    else:
        labels = [0, 1] if kind == "binary" else list(range(n_outputs))
        cm = confusion_matrix(np.asarray(y_true).astype(np.int64), pred, labels=labels)
        tp = np.diag(cm)
        fn, fp = cm.sum(axis=1) - tp, cm.sum(axis=0) - tp
        tn = cm.sum() - tp - fn - fp
        f1 = _ratio(2 * tp, 2 * tp + fp + fn)
        acc = float(_ratio(tp.sum(), cm.sum()))
    sens, spec = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    if kind == "binary":
        return AtThreshold(acc, _nanmean(f1), float(sens[1]), float(spec[1]))
    return AtThreshold(acc, _nanmean(f1), _nanmean(sens), _nanmean(spec))


def _ratio(num, den):
    """num / den, NaN where den is 0 (an undefined figure, not a zero)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.full(np.shape(num), np.nan), where=den > 0)


def _nanmean(values) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


def accuracy(task, y_true: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> float:
    """Accuracy at a fixed `threshold` (multiclass: the argmax), as metrics_at counts it;
    for callers with probabilities rather than predicted labels.

    `task` is a bench.task_kinds.Task or its kind; binary `probs` are P(positive) or the
    two-column probabilities. Multilabel: over the known (non-NaN) (case, label) entries.
    """
    kind = getattr(task, "kind", task)
    score = np.asarray(probs, dtype=np.float64)
    if kind == "binary" and score.ndim == 2:
        score = score[:, 1]
    n_outputs = 2 if kind == "binary" else score.shape[1]
    y = np.asarray(y_true, dtype=np.float64)
    return metrics_at(kind, y, predict(kind, score, threshold), n_outputs).accuracy


def flip_rate(kind: str, pred: np.ndarray, teacher_pred: np.ndarray) -> float:
    """Share of test cases whose predicted label differs from the teacher's.

    Multilabel: a case counts once if any of its labels differs, masked targets
    included (a prediction exists whether or not its truth is known).
    """
    differ = pred != teacher_pred
    if kind == "multilabel":
        differ = differ.any(axis=1)
    return float(differ.mean())
