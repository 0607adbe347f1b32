import time

import numpy as np

from bench.child.timed_loop import LatencyPlan, measure
from bench.stats.latency import summarize_process as summarize


def test_latency_loop_recovers_a_known_sleep():
    def fake(_):
        time.sleep(0.004)

    got = measure(fake, np.zeros(1), LatencyPlan(warmup_n=3, warmup_s=0.0, min_n=60, min_s=0.2))
    stats = summarize(got["samples_ms"])
    assert stats["latency_n"] >= 60
    assert abs(stats["latency_ms_p50"] - 4.0) / 4.0 < 0.05 + 0.1 / 4  # sleep overshoots slightly
    assert got["cold_ms"] >= 4.0


def test_loop_needs_both_count_and_time():
    got = measure(lambda _: None, np.zeros(1), LatencyPlan(warmup_n=1, warmup_s=0, min_n=5, min_s=0.05))
    assert len(got["samples_ms"]) > 5  # the time floor kept it going


def test_p90_only_with_enough_samples():
    assert summarize(list(range(63)))["latency_ms_p90"] is None
    s = summarize(list(range(1, 101)))
    assert s["latency_ms_p90"] == np.percentile(np.arange(1, 101), 90)
    assert s["latency_ms_p50"] == 50.5


def test_peak_memory_is_reset_per_model():
    """In a fresh process, as in a measuring worker: a process that has already run many
    tests keeps freed memory resident, which a 64 MiB block may reuse without raising
    the peak."""
    import subprocess
    import sys

    code = """
import numpy as np
from bench.child import memory
assert memory.reset_peak()
base = memory.peak_rss_mib()
block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB touched
grown = memory.peak_rss_mib()
del block
memory.reset_peak()
assert grown - base > 60, (base, grown)
assert memory.peak_rss_mib() < grown - 30, (grown, memory.peak_rss_mib())
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_slow_precision_is_timed_within_the_probes_budget():
    """The machine probe's GEMM peak: a product of seconds (int8 without VNNI or AMX) is
    timed twice after its warm-up, not eight times; a fast one up to `repeats` times."""
    from bench.child import machine

    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.3)

    best = machine._best_seconds(slow, repeats=8, device="cpu", budget_s=0.5)
    assert len(calls) == 3 and 0.3 <= best < 1.0
    calls.clear()
    machine._best_seconds(lambda: calls.append(1), repeats=8, device="cpu", budget_s=0.5)
    assert len(calls) == 9
