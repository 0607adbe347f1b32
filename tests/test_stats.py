"""bench.stats against scikit-learn, numpy, naive reimplementations and hand-checked cases."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bench.stats.auc import weighted_auc
from bench.stats.bootstrap import percentile_interval, resample_counts
from bench.stats.delong import delong_covariance, delong_test
from bench.tasks import Task

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


