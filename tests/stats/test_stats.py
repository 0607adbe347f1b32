"""bench.stats against scikit-learn, numpy, naive reimplementations and hand-checked cases."""

import math

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    recall_score,
    roc_auc_score,
)

from bench.stats.auc import weighted_auc
from bench.stats.bootstrap import percentile_interval, resample_counts
from bench.stats.calibration import binned_ece, brier, ece
from bench.stats.delong import delong_covariance, delong_test
from bench.stats.quality import COLUMNS, quality_row, verdict
from bench.stats.threshold import (
    flip_rate,
    metrics_at,
    parse_operating_point,
    predict,
    threshold_for,
)
from bench.task_kinds import Task

BINARY = Task("binary", ("neg", "pos"))


def binary_case(n, seed=0, signal=0.6, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + signal * (2 * y - 1))))
    return y, (np.round(s, 1) if ties else s)


def multilabel_case(n, labels=5, seed=0, missing=0.1):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < 0.3).astype(float)
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    y[rng.random((n, labels)) < missing] = np.nan
    return y, s


# ---- fast AUC ---------------------------------------------------------------------------

@pytest.mark.parametrize("ties", [False, True])
def test_weighted_auc_equals_sklearn_on_the_data_and_on_each_resample(ties):
    y, s = binary_case(300, ties=ties)
    assert abs(weighted_auc(s, y) - roc_auc_score(y, s)) < 1e-12
    w = resample_counts(50, 1, len(y), strata=y)
    boot = weighted_auc(s, y, w)
    for b in range(50):
        idx = np.repeat(np.arange(len(y)), w[b])  # the resample, written out
        assert abs(boot[b] - roc_auc_score(y[idx], s[idx])) < 1e-12


def test_weighted_auc_ignores_nan_targets_and_flags_single_class_resamples():
    y, s = binary_case(100)
    t = y.astype(float)
    t[::3] = np.nan
    keep = ~np.isnan(t)
    assert abs(weighted_auc(s, t) - roc_auc_score(t[keep], s[keep])) < 1e-12
    w = np.ones((2, 100), dtype=np.int32)
    w[1, y == 1] = 0  # a resample without positives
    got = weighted_auc(np.vstack([s, -s]), y, w)
    assert got.shape == (2, 2) and np.isnan(got[:, 1]).all()
    assert abs(got[0, 0] + got[1, 0] - 1) < 1e-12


# ---- bootstrap --------------------------------------------------------------------------

def test_stratified_resamples_keep_each_class_count():
    y, _ = binary_case(200)
    w = resample_counts(100, 0, 200, strata=y)
    assert (w[:, y == 1].sum(axis=1) == (y == 1).sum()).all()
    assert (w[:, y == 0].sum(axis=1) == (y == 0).sum()).all()


def test_patient_bootstrap_resamples_whole_patients():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 40, 200)
    y = rng.integers(0, 2, 200)
    w = resample_counts(200, 0, 200, strata=y, groups=groups)
    for g in np.unique(groups):
        cases = w[:, groups == g]
        assert (cases == cases[:, :1]).all()  # a patient's cases come (or not) together
    ids = np.unique(groups)
    drawn = np.stack([w[:, groups == g][:, 0] for g in ids], axis=1)
    assert (drawn.sum(axis=1) == len(ids)).all()  # as many patients as there are
    has_pos = np.array([(y[groups == g] == 1).any() for g in ids])
    assert (drawn[:, has_pos].sum(axis=1) == has_pos.sum()).all()  # stratified by patient


def test_bootstrap_interval_contains_estimate_and_narrows_with_n():
    widths = []
    for n in (200, 2000):
        y, s = binary_case(n, seed=3)
        row = quality_row(BINARY, y, s, n_boot=500)
        assert row["auc_ci_low"] < row["auc_roc"] < row["auc_ci_high"]
        widths.append(row["auc_ci_high"] - row["auc_ci_low"])
    assert widths[1] < 0.5 * widths[0]  # about 1/sqrt(10)


def test_percentile_interval_skips_nan():
    assert percentile_interval(np.r_[np.arange(101.0), np.nan]) == pytest.approx((2.5, 97.5))
    assert all(math.isnan(v) for v in percentile_interval(np.full(3, np.nan)))


# ---- DeLong -----------------------------------------------------------------------------

def naive_delong(y, scores):
    """DeLong et al. (1988) structural components with O(m n) loops: (aucs, covariance)."""
    x = [[s[i] for i in range(len(y)) if y[i] == 1] for s in scores]
    z = [[s[i] for i in range(len(y)) if y[i] == 0] for s in scores]
    m, n = len(x[0]), len(z[0])

    def psi(a, b):
        return 1.0 if a > b else 0.5 if a == b else 0.0

    v10 = [[sum(psi(xr[i], zr[j]) for j in range(n)) / n for i in range(m)] for xr, zr in zip(x, z, strict=True)]
    v01 = [[sum(psi(xr[i], zr[j]) for i in range(m)) / m for j in range(n)] for xr, zr in zip(x, z, strict=True)]
    aucs = [sum(v) / m for v in v10]
    k = len(scores)
    cov = [[0.0] * k for _ in range(k)]
    for r in range(k):
        for s in range(k):
            s10 = sum((v10[r][i] - aucs[r]) * (v10[s][i] - aucs[s]) for i in range(m)) / (m - 1)
            s01 = sum((v01[r][j] - aucs[r]) * (v01[s][j] - aucs[s]) for j in range(n)) / (n - 1)
            cov[r][s] = s10 / m + s01 / n
    return aucs, cov


@pytest.mark.parametrize("ties", [False, True])
def test_delong_variance_matches_the_naive_structural_components(ties):
    y, a = binary_case(70, seed=4, ties=ties)
    b = np.round(a + np.random.default_rng(5).normal(0, 0.2, 70), 1 if ties else 8)
    aucs, cov = delong_covariance(np.vstack([a, b]), y == 1)
    naive_aucs, naive_cov = naive_delong(y, [a, b])
    assert np.allclose(aucs, naive_aucs, atol=1e-12, rtol=0)
    assert np.allclose(cov, naive_cov, atol=1e-12, rtol=0)
    assert abs(aucs[0] - roc_auc_score(y, a)) < 1e-12
    single, var = delong_covariance(a, y == 1)  # the variance of one AUC
    assert abs(var[0, 0] - naive_cov[0][0]) < 1e-12


def test_delong_z_and_p_match_a_naive_computation():
    y, a = binary_case(60, seed=6)
    b = a + np.random.default_rng(7).normal(0, 0.3, 60)
    aucs, cov = naive_delong(y, [a, b])
    z = (aucs[0] - aucs[1]) / math.sqrt(cov[0][0] + cov[1][1] - 2 * cov[0][1])
    got = delong_test(y, a, b)
    assert abs(got.z - z) < 1e-9
    assert abs(got.p - math.erfc(abs(z) / math.sqrt(2))) < 1e-9  # two-sided normal p


def test_delong_sanity_identical_and_very_different():
    y, a = binary_case(400, seed=8, signal=1.5)
    same = delong_test(y, a, a.copy())
    assert same.delta == 0 and same.p == 1.0
    noise = np.random.default_rng(9).random(400)
    assert delong_test(y, a, noise).p < 1e-10


def test_delong_se_agrees_with_the_paired_bootstrap():
    y, a = binary_case(600, seed=10)
    b = a + np.random.default_rng(11).normal(0, 0.3, 600)
    w = resample_counts(2000, 0, 600, strata=y)
    boot = weighted_auc(np.vstack([a, b]), y, w)
    ratio = delong_test(y, a, b).se / np.std(boot[0] - boot[1], ddof=1)
    assert 0.85 < ratio < 1.15


# ---- operating points and metrics at a threshold ---------------------------------------

def test_parse_operating_point():
    assert parse_operating_point("0.5").kind == "threshold"
    assert parse_operating_point(0.3).value == 0.3
    assert str(parse_operating_point("threshold=0.3")) == "threshold=0.3"
    assert str(parse_operating_point(" spec=0.9")) == "spec=0.9"
    assert parse_operating_point("sens=0.95").kind == "sens"
    for bad in ("spec", "spec=", "spec=1.5", "ppv=0.9", "half", "-0.1", "sens=nan"):
        with pytest.raises(ValueError) as err:
            parse_operating_point(bad)
        assert "\n" not in str(err.value)


def test_spec_and_sens_targets_are_met_on_validation():
    y, s = binary_case(500, seed=12)
    thr = threshold_for(parse_operating_point("spec=0.9"), y, s)
    spec = ((s < thr) & (y == 0)).sum() / (y == 0).sum()
    assert spec >= 0.9
    lower = s[s < thr].max()  # the next threshold down no longer meets it
    assert ((s < lower) & (y == 0)).sum() / (y == 0).sum() < 0.9
    thr = threshold_for(parse_operating_point("sens=0.9"), y, s)
    assert ((s >= thr) & (y == 1)).sum() / (y == 1).sum() >= 0.9
    higher = s[s > thr].min()
    assert ((s >= higher) & (y == 1)).sum() / (y == 1).sum() < 0.9
    with pytest.raises(ValueError, match="validation"):
        threshold_for(parse_operating_point("spec=0.9"))


def test_binary_metrics_match_sklearn():
    y, s = binary_case(300, seed=13)
    pred = predict("binary", s, 0.4)
    got = metrics_at("binary", y, pred, 2)
    tn, fp, fn, tp = confusion_matrix(y, pred).ravel()
    assert got.accuracy == pytest.approx(accuracy_score(y, pred), abs=1e-15)
    assert got.f1 == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-15)
    assert got.sensitivity == pytest.approx(tp / (tp + fn), abs=1e-15)
    assert got.specificity == pytest.approx(tn / (tn + fp), abs=1e-15)


def test_multiclass_metrics_match_sklearn_and_skip_an_absent_class():
    rng = np.random.default_rng(14)
    y = rng.integers(0, 3, 300)  # class 3 of 4 never occurs
    p = rng.dirichlet(np.ones(4), 300)
    pred = predict("multiclass", p, None)
    got = metrics_at("multiclass", y, pred, 4)
    cm = confusion_matrix(y, pred, labels=range(4))
    spec = [(cm.sum() - cm[k].sum() - cm[:, k].sum() + cm[k, k]) / (cm.sum() - cm[k].sum())
            for k in range(4)]
    assert got.accuracy == pytest.approx(accuracy_score(y, pred))
    assert got.f1 == pytest.approx(f1_score(y, pred, labels=range(4), average="macro",
                                            zero_division=np.nan))
    assert got.sensitivity == pytest.approx(recall_score(y, pred, labels=range(3), average="macro"))
    assert got.specificity == pytest.approx(np.mean(spec))


def test_multilabel_metrics_match_sklearn_and_mask_nan_targets():
    y, s = multilabel_case(400, missing=0)
    pred = predict("multilabel", s, 0.5)
    got = metrics_at("multilabel", y, pred, 5)
    assert got.f1 == pytest.approx(f1_score(y, pred, average="macro"))
    assert got.sensitivity == pytest.approx(recall_score(y, pred, average="macro"))
    assert got.accuracy == pytest.approx((pred == y).mean())
    y2, _ = multilabel_case(400, missing=0.2)  # same labels, some now unknown
    masked = metrics_at("multilabel", y2, pred, 5)
    keep = ~np.isnan(y2[:, 0])
    label0 = f1_score(y2[keep, 0], pred[keep, 0])
    per = [f1_score(y2[~np.isnan(y2[:, j]), j], pred[~np.isnan(y2[:, j]), j]) for j in range(5)]
    assert per[0] == label0 and masked.f1 == pytest.approx(np.mean(per))
    assert masked.accuracy == pytest.approx((pred == y2)[~np.isnan(y2)].mean())


def test_flip_rate():
    assert flip_rate("binary", np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])) == 0.25
    a = np.array([[0, 1], [1, 1], [0, 0]])
    assert flip_rate("multilabel", a, np.array([[0, 1], [1, 0], [1, 1]])) == pytest.approx(2 / 3)


# ---- calibration ------------------------------------------------------------------------

def test_ece_hand_computed():
    p = np.array([0.1, 0.1, 0.9, 0.9, 0.5])  # bins 1, 1, 13, 13, 7 of 15
    y = np.array([0, 1, 1, 1, 0])
    # bin 1: |0.5 - 0.1| * 2/5; bin 13: |1 - 0.9| * 2/5; bin 7: |0 - 0.5| * 1/5
    assert ece("binary", y, p) == pytest.approx(0.16 + 0.04 + 0.1)
    probs = np.array([[0.7, 0.2, 0.1], [0.75, 0.2, 0.05], [0.25, 0.25, 0.5]])
    # top-label confidences 0.7 (right), 0.75 (wrong), 0.5 (right), one per bin
    assert ece("multiclass", np.array([0, 1, 2]), probs) == pytest.approx((0.3 + 0.75 + 0.5) / 3)
    y_ml = np.array([[0, np.nan], [1, 1]])
    s_ml = np.array([[0.1, 0.99], [0.9, 0.9]])
    assert ece("multilabel", y_ml, s_ml) == pytest.approx(binned_ece([0.1, 0.9, 0.9], [0, 1, 1]))
    assert binned_ece([1.0, 0.0], [1, 0]) == 0.0  # the edges fall inside the bins


def test_brier_matches_sklearn():
    y, s = binary_case(200, seed=15)
    assert brier("binary", y, s) == pytest.approx(brier_score_loss(y, s))
    rng = np.random.default_rng(16)
    yc, p = rng.integers(0, 3, 100), rng.dirichlet(np.ones(3), 100)
    assert brier("multiclass", yc, p) == pytest.approx(((p - np.eye(3)[yc]) ** 2).sum(axis=1).mean())
    ym, sm = multilabel_case(100)
    keep = ~np.isnan(ym)
    assert brier("multilabel", ym, sm) == pytest.approx(brier_score_loss(ym[keep], sm[keep]))


# ---- the row ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel"])
def test_teacher_against_itself_is_non_inferior(kind):
    rng = np.random.default_rng(17)
    if kind == "binary":
        task, (y, s) = BINARY, binary_case(300)
    elif kind == "multiclass":
        task, y, s = Task(kind, ("a", "b", "c")), rng.integers(0, 3, 300), rng.dirichlet(np.ones(3), 300)
    else:
        task, (y, s) = Task(kind, tuple("abcde")), multilabel_case(300)
    row = quality_row(task, y, s, s.copy(), n_boot=300)
    assert set(COLUMNS) <= set(row)
    assert row["delta_auc"] == 0 and row["delta_auc_ci_low"] == row["delta_auc_ci_high"] == 0
    assert row["delong_p"] == 1.0 and row["verdict"] == "non-inferior"
    assert row["flip_rate"] == 0


def test_verdict_rules():
    assert verdict(-0.01, 0.02, 0.02) == "non-inferior"
    assert verdict(-0.08, -0.03, 0.02) == "inferior"
    assert verdict(-0.05, 0.01, 0.02) == "inconclusive"
    assert verdict(float("nan"), 0.0, 0.02) is None


def test_a_much_worse_model_is_inferior_with_a_small_p():
    y, s = binary_case(800, seed=18, signal=1.2)
    worse = 1 / (1 + np.exp(-(np.log(s / (1 - s)) + np.random.default_rng(19).normal(0, 2, 800))))
    row = quality_row(BINARY, y, worse, s, n_boot=500)
    assert row["delta_auc_ci_high"] < -0.02 and row["verdict"] == "inferior"
    assert row["delong_p"] < 1e-6 and row["p_method"] == "delong"
    assert row["delta_auc_ci_low"] < row["delta_auc"] < row["delta_auc_ci_high"]
    grouped = quality_row(BINARY, y, worse, s, groups=np.arange(800) // 2, n_boot=500)
    assert grouped["p_method"] == "paired bootstrap z" and grouped["delong_p"] < 1e-6


def test_single_class_label_is_nan_with_a_reason_and_left_out():
    task = Task("multilabel", ("a", "b", "c"))
    y, s = multilabel_case(300, labels=3, seed=20)
    y[:, 1] = np.where(np.isnan(y[:, 1]), np.nan, 0.0)
    row = quality_row(task, y, s, s, n_boot=200)
    assert math.isnan(row["per_label_auc"]["b"]) and "b" not in row["per_label_delong_p"]
    ok = [row["per_label_auc"][k] for k in "ac"]
    assert row["auc_roc"] == pytest.approx(np.mean(ok))
    assert any(r.startswith("b: single class") for r in row["reasons"])
    assert row["auc_ci_low"] <= row["auc_roc"] <= row["auc_ci_high"]
    y_one = np.zeros(50)
    row = quality_row(BINARY, y_one, np.linspace(0, 1, 50), np.linspace(0, 1, 50), n_boot=100)
    assert math.isnan(row["auc_roc"]) and math.isnan(row["auc_ci_low"]) and row["verdict"] is None
    assert "test set has a single class" in row["reasons"]


def test_rare_label_resamples_are_left_out_and_counted():
    task = Task("multilabel", ("common", "rare"))
    rng = np.random.default_rng(21)
    y = np.stack([rng.integers(0, 2, 200), np.r_[1, 1, np.zeros(198)]], axis=1).astype(float)
    s = rng.random((200, 2))
    row = quality_row(task, y, s, n_boot=400)
    note = [r for r in row["reasons"] if r.startswith("bootstrap:")]
    assert note and "of 400 resamples left out" in note[0]
    assert 20 < int(note[0].split()[1]) < 100  # P(no rare positive) = (198/200)^200 = 13%: ~54


def test_multilabel_masked_entries_change_nothing():
    task = Task("multilabel", tuple("abcd"))
    y, s = multilabel_case(300, labels=4, seed=22, missing=0.2)
    t = np.clip(s + np.random.default_rng(23).normal(0, 0.1, s.shape), 0, 1)
    garbage = s.copy()
    garbage[np.isnan(y)] = np.random.default_rng(24).random(np.isnan(y).sum())
    a = quality_row(task, y, s, t, n_boot=200)
    b = quality_row(task, y, garbage, t, n_boot=200)
    for key in ("auc_roc", "auc_ci_low", "auc_ci_high", "delta_auc", "delta_auc_ci_low",
                "accuracy", "f1", "sensitivity", "specificity", "ece", "brier"):
        assert a[key] == b[key], key
    assert a["per_label_auc"] == b["per_label_auc"]


def test_operating_point_chosen_on_validation_is_carried_to_test():
    vy, vs = binary_case(400, seed=25)
    y, s = binary_case(400, seed=26)
    row = quality_row(BINARY, y, s, s, vy, vs, operating_point="spec=0.9", n_boot=100)
    thr = row["threshold"]
    assert thr == threshold_for(parse_operating_point("spec=0.9"), vy, vs)
    assert ((vs < thr) & (vy == 0)).sum() / (vy == 0).sum() >= 0.9
    assert row["specificity"] == ((s < thr) & (y == 0)).sum() / (y == 0).sum()
    with pytest.raises(ValueError, match="validation"):
        quality_row(BINARY, y, s, operating_point="sens=0.9", n_boot=0)
    with pytest.raises(ValueError, match="operating point"):
        quality_row(BINARY, y, s, operating_point="spec=0.9x", n_boot=0)
    task = Task("multilabel", tuple("abc"))
    vy, vs = multilabel_case(300, labels=3, seed=27)
    y, s = multilabel_case(300, labels=3, seed=28)
    row = quality_row(task, y, s, None, vy, vs, operating_point="sens=0.8", n_boot=0)
    assert math.isnan(row["threshold"]) and set(row["label_thresholds"]) == set("abc")


def test_binary_accepts_two_column_probabilities_and_no_teacher():
    y, s = binary_case(200, seed=29)
    two = np.stack([1 - s, s], axis=1)
    a, b = quality_row(BINARY, y, s, n_boot=100), quality_row(BINARY, y, two, n_boot=100)
    assert a["auc_roc"] == b["auc_roc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert a["verdict"] is None and math.isnan(a["flip_rate"])
    assert "no teacher predictions: no comparison" in a["reasons"]
