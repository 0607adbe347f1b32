"""`bench compare` on hand-made run pairs: identical runs change nothing, shifted latency is
significant, AUC deltas are scikit-learn's, unpaired test sets and one-sided rows are said."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bench.results.compare import auc_change, compare_runs, latency_change
from bench.results.compare_text import format_comparison
from bench.results.store import RunStore, load_predictions, load_rows
from bench.stats.delong import delong_test
from bench.stats.latency import ratio_interval
from bench.task_kinds import Task
from tests.helpers.runfactory import make_run

BINARY = Task("binary", ("n", "p"))

SMALL = {"models": ("teacher", "kd", "quant.static"), "backends": ("torch", "onnxruntime")}


def test_identical_runs_change_nothing(tmp_path):
    a = make_run(tmp_path / "a", **SMALL)
    b = make_run(tmp_path / "b", **SMALL)
    c = compare_runs(a, b, n_boot=500)
    assert len(c.rows) == 8 and not c.only_a and not c.only_b  # 6 ok, a failed and an n/a row
    measured = [r for r in c.rows if r.latency is not None]
    assert len(measured) == 6
    for r in measured:
        assert not r.significant and r.sizes == []
        assert r.latency.ratio == 1.0 and r.latency.ci_low <= 1 <= r.latency.ci_high
        assert r.auc.delta == 0 and r.auc.p == 1.0 and r.auc.paired
    text = format_comparison(c)
    assert "8 rows in both, 0 with a significant change" in text
    assert "A is failed: RuntimeError: deliberate" in text
    assert "SIGNIFICANT" not in text and "sizes    unchanged" in text


def test_shifted_latency_is_significant(tmp_path):
    a = make_run(tmp_path / "a", **SMALL)
    b = make_run(tmp_path / "b", latency_factor=1.3, **SMALL)
    c = compare_runs(a, b, n_boot=500)
    measured = [r for r in c.rows if r.latency is not None]
    assert len(measured) == 6
    for r in measured:
        assert r.latency.significant and r.latency.ci_low > 1
        assert r.latency.ratio == pytest.approx(1.3, rel=1e-9)
        assert not r.auc.significant  # same predictions
    assert "latency  p50" in format_comparison(c) and "SIGNIFICANT" in format_comparison(c)


def test_latency_change_with_few_processes_resamples_within_them():
    rng = np.random.default_rng(0)
    a = [rng.lognormal(0, 0.1, 300)]
    same = latency_change(a, [rng.lognormal(0, 0.1, 300)], n_boot=1000)
    assert not same.significant and "within-process" in same.note
    slower = latency_change(a, [1.05 * rng.lognormal(0, 0.1, 300)], n_boot=1000)
    assert slower.ratio > 1


def test_latency_change_interval_is_the_shared_ratio_interval():
    rng = np.random.default_rng(1)
    a = [rng.lognormal(0, 0.1, 300) for _ in range(3)]
    b = [1.1 * rng.lognormal(0, 0.1, 300) for _ in range(3)]
    got = latency_change(a, b, n_boot=300, seed=4, floor=0.02)
    assert (got.ci_low, got.ci_high) == ratio_interval(b, a, 0.02, 300, 4, streams=(0, 1))


def test_the_noise_floor_widens_a_latency_change():
    rng = np.random.default_rng(0)
    a = [rng.normal(10.0, 0.2, 2000)]
    b = [rng.normal(10.6, 0.2, 2000)]  # 6% slower: outside a 3% floor, inside a 10% one
    assert latency_change(a, b, n_boot=500).significant
    quiet = latency_change(a, b, n_boot=500, floor=0.03)
    assert quiet.significant and "noise floor 3.0%" in quiet.note
    loud = latency_change(a, b, n_boot=500, floor=0.10)
    assert not loud.significant and loud.ci_low < 1 < loud.ci_high


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel"])
def test_auc_delta_is_sklearns_difference(tmp_path, kind):
    a = make_run(tmp_path / "a", kind=kind, failed=False, **SMALL)
    b = make_run(tmp_path / "b", kind=kind, failed=False, prediction_seed=7, **SMALL)
    c = compare_runs(a, b, n_boot=300)
    for r in c.rows:
        pa, pb = load_predictions(a, *r.key), load_predictions(b, *r.key)
        y = pa["y_true"]
        if kind == "binary":
            want = roc_auc_score(y, pb["y_score"]) - roc_auc_score(y, pa["y_score"])
            assert r.auc.p == pytest.approx(delong_test(y, pb["y_score"], pa["y_score"]).p)
            assert r.auc.p_method == "DeLong"
        elif kind == "multiclass":
            want = (roc_auc_score(y, pb["y_score"], multi_class="ovr")
                    - roc_auc_score(y, pa["y_score"], multi_class="ovr"))
        else:
            want = per_label_macro(y, pb["y_score"]) - per_label_macro(y, pa["y_score"])
        assert r.auc.delta == pytest.approx(want, abs=1e-12)
        assert r.auc.paired
        if r.key[0] != "teacher":  # the teacher's scores do not change with the seed
            assert r.auc.ci_low < r.auc.delta < r.auc.ci_high


def per_label_macro(y, s):
    """Mean over labels of sklearn's AUC on each label's known (non-NaN) targets."""
    return np.mean([roc_auc_score(y[~np.isnan(y[:, j]), j], s[~np.isnan(y[:, j]), j])
                    for j in range(y.shape[1])])


def test_auc_change_needs_the_same_test_set():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100)
    s = rng.random(100)
    other = y.copy()
    other[0] = 1 - other[0]
    got = auc_change({"y_true": y, "y_score": s, "task": BINARY},
                     {"y_true": other, "y_score": s, "task": BINARY})
    assert not got.paired and got.note == "not paired: different test sets"
    assert got.delta == pytest.approx(roc_auc_score(other, s) - roc_auc_score(y, s))
    assert got.significant is None and np.isnan(got.p)


def test_auc_change_takes_the_task_from_the_predictions():
    """Two-column scores of a binary task and of a two-class multiclass task look alike:
    the stored task decides, and runs of different tasks are not paired."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 120)
    p = np.stack([1 - y, y], axis=1) * 0.3 + rng.random((120, 2))
    p /= p.sum(axis=1, keepdims=True)
    q = rng.dirichlet(np.ones(2), 120)
    multi = Task("multiclass", ("n", "p"))
    got = auc_change({"y_true": y, "y_score": p, "task": multi},
                     {"y_true": y, "y_score": q, "task": multi}, n_boot=100)
    want = roc_auc_score(y, q[:, 1]) - roc_auc_score(y, p[:, 1])  # both columns: the same AUC
    assert got.paired and got.p_method == "paired bootstrap z"
    assert got.delta == pytest.approx(want, abs=1e-12)
    mixed = auc_change({"y_true": y, "y_score": p, "task": multi},
                       {"y_true": y, "y_score": p[:, 1], "task": BINARY}, n_boot=100)
    assert not mixed.paired and mixed.note == "not paired: different tasks"


def test_rows_in_one_run_failed_rows_and_size_changes(tmp_path):
    a = make_run(tmp_path / "a", models=("teacher", "kd"), backends=("torch",), failed=False)
    b = make_run(tmp_path / "b", models=("teacher", "quant.static"), backends=("torch",),
                 failed=False)
    store = RunStore(b)
    store.rows = load_rows(b)
    teacher = next(r for r in store.rows if r.model == "teacher")
    store.add(teacher.with_(status="failed", error="parity: broken export", file_mib=30.0))
    c = compare_runs(a, b, n_boot=100)
    assert c.only_a == [("kd", "torch", "fp32")] and c.only_b == [("quant.static", "torch", "int8")]
    (row,) = c.rows
    assert row.latency is None and row.sizes == [("file_mib", 27.0, 30.0)]
    text = format_comparison(c)
    assert "status   ok -> failed" in text and "B is failed: parity: broken export" in text
    assert "size     file_mib 27 -> 30 (+11.1%)" in text
    assert "only in A: kd / torch / fp32" in text


def test_compare_command(tmp_path, capsys):
    from bench.cli import main

    a = make_run(tmp_path / "a", models=("teacher",), backends=("torch",), failed=False)
    assert main(["compare", str(a), str(a), "--bootstrap", "100"]) == 0
    out = capsys.readouterr().out
    assert "teacher / torch / fp32" in out and "1 rows in both" in out
    assert main(["compare", str(a), str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
