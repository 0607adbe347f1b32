"""The measuring process: `python -m bench.worker JOB.json`.

The bench starts one fresh process per (model, backend), so neither another runtime's
thread pools nor another model's state can slow the one measured. For each model it loads the deployed file(s), times batch-1 latency, estimates energy
and reads its own peak memory, then (first process of a row only) predicts the test split
with every core, and prints one `@@RESULT {json}` line that the bench turns into a row.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

RESULT_PREFIX = "@@RESULT "


def _pin_threads(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


def main(job_path: str) -> int:
    with open(job_path) as fh:
        job = json.load(fh)
    threads = int(job["threads"])
    _pin_threads(threads)
    if job.get("kind") == "machine":
        return _machine(job, threads)
    import numpy as np

    from bench import backends
    from bench.backends import telemetry
    from bench.measure import energy, latency, memory

    telemetry.switch_off()

    if job["backend"] == "torch":
        import torch

        torch.set_num_interop_threads(1)
        torch.set_num_threads(threads)
    backend = backends.get(job["backend"])
    test = np.load(job["test_images"])
    val = np.load(job["val_images"]) if job.get("val_images") else None
    example = np.ascontiguousarray(test[:1])
    plan = latency.LatencyPlan(**job["latency"])
    energy_probe = energy.prepare_in_background()
    for item in job["items"]:
        started = time.perf_counter()
        out = {"model": item["model"]}
        try:
            per_model_peak = memory.reset_peak()
            rss_before = memory.rss_mib()
            predict = backend.load(item["files"], threads, job.get("device", "cpu"),
                                   item.get("options") or {})
            rss_loaded = memory.rss_mib()
            out["latency_cold_ms"] = latency.time_once(predict, example)
            energy_probe.join()
            latency.warm_up(predict, example, plan)
            window = energy.EnergyWindow(plan.min_s)
            with window:  # energy over exactly the timed loop
                samples = latency.timed_loop(predict, example, plan)
            np.save(item["samples_out"], np.asarray(samples, dtype=np.float64))
            out["latency_ms_p50"] = float(np.median(samples))  # the row's figures come from the samples
            out.update(window.result(len(samples), job.get("idle_w")))
            out["peak_rss_mib"] = memory.peak_rss_mib()
            out["peak_is_per_model"] = per_model_peak
            if rss_before is not None and rss_loaded is not None:
                out["load_rss_mib"] = rss_loaded - rss_before
            if item.get("predict", True):  # once per row: later repeats only time
                _predict_splits(backend, item, job, predict, example, test, val, threads)
        except Exception as exc:  # one model's failure must not lose the others
            out["error"] = f"{exc.__class__.__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
            out["traceback"] = traceback.format_exc(limit=5)
        out["seconds"] = time.perf_counter() - started
        print(RESULT_PREFIX + json.dumps(out), flush=True)
    return 0


def _machine(job: dict, threads: int) -> int:
    """Once per run: idle draw (for energy) and GEMM peaks (for peak_fraction)."""
    from bench.backends import telemetry
    from bench.measure import machine

    telemetry.switch_off()
    out = {"model": "machine"}
    try:
        out.update(machine.idle_power_w(float(job["idle_s"])))
    except Exception as exc:  # noqa: BLE001 - energy then goes without idle subtraction
        out["idle_error"] = f"{exc.__class__.__name__}: {exc}"
    out["gemm_peak_gmacs"] = machine.gemm_peak_gmacs(threads, job.get("device", "cpu"))
    print(RESULT_PREFIX + json.dumps(out), flush=True)
    return 0


def _predict_splits(backend, item: dict, job: dict, timed, example, test, val,
                    threads: int) -> None:
    """Predict the test (and validation) split after timing, so nothing of it can touch
    the timed loop, through the same file loaded again with `predict_threads` (every
    core: the split is untimed). The two loads must agree on the timed example."""
    import numpy as np

    fast_threads = max(threads, int(job.get("predict_threads") or threads))
    predict = timed
    if fast_threads != threads:
        predict = backend.load(item["files"], fast_threads, job.get("device", "cpu"),
                               item.get("options") or {})
        a, b = np.asarray(timed(example)), np.asarray(predict(example))
        if not np.allclose(a, b, rtol=1e-3, atol=1e-3):
            raise RuntimeError(f"the file loaded with {fast_threads} threads predicts differently "
                               f"from {threads} (max |diff| {np.abs(a - b).max():.2e})")
    np.save(item["logits_out"], _predict_all(predict, test))
    if val is not None:
        np.save(item["val_logits_out"], _predict_all(predict, val))


def _predict_all(predict, images, batch: int = 64):
    import numpy as np

    return np.concatenate([np.asarray(predict(np.ascontiguousarray(images[i:i + batch])))
                           for i in range(0, len(images), batch)]).astype(np.float32)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
