"""The measuring process: `python -m bench.child.worker JOB.json` (or forked by bench.child.forkserver).

The bench starts one fresh process per (model, backend), so neither another runtime's
thread pools nor another model's state can slow the one measured. For each model of its
Job it loads the deployed file(s), times batch-1 latency with bench.child.timed_loop
(energy over exactly the timed loop, peak memory), then (where the item asks) predicts
the test split with every core, and appends one ProcessResult line to the job's
`result_out` file. A failure of one model is that model's result, not the process's end:
an exception (MemoryError: "out of memory: ..."), or outputs that are not finite (NaN or
inf on the timed example right after load, or on a predicted split: such a model has no
latency or quality worth reporting). A process that dies or hangs is reported by the bench
(bench.measuring.launch), which measures the items after it in a fresh process.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from bench import backends
from bench.backends import telemetry
from bench.child import energy, machine, memory, timed_loop
from bench.child.records import Job, ProcessResult
from bench.inputs import first_line


def _pin_threads(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


class NonFiniteOutputs(ValueError):
    """A model's outputs hold NaN or inf: its row fails with this message."""


def check_finite(outputs, where: str) -> None:
    """Raise NonFiniteOutputs, counting the values, where `outputs` hold NaN or inf."""
    values = np.asarray(outputs)
    if values.dtype.kind not in "fc":
        return
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise NonFiniteOutputs(f"non-finite outputs: {bad} of {values.size} values are "
                               f"NaN/inf ({where})")


def describe_error(exc: BaseException) -> str:
    """A failed item's error in one line: out of memory said as such, whichever layer
    raised it (Python's MemoryError, a runtime's bad_alloc or allocation failure)."""
    text = str(exc).strip().splitlines()
    first = text[0][:300] if text else ""
    if isinstance(exc, NonFiniteOutputs):
        return first
    if isinstance(exc, MemoryError) or any(
            s in first.lower() for s in ("bad_alloc", "out of memory", "failed to allocate memory")):
        return f"out of memory: {first or exc.__class__.__name__}"
    return first_line(exc)


def main(job_path: str) -> int:
    # A segfault or abort in a runtime prints the Python stack (to the user's stderr)
    # before the process dies of the signal; the bench reports the signal as the error.
    faulthandler.enable()
    doc = json.loads(Path(job_path).read_text())
    _pin_threads(int(doc["threads"]))
    if doc.get("kind") == "machine":
        return _machine(doc)
    job = Job.read(Path(job_path))
    telemetry.switch_off()
    if backends.BACKENDS.get(job.backend).runtime == "torch":
        import torch

        torch.set_num_interop_threads(1)
        torch.set_num_threads(job.threads)
    backend = backends.get(job.backend)
    test = np.load(job.test_images)
    val = np.load(job.val_images) if job.val_images else None
    example = np.ascontiguousarray(test[:1])
    energy_probe = energy.prepare_in_background()
    with open(job.result_out, "a") as out:
        # Ready: the bench's per-item timeout counts from this touch, then from each result.
        os.utime(job.result_out)
        for item in job.items:
            result = _measure_one(backend, job, item, example, test, val, energy_probe)
            out.write(result.to_line() + "\n")
            out.flush()
    return 0


def _measure_one(backend, job, item, example, test, val, energy_probe):
    started = time.perf_counter()
    try:
        memory.reset_peak()  # per model where the OS allows (else the process peak)
        rss_before = memory.rss_mib()
        predict = backend.load(list(item.files), job.threads, job.device, dict(item.options))
        rss_loaded = memory.rss_mib()
        energy_probe.join()  # codecarbon's hardware probe: done before anything is timed
        window = energy.EnergyWindow(job.plan.min_s)
        timing = timed_loop.measure(predict, example, job.plan, timed_window=window,
                                 check_first=lambda out: check_finite(out, "the timed example"))
        np.save(item.samples_out, np.asarray(timing["samples_ms"], dtype=np.float64))
        figures = window.result(len(timing["samples_ms"]), job.idle_w)
        logits = val_logits = None
        if item.predicts:  # once per row: later processes only time
            logits, val_logits = _predict_splits(backend, job, item, predict, example, test, val)
        return ProcessResult(
            model=item.model, samples_path=item.samples_out, latency_cold_ms=timing["cold_ms"],
            energy_mj_per_inference=figures.pop("energy_mj_per_inference"),
            energy_source=figures.pop("energy_source"), energy=figures,
            peak_rss_mib=memory.peak_rss_mib(),
            load_rss_mib=(rss_loaded - rss_before
                          if rss_before is not None and rss_loaded is not None else None),
            seconds=time.perf_counter() - started, logits_path=logits, val_logits_path=val_logits)
    except Exception as exc:  # one model's failure must not lose the others
        return ProcessResult(model=item.model, error=describe_error(exc),
                             traceback=traceback.format_exc(limit=5),
                             seconds=time.perf_counter() - started)


def _predict_splits(backend, job, item, timed, example, test, val):
    """Predict the test (and validation) split after timing, so nothing of it can touch
    the timed loop, through the same file loaded again with `predict_threads` (every
    core: the split is untimed). The two loads must agree on the timed example."""
    fast_threads = max(job.threads, job.predict_threads or job.threads)
    predict = timed
    if fast_threads != job.threads and backend.split_threads:
        predict = backend.load(list(item.files), fast_threads, job.device, dict(item.options))
        a, b = np.asarray(timed(example)), np.asarray(predict(example))
        if not np.allclose(a, b, rtol=1e-3, atol=1e-3):
            raise RuntimeError(f"the file loaded with {fast_threads} threads predicts differently "
                               f"from {job.threads} (max |diff| {np.abs(a - b).max():.2e})")
    np.save(item.logits_out, _predict_all(predict, test, "the test split"))
    if val is not None and item.val_logits_out:
        np.save(item.val_logits_out, _predict_all(predict, val, "the validation split"))
        return item.logits_out, item.val_logits_out
    return item.logits_out, None


def _predict_all(predict, images, where: str, batch: int = 64):
    logits = np.concatenate([np.asarray(predict(np.ascontiguousarray(images[i:i + batch])))
                             for i in range(0, len(images), batch)]).astype(np.float32)
    check_finite(logits, where)  # after the cast: a value beyond float32's range is inf too
    return logits


def _machine(job: dict) -> int:
    """Once per run: idle draw (for energy) and GEMM peaks (for peak_fraction)."""
    telemetry.switch_off()
    out = {"model": "machine"}
    try:
        out.update(machine.idle_power_w(float(job["idle_s"])))
    except Exception as exc:  # noqa: BLE001 - energy then goes without idle subtraction
        out["idle_error"] = f"{exc.__class__.__name__}: {exc}"
    out["gemm_peak_gmacs"] = machine.gemm_peak_gmacs(int(job["threads"]), job.get("device", "cpu"))
    Path(job["result_out"]).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
