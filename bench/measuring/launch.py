"""Starting measuring processes: a job file, a process (forked from a server, or a new
interpreter), and its results file read back; and the once-per-run machine probe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.measuring.records import Job, ProcessResult, read_results

#: a machine probe is reused for this long on the same machine and settings
PROBE_MAX_AGE_S = 12 * 3600
IDLE_WINDOW_S = 2.0  # as long as a default timed loop


def measure_machine(threads: int, device: str, use_cache: bool, work: Path) -> dict:
    """Idle power draw (subtracted from energy) and GEMM peaks per precision: probed in a
    process of its own, and reused from the cache for PROBE_MAX_AGE_S on the same CPU,
    threads, device and torch (the manifest says when it was probed)."""
    import platform

    from bench import cache

    job = {"kind": "machine", "threads": threads, "device": device, "idle_s": IDLE_WINDOW_S}
    key = cache.key({**job, "node": platform.node(), "cpu": platform.processor(),
                     "python": sys.version, "torch": _torch_version()})
    cached = cache.cache_dir() / "machine" / f"probe-{key}.json"
    if use_cache and cached.exists():
        try:
            probe = json.loads(cached.read_text())
            if time.time() - probe["probed_at"] < PROBE_MAX_AGE_S:
                return {**probe, "cached": str(cached)}
        except (OSError, ValueError, KeyError, TypeError):
            pass
    path, result = work / "job-machine.json", work / "machine.json"
    path.write_text(json.dumps({**job, "result_out": str(result)}))
    proc = subprocess.run([sys.executable, "-m", "bench.worker", str(path)],
                          env=worker_env(threads))
    try:
        probe = {**json.loads(result.read_text()), "probed_at": time.time()}
    except (OSError, ValueError):
        return {"error": f"machine probe exited with code {proc.returncode}"}
    if use_cache and "idle_error" not in probe:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cache.atomic_write_bytes(cached, json.dumps(probe).encode())
    return probe


def _torch_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return ""


def run_worker(job: Job, job_path: Path, server=None) -> list[ProcessResult]:
    """Run one measuring process on `job`; one result per item, in order.

    Normally one process per model: measured here, fp32 DenseNet-121 ran at 10.5 ms per
    inference in a fresh process but 17.3 ms in a process that had first run two
    MobileNetV2 models, so models sharing a process do not get equal conditions.
    --quick shares one process per backend to stay fast: a smoke test, not a measurement.
    With a `server` (bench.forkserver) the process is forked from it instead of started.
    """
    Path(job.result_out).unlink(missing_ok=True)
    job.write(job_path)
    code = None
    if server is not None:
        try:
            lines, code = server.run(str(job_path))
            for line in lines:  # what the child printed: passed on, never parsed
                sys.stderr.write(line + "\n")
        except (RuntimeError, OSError) as exc:  # the server died: a plain process instead
            sys.stderr.write(f"{exc}; measuring in a new process instead\n")
            code = None
    if code is None:
        code = subprocess.run([sys.executable, "-m", "bench.worker", str(job_path)],
                              env=worker_env(job.threads)).returncode
    results = read_results(Path(job.result_out))[:len(job.items)]
    for item in job.items[len(results):]:
        results.append(ProcessResult(model=item.model, error=f"measuring process exited with "
                                                             f"code {code} before reporting"))
    return results


def worker_env(threads: int) -> dict:
    """The measuring process's environment: pinned threads, no telemetry, no noise."""
    from bench.backends import telemetry

    # c10's own deprecation notices bypass Python warnings; TORCH_CPP_LOG_LEVEL hides them.
    pinned = {var: str(threads) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                            "OPENBLAS_NUM_THREADS")}
    return telemetry.subprocess_env({**os.environ, **pinned,
                                     "PYTHONWARNINGS": "ignore", "TORCH_CPP_LOG_LEVEL": "ERROR"})
