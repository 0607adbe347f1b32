"""A row's quality columns from its saved test predictions, and its comparison with the teacher.

Choices (each one the simplest that is honest about uncertainty):
- AUC: bench.stats.auc, the bench's one AUC (binary; macro one-vs-rest; per-label and
  macro over labels with both classes in the test set), a rank-based weighted AUC that
  equals sklearn's roc_auc_score within 1e-12 (tested); the bootstrap resamples use the
  same function with case counts as weights.
- Intervals: percentile intervals of `n_boot` seeded resamples. Binary and multiclass
  resample within each true class, so every class keeps its count; multilabel resamples
  cases. With patient ids, patients are resampled (binary: stratified by 'has a positive
  case'; otherwise unstratified). A resample where a class or label of the test set
  goes missing is left out whole (its macro would average other labels), and the
  count left out is reported.
- Comparison: delta_auc = AUC(model) - AUC(teacher) on the same resamples (paired).
  delong_p: DeLong's test for binary tasks without patient ids. For multiclass and
  multilabel the macro AUC mixes one-vs-rest AUCs that share cases, and with patient
  ids cases are not independent, so delong_p is then the paired-bootstrap z-test of
  pROC's roc.test(method="bootstrap"): z = delta / sd(bootstrap deltas), two-sided
  normal p (`p_method` says which). Per-class (multiclass) or per-label (multilabel)
  DeLong p-values come alongside in `per_label_delong_p`.
- verdict against the non-inferiority margin: `non-inferior` if the delta's interval
  lies above -margin, `inferior` if it lies below, otherwise `inconclusive`.
- flip_rate: share of test cases whose predicted label differs from the teacher's;
  multilabel: cases where any label differs (what a reader of the output would notice),
  masked targets included. The teacher is read at its own validation-chosen threshold
  when teacher_val_probs is given, else at the model's.
"""

from __future__ import annotations

import numpy as np

from bench.stats.auc import (
    column_aucs,
    has_both_classes,
    macro_auc,
    one_vs_rest,
    per_class_auc,
    weighted_auc,
)
from bench.stats.bootstrap import percentile_interval, resample_counts
from bench.stats.calibration import brier, ece
from bench.stats.delong import delong_test, wald
from bench.stats.threshold import (
    flip_rate,
    metrics_at,
    parse_operating_point,
    predict,
    threshold_for,
)
from bench.task_kinds import Task

NAN = float("nan")
COLUMNS = ("auc_roc", "auc_ci_low", "auc_ci_high", "delta_auc", "delta_auc_ci_low",
           "delta_auc_ci_high", "delong_p", "verdict", "accuracy", "f1", "sensitivity",
           "specificity", "threshold", "ece", "brier", "flip_rate")


def quality_row(task: Task, y_true, probs, teacher_probs=None, val_true=None, val_probs=None,
                groups=None, margin: float = 0.02, operating_point: str | float = "0.5",
                n_boot: int = 2000, seed: int = 0, teacher_val_probs=None) -> dict:
    """The quality columns of a row (COLUMNS), plus `per_label_auc`, `per_label_delong_p`,
    `label_thresholds`, `p_method` and `reasons` (why a figure is NaN, None or partial).

    probs / teacher_probs / val_probs: (N, K) probabilities, or P(positive) 1-D for binary.
    groups: a patient id per test case, for a patient-level bootstrap.
    teacher_val_probs: lets the teacher use its own validation-chosen threshold in
    flip_rate; without it the teacher is read at the model's threshold.
    Raises ValueError on a bad operating point, or spec=/sens= without validation data.
    """
    kind = task.kind
    point = parse_operating_point(operating_point)  # fail before any work
    y = _labels(kind, y_true)
    score = _score(kind, probs)
    t_score = None if teacher_probs is None else _score(kind, teacher_probs)
    per = per_class_auc(task, y, score)
    auc, reasons = macro_auc(task, y, per)
    row = {"auc_roc": auc, "per_label_auc": per}

    targets, s_cols = one_vs_rest(task, y, score)
    t_cols = None if t_score is None else one_vs_rest(task, y, t_score)[1]
    used = [j for j in range(targets.shape[1]) if has_both_classes(targets[:, j])]
    boot = None
    if used and n_boot > 0:
        strata = y if kind == "binary" or (kind == "multiclass" and groups is None) else None
        w = resample_counts(n_boot, seed, len(y), strata=strata, groups=groups)
        boot = _boot_macro(targets, s_cols, t_cols, used, w)  # (1 or 2, B)
        skipped = int(np.isnan(boot[0]).sum())
        if skipped:
            reasons.append(f"bootstrap: {skipped} of {n_boot} resamples left out "
                           "(a class or label of the test set was absent from them)")
    elif n_boot <= 0:
        reasons.append("no bootstrap (n_boot = 0): no intervals")
    row["auc_ci_low"], row["auc_ci_high"] = (percentile_interval(boot[0]) if boot is not None
                                             else (NAN, NAN))
    row.update(_comparison(task, y, auc, targets, s_cols, t_cols, used, boot, groups, margin,
                           reasons))
    row.update(_at_operating_point(task, y, score, t_score, val_true, val_probs,
                                   teacher_val_probs, point, reasons))
    row["reasons"] = reasons
    return row


def verdict(ci_low: float, ci_high: float, margin: float) -> str | None:
    """Non-inferiority of delta_auc against -margin; None when the interval is unknown."""
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return None
    if ci_low > -margin:
        return "non-inferior"
    if ci_high < -margin:
        return "inferior"
    return "inconclusive"


def _boot_macro(targets, s_cols, t_cols, used, w) -> np.ndarray:
    """Macro AUC per resample, (model[, teacher]) x B; NaN where a used column lost a class."""
    per = [weighted_auc(np.vstack([s_cols[:, j]] + ([] if t_cols is None else [t_cols[:, j]])),
                        targets[:, j], w) for j in used]
    return np.mean(per, axis=0)


def _comparison(task, y, auc, targets, s_cols, t_cols, used, boot, groups, margin,
                reasons) -> dict:
    out = {"delta_auc": NAN, "delta_auc_ci_low": NAN, "delta_auc_ci_high": NAN,
           "delong_p": NAN, "verdict": None, "per_label_delong_p": {}, "p_method": ""}
    if t_cols is None:
        reasons.append("no teacher predictions: no comparison")
        return out
    t_auc, _ = macro_auc(task, y, _named(task, column_aucs(targets, t_cols)))
    out["delta_auc"] = delta = auc - t_auc
    deltas = None if boot is None else boot[0] - boot[1]
    if deltas is not None:
        out["delta_auc_ci_low"], out["delta_auc_ci_high"] = percentile_interval(deltas)
    tests = {task.class_names[j]: delong_test(*_kept(targets[:, j], s_cols[:, j], t_cols[:, j]))
             for j in used}
    if task.kind == "binary" and groups is None:
        out["p_method"] = "delong"
        out["delong_p"] = next(iter(tests.values())).p if tests else NAN
    else:
        out["p_method"] = "paired bootstrap z"
        finite = np.array([]) if deltas is None else deltas[np.isfinite(deltas)]
        out["delong_p"] = wald(delta, float(finite.std(ddof=1)) if finite.size > 1 else NAN)[1]
        if task.kind != "binary":
            out["per_label_delong_p"] = {name: t.p for name, t in tests.items()}
    if np.isnan(out["delong_p"]) and np.isfinite(delta):
        reasons.append("delong_p: no test possible (zero variance with a nonzero difference, "
                       "or no bootstrap)")
    out["verdict"] = verdict(out["delta_auc_ci_low"], out["delta_auc_ci_high"], margin)
    if out["verdict"] is None:
        reasons.append("verdict: no interval for delta_auc")
    return out


def _at_operating_point(task, y, score, t_score, val_true, val_probs, teacher_val_probs,
                        point, reasons) -> dict:
    kind = task.kind
    out = {"threshold": NAN, "label_thresholds": {}}
    if kind == "multiclass":
        thr = t_thr = None
        reasons.append("threshold: multiclass predictions are the argmax, no threshold")
    else:
        val_y = None if val_true is None else _labels(kind, val_true)
        thr = t_thr = _thresholds(task, point, val_y, val_probs, reasons)
        if point.kind != "threshold" and t_score is not None:
            if teacher_val_probs is not None:
                t_thr = _thresholds(task, point, val_y, teacher_val_probs, [])
            else:
                reasons.append("flip_rate: teacher read at the model's threshold "
                               "(no teacher validation predictions)")
        if np.ndim(thr) == 0:
            out["threshold"] = float(thr)
        else:
            out["label_thresholds"] = dict(zip(task.class_names, map(float, thr), strict=True))
            reasons.append(f"threshold: one per label ({point} on validation), "
                           "see label_thresholds")
    pred = predict(kind, score, thr)
    at = metrics_at(kind, y, pred, task.num_outputs)
    out.update(accuracy=at.accuracy, f1=at.f1, sensitivity=at.sensitivity,
               specificity=at.specificity, ece=ece(kind, y, score), brier=brier(kind, y, score))
    for name in ("accuracy", "f1", "sensitivity", "specificity"):
        if np.isnan(out[name]):
            reasons.append(f"{name}: undefined (nothing to count)")
    out["flip_rate"] = (NAN if t_score is None
                        else flip_rate(kind, pred, predict(kind, t_score, t_thr)))
    return out


def _thresholds(task, point, val_y, val_probs, reasons):
    """One threshold (binary, or a fixed one) or one per label (multilabel, chosen on val)."""
    kind = task.kind
    val_s = None if val_probs is None else _score(kind, val_probs)
    if kind == "binary" or point.kind == "threshold":
        return threshold_for(point, val_y, val_s)
    if val_y is None or val_s is None:
        raise ValueError(f"operating point {point} needs validation predictions")
    out = []
    for j, name in enumerate(task.class_names):
        keep = ~np.isnan(val_y[:, j])
        if has_both_classes(val_y[keep, j]):
            out.append(threshold_for(point, val_y[keep, j], val_s[keep, j]))
        else:
            out.append(np.inf)
            reasons.append(f"threshold {name}: single class in validation, never predicted positive")
    return np.array(out)


def _kept(target, a, b):
    keep = ~np.isnan(target)
    return target[keep], a[keep], b[keep]


def _named(task, aucs) -> dict[str, float]:
    """Column AUCs keyed as per_class_auc keys them (binary: by the positive class)."""
    names = task.class_names[1:] if task.kind == "binary" else task.class_names
    return dict(zip(names, map(float, aucs), strict=True))


def _labels(kind: str, y) -> np.ndarray:
    y = np.asarray(y)
    return y.astype(np.float64) if kind == "multilabel" else y.astype(np.int64)


def _score(kind: str, probs) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    return p[:, 1] if kind == "binary" and p.ndim == 2 else p
