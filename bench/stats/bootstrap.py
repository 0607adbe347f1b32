"""Bootstrap resamples as count weights, and percentile intervals.

A resample is returned as counts per case (B x N): the same matrix serves the model
and the teacher, which is what makes the comparison paired. Stratifying keeps each
stratum's size fixed, so a binary resample always holds both classes. With patient
ids the unit drawn is the patient (cluster bootstrap): all of a patient's cases come
along, because cases of one patient are not independent.
"""

from __future__ import annotations

import numpy as np


def resample_counts(n_boot: int, seed: int, n: int, strata: np.ndarray | None = None,
                    groups: np.ndarray | None = None) -> np.ndarray:
    """Counts (n_boot, n), int32: how often each case is drawn in each resample.

    `strata` (per case) are resampled separately, each keeping its size. With `groups`
    (patient id per case), patients are drawn instead of cases, stratified by the
    patient-level stratum (the largest stratum value among the patient's cases, e.g.
    'has a positive case' for binary labels).
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        return _stratified_counts(rng, n_boot, n, strata)
    ids, case_patient = np.unique(np.asarray(groups), return_inverse=True)
    patient_strata = None
    if strata is not None:
        patient_strata = np.full(len(ids), np.min(strata), dtype=np.asarray(strata).dtype)
        np.maximum.at(patient_strata, case_patient, strata)
    per_patient = _stratified_counts(rng, n_boot, len(ids), patient_strata)
    return per_patient[:, case_patient]


def _stratified_counts(rng, n_boot: int, n: int, strata) -> np.ndarray:
    labels = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata)
    drawn = np.concatenate([m[rng.integers(0, len(m), size=(n_boot, len(m)))]
                            for m in (np.flatnonzero(labels == v) for v in np.unique(labels))], axis=1)
    flat = (np.arange(n_boot)[:, None] * n + drawn).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.int32)


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the finite bootstrap values (NaN, NaN if none)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo, hi = np.quantile(v, [a, 1 - a])
    return float(lo), float(hi)
