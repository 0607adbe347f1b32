import numpy as np
from sklearn.metrics import roc_auc_score

from bench import metrics
from bench.tasks import Task


def test_binary_auc_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = rng.random(200) + 0.3 * y
    auc, reasons = metrics.auc_roc(Task("binary", ("n", "p")), y, s)
    assert auc == roc_auc_score(y, s) and reasons == []


def test_multiclass_macro_ovr():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    p = rng.dirichlet(np.ones(3), 300)
    auc, _ = metrics.auc_roc(Task("multiclass", ("a", "b", "c")), y, p)
    assert auc == roc_auc_score(y, p, multi_class="ovr", average="macro")


def test_single_class_label_is_nan_with_reason_not_half():
    task = Task("multilabel", ("a", "b"))
    y = np.array([[1, 0], [0, 0], [1, 0], [0, 0]], dtype=np.float32)
    s = np.array([[0.9, 0.1], [0.2, 0.3], [0.8, 0.2], [0.1, 0.4]])
    per = metrics.per_label_auc(task, y, s)
    assert per["a"] == 1.0 and np.isnan(per["b"])
    auc, reasons = metrics.auc_roc(task, y, s)
    assert auc == 1.0 and "b: single class" in reasons[0]
    auc, reasons = metrics.auc_roc(Task("binary", ("n", "p")), np.zeros(4), np.ones(4))
    assert np.isnan(auc) and reasons


def test_multilabel_ignores_nan_targets():
    task = Task("multilabel", ("a",))
    y = np.array([[1], [0], [np.nan], [1]], dtype=np.float32)
    s = np.array([[0.9], [0.1], [0.99], [0.8]])
    assert metrics.per_label_auc(task, y, s)["a"] == 1.0
    assert metrics.accuracy(task, y, s) == 1.0


def test_multiclass_absent_class_is_nan_and_left_out_of_the_macro():
    task = Task("multiclass", ("a", "b", "c"))
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 100)  # c never occurs
    p = rng.dirichlet(np.ones(3), 100)
    per = metrics.per_class_auc(task, y, p)
    assert np.isnan(per["c"]) and per["a"] == roc_auc_score(y == 0, p[:, 0])
    auc, reasons = metrics.auc_roc(task, y, p)
    assert auc == np.mean([per["a"], per["b"]]) and reasons == ["classes absent from test: c"]
