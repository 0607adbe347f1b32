"""The bench's one AUC (bench.stats.auc) against scikit-learn's roc_auc_score, computed
independently here; accuracy at a threshold (bench.stats.threshold); and the
scikit-learn the multiclass Brier score needs (bench.stats.calibration)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bench.stats.auc import auc_roc, macro_auc, per_class_auc
from bench.stats.threshold import accuracy
from bench.task_kinds import Task

EXACT = 1e-12  # a rank statistic against sklearn's trapezoid: equal up to rounding


def test_binary_auc_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = rng.random(200) + 0.3 * y
    auc, reasons = auc_roc(Task("binary", ("n", "p")), y, s)
    assert auc == pytest.approx(roc_auc_score(y, s), abs=EXACT) and reasons == []
    assert auc_roc("binary", y, s)[0] == auc  # the kind alone will do
    probs = np.stack([1 - s, s], axis=1)  # or the two-column probabilities
    assert auc_roc("binary", y, probs)[0] == auc


def test_binary_auc_with_ties_matches_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300) + 0.3 * y, 1)  # many ties
    assert auc_roc("binary", y, s)[0] == pytest.approx(roc_auc_score(y, s), abs=EXACT)


def test_multiclass_macro_ovr():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    p = rng.dirichlet(np.ones(3), 300)
    auc, _ = auc_roc(Task("multiclass", ("a", "b", "c")), y, p)
    assert auc == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"), abs=EXACT)


def test_single_class_label_is_nan_with_reason_not_half():
    task = Task("multilabel", ("a", "b"))
    y = np.array([[1, 0], [0, 0], [1, 0], [0, 0]], dtype=np.float32)
    s = np.array([[0.9, 0.1], [0.2, 0.3], [0.8, 0.2], [0.1, 0.4]])
    per = per_class_auc(task, y, s)
    assert per["a"] == 1.0 and np.isnan(per["b"])
    auc, reasons = auc_roc(task, y, s)
    assert auc == 1.0 and "b: single class" in reasons[0]
    auc, reasons = auc_roc(Task("binary", ("n", "p")), np.zeros(4), np.ones(4))
    assert np.isnan(auc) and reasons


def test_multilabel_ignores_nan_targets():
    task = Task("multilabel", ("a",))
    y = np.array([[1], [0], [np.nan], [1]], dtype=np.float32)
    s = np.array([[0.9], [0.1], [0.99], [0.8]])
    assert per_class_auc(task, y, s)["a"] == 1.0
    assert accuracy(task, y, s) == 1.0


def test_multilabel_per_label_matches_sklearn_on_the_known_targets():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, (150, 4)).astype(np.float64)
    s = np.clip(0.3 * y + rng.random((150, 4)), 0, 1)
    y[rng.random(y.shape) < 0.2] = np.nan
    per = per_class_auc(Task("multilabel", ("a", "b", "c", "d")), y, s)
    for j, name in enumerate("abcd"):
        known = ~np.isnan(y[:, j])
        assert per[name] == pytest.approx(roc_auc_score(y[known, j], s[known, j]), abs=EXACT)


def test_multiclass_absent_class_is_nan_and_left_out_of_the_macro():
    task = Task("multiclass", ("a", "b", "c"))
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 100)  # c never occurs
    p = rng.dirichlet(np.ones(3), 100)
    per = per_class_auc(task, y, p)
    assert np.isnan(per["c"])
    assert per["a"] == pytest.approx(roc_auc_score(y == 0, p[:, 0]), abs=EXACT)
    auc, reasons = auc_roc(task, y, p)
    assert auc == np.mean([per["a"], per["b"]]) and reasons == ["classes absent from test: c"]
    assert macro_auc(task, y, per) == (auc, reasons)


def test_the_kind_is_given_never_guessed():
    """Two-column binary probabilities and a two-class multiclass task look alike: the
    caller's task decides, and an unknown kind is refused."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 50)
    p = rng.dirichlet(np.ones(2), 50)
    binary = per_class_auc(Task("binary", ("n", "p")), y, p)
    multi = per_class_auc(Task("multiclass", ("n", "p")), y, p)
    assert list(binary) == ["p"] and list(multi) == ["n", "p"]
    with pytest.raises(ValueError, match="unknown task kind"):
        auc_roc("regression", y, p)


def test_accuracy_binary_and_multiclass():
    y = np.array([0, 1, 1, 0])
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.4, 0.6]])
    assert accuracy(Task("binary", ("n", "p")), y, probs) == 0.5
    assert accuracy("binary", y, probs[:, 1], threshold=0.35) == 0.75
    assert accuracy(Task("multiclass", ("a", "b")), y, probs) == 0.5


def test_the_scikit_learn_floor_covers_the_multiclass_brier_call():
    """bench.stats.calibration.brier's multiclass call (`labels=`, (N, K) probabilities)
    is scikit-learn 1.7's (1.6 takes P(positive) only): the floor pyproject.toml declares
    must be at least that, and the call gives the mean over cases of the sum over
    classes."""
    import re
    import tomllib
    from pathlib import Path

    from bench.stats.calibration import brier

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    (floor,) = [re.fullmatch(r"scikit-learn>=(\d+)\.(\d+).*", d)
                for d in project["project"]["dependencies"] if d.startswith("scikit-learn")]
    assert floor is not None and (int(floor[1]), int(floor[2])) >= (1, 7), floor
    y = np.array([0, 2, 1, 2])
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3], [0.5, 0.0, 0.5]])
    expected = np.mean(((p - np.eye(3)[y]) ** 2).sum(axis=1))
    assert brier("multiclass", y, p) == pytest.approx(expected)
    assert brier("multiclass", np.array([0, 0]), p[:2]) == pytest.approx(  # a class absent
        np.mean(((p[:2] - np.eye(3)[[0, 0]]) ** 2).sum(axis=1)))
