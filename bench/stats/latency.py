"""Latency statistics from raw per-call samples (ms): one process, then R processes.

Per process: median, p90 only with n >= 64 and p99 only with n >= 662 (so each tail
percentile rests on 6 or more samples beyond it), mean, std, IQR, min, max, and
throughput = 1000 / median (calls per second at batch 1, one call at a time).

Across R fresh processes of the same model (this machine's noise is mostly between
processes, see docs/results.md, Statistics):
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
- unstable (with reasons), by the number of processes R:
  R = 1: the robust within-process CV above 0.10 (a bimodal or disturbed process: one
  process cannot show whether its median would come out again, so this stands in).
  R = 2: latency_cv > 0.10; or the processes disagree, meaning the larger median exceeds
  the smaller by more than 10% (measured here over 12 cells of 3-5 fresh processes each,
  6 of 12 cells spread by 1-8% and the other 6 by 20-124%: the line falls in the gap).
  Two processes whose medians agree are reproducible however spread out each is: the
  headline is a median of thousands of calls.
  R >= 3: the headline is a median, so one odd process should not move it: the row is
  unstable when leaving out any one process moves the headline by more than 5% (half
  the 10% line above, since leaving one of two out moves it by half their spread).
  A significance test (Kruskal-Wallis) was not used: with thousands of samples it flags
  differences far too small to matter.
- noise floor of a backend: the disagreement of its teacher's processes (larger median
  over smaller, minus 1; with more than two processes the median over pairs). Two
  processes of the same file differ by this much here, so a speedup closer to 1 than
  this is no measurable difference.
- ratio interval (a row's speedup, teacher / row; `bench compare`'s B / A): the two
  headline bootstraps (resampled the same way as the latency interval, each on its own)
  divided, percentile 95%, then widened by the noise floor on both sides, since
  within-process resampling alone misses it.
"""

from __future__ import annotations

import numpy as np

from bench.stats.bootstrap import percentile_interval

CV_LIMIT = 0.10
SPREAD_LIMIT = 1.10
LEAVE_ONE_OUT_LIMIT = 0.05
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
    boot = boot_headline(rng, procs, n_boot)
    if r < 3:
        notes.append(f"latency interval from within-process resampling only ({r} process"
                     f"{'es' if r > 1 else ''}; 3 or more resample processes)")
    row["latency_ms_ci_low"], row["latency_ms_ci_high"] = map(float, np.quantile(boot, [0.025, 0.975]))
    spreads = [robust_cv(p) for p in procs]
    cv = float(medians.std(ddof=1) / medians.mean()) if r >= 2 else spreads[0]
    row["latency_cv"] = cv
    row["unstable_reasons"] = unstable = _instability(medians, cv)
    row["unstable"] = bool(unstable)
    row["latency_notes"] = notes
    row["noise_floor"] = noise_floor(procs) if r >= 2 else None
    return row


def _instability(medians: np.ndarray, cv: float) -> list[str]:
    """Why a headline is not yet stable (empty when it is); see the module docstring."""
    r = len(medians)
    if r == 1:
        return [f"latency_cv {cv:.1%} > {CV_LIMIT:.0%}"] if cv > CV_LIMIT else []
    if r >= 3:
        h = np.median(medians)
        moves = [abs(np.median(np.delete(medians, i)) / h - 1) for i in range(r)]
        worst = max(moves)
        if worst > LEAVE_ONE_OUT_LIMIT:
            return [f"processes disagree: leaving one of {r} out moves the headline by "
                    f"{worst:.0%} > {LEAVE_ONE_OUT_LIMIT:.0%} (medians {medians.min():.3g}-"
                    f"{medians.max():.3g} ms)"]
        return []
    unstable = []
    if cv > CV_LIMIT:
        unstable.append(f"latency_cv {cv:.1%} > {CV_LIMIT:.0%}")
    if medians.max() > SPREAD_LIMIT * medians.min():
        unstable.append(f"processes disagree: medians {medians.min():.3g}-{medians.max():.3g} ms "
                        f"(x{medians.max() / medians.min():.2f} > x{SPREAD_LIMIT:.2f})")
    return unstable


def headline(processes: list) -> float:
    """The row's latency_ms_p50: the median of the per-process medians."""
    return float(np.median([np.median(p) for p in processes]))


def noise_floor(processes: list) -> float:
    """How far two processes of the same file typically disagree: the median over pairs
    of processes of larger median / smaller - 1 (0.04: 4% apart). With two processes
    that is their disagreement; with more, one odd process does not set it alone."""
    medians = [float(np.median(p)) for p in processes if len(p)]
    if len(medians) < 2 or min(medians) <= 0:
        raise ValueError("a noise floor needs at least two processes with samples")
    pairs = [max(a, b) / min(a, b) - 1 for i, a in enumerate(medians) for b in medians[i + 1:]]
    return float(np.median(pairs))


def boot_headline(rng, processes: list, n_boot: int) -> np.ndarray:
    """n_boot bootstrap replicates of the headline: whole processes with R >= 3, else the
    samples within each process (see the module docstring)."""
    medians = np.array([np.median(p) for p in processes])
    r = len(medians)
    if r >= 3:
        return np.median(medians[rng.integers(0, r, size=(n_boot, r))], axis=1)
    return np.median(np.stack([_boot_medians(rng, np.asarray(p, dtype=np.float64), n_boot)
                               for p in processes], axis=1), axis=1)


def ratio_interval(num_processes: list, den_processes: list, floor: float | None,
                   n_boot: int = 2000, seed: int = 0,
                   streams: tuple[int, int] = (1, 2)) -> tuple[float, float]:
    """95% percentile interval of headline(num) / headline(den), widened by the noise floor.

    The one interval of a latency ratio: a row's speedup (teacher / row) and `bench
    compare`'s change (B / A). Each side's headline is bootstrapped on its own (the
    processes are independent; see boot_headline), from the random streams [seed,
    streams[0]] and [seed, streams[1]]; `streams` lets each caller keep the numbers it
    has always printed. The noise floor divides the low end and multiplies the high
    end: within-process resampling alone misses how far two processes disagree.
    """
    ratios = (boot_headline(np.random.default_rng([seed, streams[0]]), num_processes, n_boot)
              / boot_headline(np.random.default_rng([seed, streams[1]]), den_processes, n_boot))
    lo, hi = percentile_interval(ratios)
    widen = 1.0 + (floor or 0.0)
    return float(lo / widen), float(hi * widen)


def speedup_interval(teacher: list, row: list, floor: float | None, n_boot: int = 2000,
                     seed: int = 0) -> tuple[float, float]:
    """95% interval of a row's speedup, headline(teacher) / headline(row): ratio_interval."""
    return ratio_interval(teacher, row, floor, n_boot, seed)


def no_measurable_difference(low: float | None, high: float | None) -> bool:
    """A speedup whose interval contains 1 is worded as 'no measurable difference'."""
    return low is not None and high is not None and low <= 1.0 <= high


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
