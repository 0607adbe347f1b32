"""Latency statistics from raw per-call samples (ms): one process, then R processes.

Per process: median, p90 only with n >= 64 and p99 only with n >= 662 (so each tail
percentile rests on 6 or more samples beyond it), mean, std, IQR, min, max, and
throughput = 1000 / median (calls per second at batch 1, one call at a time).

Across R fresh processes of the same model (this machine's noise is mostly between
processes, see the README):
- headline p50: the median of the per-process medians.
- interval: a percentile bootstrap of that headline. With R >= 3 the processes are
  the independent units and are resampled whole (their medians; Davison & Hinkley
  1997, sec. 3.8: resample the top level of nested data). With R < 3 there are too
  few processes to resample, so the samples within each process are resampled and the
  interval reflects within-process noise only (a reason says so).
- latency_cv: with R >= 2 the coefficient of variation (std ddof=1 / mean) of the
  per-process medians, i.e. how reproducible the headline is between processes. With
  R = 1 the robust within-process CV, IQR / (1.349 * median) (the normal-consistent
  spread; a raw std/mean would be ruled by the rare 10x spikes of a shared machine).
- unstable (with reasons): latency_cv > 0.10; or processes disagree, meaning the
  largest per-process median exceeds the smallest by more than 10% (in the README's
  table of 3-5 fresh processes per cell, 6 of 12 cells spread by 1-8% and the other 6
  by 20-124%: the line falls in the gap); or any single process has a robust CV above
  0.10 (a bimodal process, which a median alone would hide). A significance test
  (Kruskal-Wallis) was not used: with thousands of samples it flags differences far
  too small to matter.
"""

from __future__ import annotations

import numpy as np

CV_LIMIT = 0.10
SPREAD_LIMIT = 1.10
P90_MIN_N = 64
P99_MIN_N = 662


def summarize_process(samples_ms) -> dict:
    """Summary of one process's warm samples (None where n does not support a figure)."""
    s = np.asarray(samples_ms, dtype=np.float64)
    n = len(s)
    if n == 0:
        return {"latency_n": 0, "latency_ms_p50": None, "latency_ms_p90": None,
                "latency_ms_p99": None, "latency_ms_mean": None, "latency_ms_std": None,
                "latency_ms_iqr": None, "latency_ms_min": None, "latency_ms_max": None,
                "throughput_per_s": None}
    p25, p50, p75 = np.percentile(s, [25, 50, 75])
    return {
        "latency_n": n,
        "latency_ms_p50": float(p50),
        "latency_ms_p90": float(np.percentile(s, 90)) if n >= P90_MIN_N else None,
        "latency_ms_p99": float(np.percentile(s, 99)) if n >= P99_MIN_N else None,
        "latency_ms_mean": float(s.mean()),
        "latency_ms_std": float(s.std(ddof=1)) if n > 1 else None,
        "latency_ms_iqr": float(p75 - p25),
        "latency_ms_min": float(s.min()),
        "latency_ms_max": float(s.max()),
        "throughput_per_s": 1000.0 / p50 if p50 > 0 else None,
    }


def robust_cv(samples_ms) -> float:
    """IQR / (1.349 * median): the CV a normal distribution would have, spikes ignored."""
    q25, q50, q75 = np.percentile(np.asarray(samples_ms, dtype=np.float64), [25, 50, 75])
    return float((q75 - q25) / (1.349 * q50)) if q50 > 0 else float("nan")


def latency_row(processes: list, n_boot: int = 2000, seed: int = 0) -> dict:
    """Headline latency over R processes (a list of per-process sample arrays).

    Returns the summary of all samples pooled (n, p90, p99, mean, std, IQR, ...) with
    latency_ms_p50 replaced by the median of per-process medians, plus latency_ms_ci_low,
    latency_ms_ci_high, latency_cv, latency_processes, unstable, unstable_reasons and
    latency_notes (how the interval was made).
    """
    procs = [np.asarray(p, dtype=np.float64) for p in processes if len(p)]
    if not procs:
        raise ValueError("latency_row needs at least one process with samples")
    medians = np.array([np.median(p) for p in procs])
    r = len(procs)
    row = summarize_process(np.concatenate(procs))
    row["latency_ms_p50"] = headline = float(np.median(medians))
    row["throughput_per_s"] = 1000.0 / headline if headline > 0 else None
    row["latency_processes"] = r
    rng = np.random.default_rng(seed)
    notes = []
    if r >= 3:
        boot = np.median(medians[rng.integers(0, r, size=(n_boot, r))], axis=1)
    else:
        boot = np.median(np.stack([_boot_medians(rng, p, n_boot) for p in procs], axis=1), axis=1)
        notes.append(f"latency interval from within-process resampling only ({r} process"
                     f"{'es' if r > 1 else ''}; 3 or more resample processes)")
    row["latency_ms_ci_low"], row["latency_ms_ci_high"] = map(float, np.quantile(boot, [0.025, 0.975]))
    spreads = [robust_cv(p) for p in procs]
    cv = float(medians.std(ddof=1) / medians.mean()) if r >= 2 else spreads[0]
    row["latency_cv"] = cv
    unstable = []
    if cv > CV_LIMIT:
        unstable.append(f"latency_cv {cv:.1%} > {CV_LIMIT:.0%}")
    if r >= 2 and medians.max() > SPREAD_LIMIT * medians.min():
        unstable.append(f"processes disagree: medians {medians.min():.3g}-{medians.max():.3g} ms "
                        f"(x{medians.max() / medians.min():.2f} > x{SPREAD_LIMIT:.2f})")
    for i, s in enumerate(spreads if r >= 2 else []):  # with R = 1 that is latency_cv itself
        if s > CV_LIMIT:
            unstable.append(f"process {i} is spread out: IQR/(1.349 median) = {s:.1%}")
    row["unstable"] = bool(unstable)
    row["unstable_reasons"] = unstable
    row["latency_notes"] = notes
    return row


def _boot_medians(rng, samples: np.ndarray, n_boot: int) -> np.ndarray:
    """Medians of n_boot resamples of one process's samples (chunked to bound memory)."""
    n = len(samples)
    s = np.sort(samples)
    mid = ((n - 1) // 2, n // 2)
    out = np.empty(n_boot)
    chunk = max(1, 4_000_000 // n)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        # indices into the sorted samples: their middle order statistics are the median's
        idx = np.partition(rng.integers(0, n, size=(b, n)), mid, axis=1)
        out[start:start + b] = 0.5 * (s[idx[:, mid[0]]] + s[idx[:, mid[1]]])
    return out
