"""bench.stats.latency against numpy, naive reimplementations and hand-checked cases:
per-process summaries, the headline over processes, stability and the ratio interval."""

import time

import numpy as np
import pytest

from bench.child.timed_loop import LatencyPlan, timed_loop
from bench.stats import latency


def test_process_summary_equals_numpy_and_tail_percentiles_need_samples():
    s = np.random.default_rng(30).gamma(4, 1.0, 700)
    got = latency.summarize_process(s)
    assert got["latency_ms_p50"] == np.median(s) and got["latency_ms_mean"] == s.mean()
    assert got["latency_ms_std"] == s.std(ddof=1)
    assert got["latency_ms_iqr"] == np.percentile(s, 75) - np.percentile(s, 25)
    assert got["latency_ms_p90"] == np.percentile(s, 90) and got["latency_ms_p99"] == np.percentile(s, 99)
    assert (got["latency_ms_min"], got["latency_ms_max"]) == (s.min(), s.max())
    assert got["throughput_per_s"] == 1000 / np.median(s)
    assert latency.summarize_process(s[:661])["latency_ms_p99"] is None
    assert latency.summarize_process(s[:662])["latency_ms_p99"] is not None
    assert latency.summarize_process(s[:63])["latency_ms_p90"] is None
    assert latency.summarize_process(s[:64])["latency_ms_p90"] is not None


def test_timed_loop_recovers_a_known_sleep():
    samples = timed_loop(lambda _: time.sleep(0.005), None, LatencyPlan(min_n=40, min_s=0.2))
    assert abs(latency.summarize_process(samples)["latency_ms_p50"] - 5.0) / 5.0 < 0.05


def test_bootstrap_median_shortcut_equals_the_plain_median():
    s = np.random.default_rng(31).gamma(4, 1.0, 101)
    for n in (101, 100):
        got = latency._boot_medians(np.random.default_rng(0), s[:n], 50)
        idx = np.random.default_rng(0).integers(0, n, size=(50, n))
        assert np.array_equal(got, np.median(np.sort(s[:n])[idx], axis=1))


def noisy(median, n, seed, spikes=0.01):
    rng = np.random.default_rng(seed)
    s = median * rng.normal(1, 0.02, n)
    s[rng.random(n) < spikes] *= 10  # a shared machine's rare stalls
    return s


def test_consistent_processes_are_stable_and_the_headline_is_the_median_of_medians():
    procs = [noisy(5.0, 300, k) for k in range(5)]
    row = latency.latency_row(procs, n_boot=500)
    assert row["latency_ms_p50"] == np.median([np.median(p) for p in procs])
    assert row["latency_ms_ci_low"] <= row["latency_ms_p50"] <= row["latency_ms_ci_high"]
    assert not row["unstable"] and row["latency_cv"] < 0.02 and row["latency_processes"] == 5
    one = latency.latency_row(procs[:1], n_boot=500)
    assert not one["unstable"] and one["latency_notes"]
    assert one["latency_ms_ci_low"] <= one["latency_ms_p50"] <= one["latency_ms_ci_high"]


def test_disagreeing_or_bimodal_processes_are_unstable():
    procs = [noisy(5.0, 300, 0), noisy(5.1, 300, 1), noisy(6.5, 300, 2)]
    row = latency.latency_row(procs, n_boot=200)
    assert row["unstable"] and any("disagree" in r for r in row["unstable_reasons"])
    bimodal = np.r_[noisy(5.0, 150, 3), noisy(7.0, 150, 4)]
    row = latency.latency_row([bimodal], n_boot=200)
    assert row["unstable"] and row["latency_cv"] > 0.10
    # two spread-out processes whose medians agree: the headline is reproducible
    row = latency.latency_row([bimodal, bimodal[::-1]], n_boot=200)
    assert not row["unstable"]
    # three processes, one odd: the median of medians does not move, so it is stable...
    row = latency.latency_row([noisy(5.0, 300, 5), noisy(5.05, 300, 6), noisy(7.0, 300, 7),
                               noisy(4.98, 300, 8)], n_boot=200)
    # the floor is the typical pairwise disagreement: the odd process does not set it alone
    assert not row["unstable"] and row["noise_floor"] == pytest.approx(0.21, abs=0.03)
    # ...unless leaving one out moves it
    row = latency.latency_row([noisy(5.0, 300, 5), noisy(7.0, 300, 6), noisy(5.05, 300, 7)],
                              n_boot=200)
    assert row["unstable"] and "leaving one of 3 out" in row["unstable_reasons"][0]


def test_speedup_interval_and_its_wording():
    teacher = [noisy(10.0, 300, 1), noisy(10.4, 300, 2)]
    fast = [noisy(4.0, 300, 3)]
    floor = latency.noise_floor(teacher)
    assert floor == pytest.approx(0.04, abs=0.01)
    lo, hi = latency.speedup_interval(teacher, fast, floor, n_boot=300)
    point = latency.headline(teacher) / latency.headline(fast)
    assert lo < point < hi and lo > 2.0
    assert not latency.no_measurable_difference(lo, hi)
    # the same file twice (a dense copy of the teacher): the floor-widened interval holds 1
    same = [noisy(10.2, 300, 4)]
    lo, hi = latency.speedup_interval(teacher, same, floor, n_boot=300)
    assert latency.no_measurable_difference(lo, hi)
    # without the floor, within-process resampling alone would claim a difference
    lo0, hi0 = latency.speedup_interval(teacher, same, None, n_boot=300)
    assert hi0 - lo0 < hi - lo


@pytest.mark.parametrize("r", [1, 2, 3])
def test_ratio_interval_is_the_two_headline_bootstraps_divided_and_widened(r):
    """The one latency-ratio interval, recomputed by hand: both the row's speedup
    (teacher / row, streams 1 and 2) and compare's B / A (streams 0 and 1) are it."""
    num = [noisy(10.0 + p, 300, 10 + p) for p in range(r)]
    den = [noisy(4.0 + p, 300, 20 + p) for p in range(r)]
    for streams in ((1, 2), (0, 1)):
        ratios = (latency.boot_headline(np.random.default_rng([5, streams[0]]), num, 400)
                  / latency.boot_headline(np.random.default_rng([5, streams[1]]), den, 400))
        lo, hi = np.quantile(ratios, [0.025, 0.975])
        got = latency.ratio_interval(num, den, 0.04, n_boot=400, seed=5, streams=streams)
        assert got == pytest.approx((lo / 1.04, hi * 1.04), rel=1e-12)
    assert latency.speedup_interval(num, den, 0.04, n_boot=400, seed=5) == latency.ratio_interval(
        num, den, 0.04, n_boot=400, seed=5)
