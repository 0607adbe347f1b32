"""`python -m bench compare RUN_A RUN_B`: what changed between two runs, and whether it is
more than noise. Pure functions on stored rows, samples and predictions; the text the
command prints is bench.results.compare_text's.

Per (model, backend, precision) row present in both runs:
  * latency: the ratio B/A of the headline medians (the median of the per-process
    medians, as in the row), with a percentile bootstrap interval. Each run is resampled
    on its own (the runs are independent), the same way bench.stats.latency makes the
    row's interval: whole processes with 3 or more of them, else the samples within each
    process (then the interval reflects within-process noise only, and says so). The
    interval is then widened by the backend's noise floor (the larger of the two runs':
    how far two processes of the same teacher file disagree), as the row's speedup
    interval is (one function: bench.stats.latency.ratio_interval). The change is
    significant when the interval excludes 1.
  * AUC: delta B - A from the saved predictions, paired case by case, which needs the
    same test set and task: y_true must be identical (else 'not paired: different test
    sets', and only the two AUCs are shown). The task comes with the predictions
    (bench.results.store.load_predictions); the AUCs are bench.stats.auc's, as in the rows.
    The interval is a paired stratified bootstrap (the same resamples for both runs);
    the p-value is DeLong's test for binary tasks and the paired bootstrap z-test
    otherwise (macro AUC over classes or labels). Significant: p < 0.05.
  * sizes: exact changes of the columns in the "compare" view of bench.results.row (params,
    params_nonzero, weights_mib, file_mib, file_gz_mib and macs: deterministic given the
    code, so any change is a change of the method).
  * cost: the seconds and optimiser steps that produced the model from the teacher, in
    each run (compress_seconds, compress_steps), so a longer recipe is seen beside what
    it bought.
Rows only in one run are listed. A row that is not ok in either run shows its status.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.results.row import Result, row_key, view
from bench.results.store import load_predictions, load_rows, load_samples
from bench.stats.auc import auc_roc, has_both_classes, kind_of, one_vs_rest, weighted_auc
from bench.stats.bootstrap import percentile_interval, resample_counts
from bench.stats.delong import delong_test, wald
from bench.stats.latency import headline, ratio_interval

ALPHA = 0.05
SIZE_COLUMNS = tuple(view("compare"))
#: compare's bootstrap streams for B and A (bench.stats.latency.ratio_interval): kept
#: from before that function was shared, so the intervals it prints are unchanged
STREAMS = (0, 1)
NAN = float("nan")

Key = tuple[str, str, str]  # (model, backend, precision)


@dataclass(frozen=True)
class LatencyChange:
    p50_a: float
    p50_b: float
    ratio: float  # p50_b / p50_a
    ci_low: float = NAN
    ci_high: float = NAN
    significant: bool | None = None  # None: no interval (no raw samples)
    note: str = ""


@dataclass(frozen=True)
class AucChange:
    auc_a: float
    auc_b: float
    delta: float  # auc_b - auc_a
    ci_low: float = NAN
    ci_high: float = NAN
    p: float = NAN
    p_method: str = ""  # "DeLong" or "paired bootstrap z"
    paired: bool = True
    significant: bool | None = None  # None: no test possible
    note: str = ""


@dataclass
class RowChange:
    key: Key
    status_a: str
    status_b: str
    latency: LatencyChange | None = None
    auc: AucChange | None = None
    sizes: list = field(default_factory=list)  # (column, value in A, value in B)
    notes: list = field(default_factory=list)
    #: what compressing cost in A and in B: ((seconds, steps), (seconds, steps)), or None
    #: where neither run records it (the teacher's rows; runs before schema 5)
    cost: tuple | None = None

    @property
    def significant(self) -> bool:
        return bool((self.latency and self.latency.significant)
                    or (self.auc and self.auc.significant))


@dataclass
class Comparison:
    run_a: Path
    run_b: Path
    rows: list[RowChange]
    only_a: list[Key]
    only_b: list[Key]


def latency_change(processes_a: list, processes_b: list, n_boot: int = 2000,
                   seed: int = 0, floor: float | None = None) -> LatencyChange:
    """Ratio B/A of headline medians with a bootstrap interval (see the module docstring),
    widened by `floor`, the larger of the two runs' noise floors on that backend."""
    a = [np.asarray(p, dtype=np.float64) for p in processes_a if len(p)]
    b = [np.asarray(p, dtype=np.float64) for p in processes_b if len(p)]
    if not a or not b:
        raise ValueError("latency_change needs samples in both runs")
    p50_a, p50_b = headline(a), headline(b)
    ratio = p50_b / p50_a if p50_a > 0 else NAN
    if n_boot <= 0:
        return LatencyChange(p50_a, p50_b, ratio, note="no bootstrap (n_boot = 0)")
    lo, hi = ratio_interval(b, a, floor, n_boot, seed, streams=STREAMS)
    notes = [] if min(len(a), len(b)) >= 3 else [
        f"within-process resampling only: {len(a)} and {len(b)} processes"]
    if floor:
        notes.append(f"interval widened by the noise floor {floor:.1%}")
    return LatencyChange(p50_a, p50_b, ratio, lo, hi, bool(lo > 1 or hi < 1), "; ".join(notes))


def same_test_set(y_a, y_b) -> bool:
    a, b = np.asarray(y_a, dtype=np.float64), np.asarray(y_b, dtype=np.float64)
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


def auc_change(pred_a: dict, pred_b: dict, n_boot: int = 2000, seed: int = 0) -> AucChange:
    """delta AUC B - A on the same test cases (see the module docstring). Each prediction
    dict holds y_true, y_score and its task (as bench.results.store.load_predictions gives)."""
    y_a, y_b = np.asarray(pred_a["y_true"]), np.asarray(pred_b["y_true"])
    s_a = np.asarray(pred_a["y_score"], dtype=np.float64)
    s_b = np.asarray(pred_b["y_score"], dtype=np.float64)
    task_a, task_b = pred_a["task"], pred_b["task"]
    auc_a, auc_b = auc_roc(task_a, y_a, s_a)[0], auc_roc(task_b, y_b, s_b)[0]
    if kind_of(task_a) != kind_of(task_b):
        return AucChange(auc_a, auc_b, auc_b - auc_a, paired=False,
                         note="not paired: different tasks")
    if not same_test_set(y_a, y_b) or s_a.shape != s_b.shape:
        return AucChange(auc_a, auc_b, auc_b - auc_a, paired=False,
                         note="not paired: different test sets")
    kind = kind_of(task_a)
    targets, cols_a = one_vs_rest(kind, y_a, s_a)
    cols_b = one_vs_rest(kind, y_a, s_b)[1]
    used = [j for j in range(targets.shape[1]) if has_both_classes(targets[:, j])]
    if not used:
        return AucChange(NAN, NAN, NAN, note="no AUC: the test set has a single class")
    delta = auc_b - auc_a
    lo = hi = NAN
    deltas = None
    if n_boot > 0:
        strata = y_a.astype(np.int64) if kind in ("binary", "multiclass") else None
        w = resample_counts(n_boot, seed, len(y_a), strata=strata)
        boot = np.mean([weighted_auc(np.vstack([cols_b[:, j], cols_a[:, j]]), targets[:, j], w)
                        for j in used], axis=0)  # (2, B)
        deltas = boot[0] - boot[1]
        lo, hi = percentile_interval(deltas)
    if kind == "binary":
        keep = ~np.isnan(targets[:, 0])
        p, method = delong_test(targets[keep, 0], cols_b[keep, 0], cols_a[keep, 0]).p, "DeLong"
    else:
        finite = np.array([]) if deltas is None else deltas[np.isfinite(deltas)]
        p = wald(delta, float(finite.std(ddof=1)) if finite.size > 1 else NAN)[1]
        method = "paired bootstrap z"
    if math.isfinite(p):
        significant = bool(p < ALPHA)
    elif math.isfinite(lo) and math.isfinite(hi):
        significant = bool(lo > 0 or hi < 0)
    else:
        significant = None
    return AucChange(auc_a, auc_b, delta, lo, hi, p, method, True, significant)


def size_changes(a: Result, b: Result) -> list[tuple[str, object, object]]:
    out = []
    for c in SIZE_COLUMNS:
        va, vb = getattr(a, c), getattr(b, c)
        if va != vb:
            out.append((c, va, vb))
    return out


def cost_change(a: Result, b: Result) -> tuple | None:
    """Seconds and optimiser steps from the teacher in each run (the seconds are wall time:
    not a deterministic figure, shown beside the steps rather than as a size)."""
    pair = ((a.compress_seconds, a.compress_steps), (b.compress_seconds, b.compress_steps))
    return None if all(v is None for cost in pair for v in cost) else pair


def _by_key(run_dir: Path) -> dict[Key, Result]:
    rows = load_rows(run_dir)
    out: dict[Key, Result] = {}
    for r in rows:
        key = row_key(r)
        if key in out:
            raise ValueError(f"{run_dir}: several rows for {' / '.join(key)} (a --seeds run?): "
                             "compare its seed-<s> directories")
        out[key] = r
    return out


def compare_runs(run_a: Path, run_b: Path, n_boot: int = 2000, seed: int = 0) -> Comparison:
    """Compare every row two run directories share; ValueError if one is not a run."""
    run_a, run_b = Path(run_a), Path(run_b)
    rows_a, rows_b = _by_key(run_a), _by_key(run_b)
    changes = []
    for key in [k for k in rows_a if k in rows_b]:
        a, b = rows_a[key], rows_b[key]
        change = RowChange(key, a.status, b.status, sizes=size_changes(a, b),
                           cost=cost_change(a, b))
        if a.ok and b.ok:
            change.latency = _latency(run_a, run_b, a, b, key, n_boot, seed, change.notes)
            change.auc = _auc(run_a, run_b, a, b, key, n_boot, seed, change.notes)
        else:
            for name, r in (("A", a), ("B", b)):
                if not r.ok:
                    change.notes.append(f"{name} is {r.status}"
                                        + (f": {r.error}" if r.error else ""))
        changes.append(change)
    return Comparison(run_a, run_b, changes, [k for k in rows_a if k not in rows_b],
                      [k for k in rows_b if k not in rows_a])


def _latency(run_a, run_b, a, b, key, n_boot, seed, notes) -> LatencyChange | None:
    sa, sb = load_samples(run_a, *key), load_samples(run_b, *key)
    if sa and sb and any(len(p) for p in sa) and any(len(p) for p in sb):
        floors = [f for f in (a.noise_floor, b.noise_floor) if f is not None]
        return latency_change(sa, sb, n_boot, seed, max(floors) if floors else None)
    if a.latency_ms_p50 and b.latency_ms_p50:
        return LatencyChange(a.latency_ms_p50, b.latency_ms_p50,
                             b.latency_ms_p50 / a.latency_ms_p50,
                             note="no raw samples in " + ("both runs" if not (sa or sb) else
                                                          "A" if not sa else "B")
                                  + ": stored medians only, no test")
    notes.append("no latency in one of the runs")
    return None


def _auc(run_a, run_b, a, b, key, n_boot, seed, notes) -> AucChange | None:
    pa, pb = load_predictions(run_a, *key), load_predictions(run_b, *key)
    if pa is not None and pb is not None:
        return auc_change(pa, pb, n_boot, seed)
    if a.auc_roc is not None and b.auc_roc is not None:
        return AucChange(a.auc_roc, b.auc_roc, b.auc_roc - a.auc_roc, paired=False,
                         note="no predictions in " + ("A" if pa is None else "B")
                              + ": stored AUCs only, no test")
    notes.append("no AUC in one of the runs")
    return None
