"""Batch-1 latency: cold start timed apart, warm-up discarded, then a timed loop that
runs until both a minimum count and a minimum time are reached. Raw samples are kept."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyPlan:
    """Per measuring process. The default floor: 0.5 s of warm-up (at least 10 calls), then
    2 s of timing (at least 100 calls); noise between processes is handled by more
    processes where needed (bench.measuring), not by longer loops."""

    warmup_n: int = 10
    warmup_s: float = 0.5
    min_n: int = 100
    min_s: float = 2.0
    max_s: float = 30.0  # a very slow model stops here, with whatever count it reached


def measure(predict: Callable[[np.ndarray], object], example: np.ndarray, plan: LatencyPlan,
            timed_window: AbstractContextManager | None = None,
            check_first: Callable[[object], None] | None = None) -> dict:
    """Time `predict(example)`: the cold call, the warm-up (discarded), then the timed loop,
    inside `timed_window` where one is given (the worker's energy window, so energy
    covers exactly the timed calls). Returns cold_ms and the raw warm samples in ms.

    `check_first` sees the cold call's output, untimed, before any warm-up: raising there
    stops a model whose outputs are broken (the worker's non-finite check) before it is
    timed, without an extra call that would make the cold call a warm one."""
    t = time.perf_counter()
    first = predict(example)
    cold_ms = (time.perf_counter() - t) * 1e3
    if check_first is not None:
        check_first(first)
    warm_up(predict, example, plan)
    with timed_window if timed_window is not None else nullcontext():
        samples = timed_loop(predict, example, plan)
    return {"cold_ms": cold_ms, "samples_ms": samples}


def time_once(predict, example) -> float:
    """Milliseconds of one call: the cold start when it is the first after loading."""
    t = time.perf_counter()
    predict(example)
    return (time.perf_counter() - t) * 1e3


def warm_up(predict, example, plan: LatencyPlan) -> None:
    """Discarded calls until both warmup_n and warmup_s are reached."""
    start, n = time.perf_counter(), 0
    while n < plan.warmup_n or time.perf_counter() - start < plan.warmup_s:
        predict(example)
        n += 1


def timed_loop(predict, example, plan: LatencyPlan) -> list[float]:
    """Raw per-call milliseconds until both min_n and min_s are reached (or max_s)."""
    clock = time.perf_counter
    samples = []
    start = clock()
    while True:
        t = clock()
        predict(example)
        done = clock()
        samples.append((done - t) * 1e3)
        elapsed = done - start
        if (len(samples) >= plan.min_n and elapsed >= plan.min_s) or elapsed >= plan.max_s:
            break
    return samples
