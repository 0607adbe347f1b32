"""Starting measuring processes: a job file, a process (forked from a server, or a new
interpreter), and its results file read back; and the once-per-run machine probe."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import replace
from importlib import metadata
from pathlib import Path

from bench import cache
from bench.backends import telemetry
from bench.child import forkserver, memory
from bench.child.forkserver import ChildExit
from bench.child.records import Job, ProcessResult, append_result, read_results

#: a machine probe is reused for this long on the same machine and settings
PROBE_MAX_AGE_S = 12 * 3600
IDLE_WINDOW_S = 2.0  # as long as a default timed loop
#: a new interpreter's start (Python, the runtime's import) before its first item's timeout
#: counts: a few seconds here, longer on a loaded machine
START_ALLOWANCE_S = 120.0


def measure_machine(threads: int, device: str, use_cache: bool, work: Path) -> dict:
    """Idle power draw (subtracted from energy) and GEMM peaks per precision: probed in a
    process of its own, and reused from the cache for PROBE_MAX_AGE_S on the same CPU,
    threads, device and torch (the manifest says when it was probed)."""
    job = {"kind": "machine", "threads": threads, "device": device, "idle_s": IDLE_WINDOW_S}
    key = cache.key({**job, "node": platform.node(), "cpu": platform.processor(),
                     "python": sys.version, "torch": _torch_version()})
    cached = cache.cache_dir() / "machine" / f"probe-{key}.json"
    if use_cache:
        probe = cache.read_or_rebuild(cached, _read_probe, "machine probe")
        if probe is not None and time.time() - probe["probed_at"] < PROBE_MAX_AGE_S:
            return {**probe, "cached": str(cached)}
    path, result = work / "job-machine.json", work / "machine.json"
    path.write_text(json.dumps({**job, "result_out": str(result)}))
    proc = subprocess.run([sys.executable, "-m", "bench.child.worker", str(path)],
                          env=worker_env(threads))
    try:
        probe = {**json.loads(result.read_text()), "probed_at": time.time()}
    except (OSError, ValueError):
        return {"error": f"machine probe exited with code {proc.returncode}"}
    if use_cache and "idle_error" not in probe:
        cached.parent.mkdir(parents=True, exist_ok=True)
        try:
            cache.atomic_write_bytes(cached, json.dumps(probe).encode())
        except OSError as exc:  # a full disk costs the cache, not the run
            sys.stderr.write(f"warning: {cached}: machine probe not cached ({exc})\n")
    return probe


def _read_probe(path: Path) -> dict:
    probe = json.loads(path.read_text())
    if not isinstance(probe, dict) or not isinstance(probe.get("probed_at"), (int, float)):
        raise ValueError("no probed_at time")
    return probe


def _torch_version() -> str:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return ""


def run_worker(job: Job, job_path: Path, server=None) -> list[ProcessResult]:
    """Run `job` in a measuring process; one result per item, in order.

    Normally one process per model: measured here, fp32 DenseNet-121 ran at 10.5 ms per
    inference in a fresh process but 17.3 ms in a process that had first run two
    MobileNetV2 models, so models sharing a process do not get equal conditions.
    --quick shares one process per backend to stay fast: a smoke test, not a measurement.
    With a `server` (bench.child.forkserver) the process is forked from it instead of started.

    A process that dies (a signal, an exit before reporting) or hangs (no result within
    the job's item timeout: killed) costs the item it was measuring, which gets a failed
    result saying so; the items after it are measured in a fresh process, so one bad
    model does not take the others of a shared process down. Only a process that exits
    with an error code before its first result (a broken job, not a model) fails every
    item left, since a fresh process would fail the same way.
    """
    out = Path(job.result_out)
    out.unlink(missing_ok=True)
    results: list[ProcessResult] = []
    pending = job
    while pending.items:
        pending.write(job_path)
        end, server = _run_process(pending, job_path, server)
        got = read_results(out)[len(results):][:len(pending.items)]
        results += got
        left = pending.items[len(got):]
        if end is None or not left:  # the server died: the rest in plain processes
            pending = replace(pending, items=left)
            continue
        systematic = not got and end.code > 0 and end.hung_s is None
        for item in left if systematic else left[:1]:
            failed = ProcessResult(model=item.model, error=describe_exit(end, item.model),
                                   peak_rss_mib=end.peak_rss_mib)
            append_result(out, failed)
            results.append(failed)
        pending = replace(pending, items=() if systematic else left[1:])
    return results


def _run_process(job: Job, job_path: Path, server) -> tuple[ChildExit | None, object]:
    """One process on the job file: forked from `server` where there is one, else a new
    interpreter; (how it ended, or None where the server died mid-job; the server to use
    next, None once it has died)."""
    if server is not None:
        try:
            end = server.run_job(str(job_path), job.item_timeout_s, job.result_out)
            for line in end.lines:  # what the child printed: passed on, never parsed
                sys.stderr.write(line + "\n")
            return end, server
        except (RuntimeError, OSError) as exc:  # the server died: a plain process instead
            sys.stderr.write(f"{exc}; measuring in a new process instead\n")
            return None, None
    proc = subprocess.Popen([sys.executable, "-m", "bench.child.worker", str(job_path)],
                            env=worker_env(job.threads))
    try:
        end = forkserver.supervise(proc.pid, job.result_out, job.item_timeout_s,
                                   start_s=START_ALLOWANCE_S)
    except BaseException:
        proc.returncode = -signal.SIGKILL  # supervise killed and reaped it
        raise
    proc.returncode = end.code  # reaped by supervise, not by Popen
    return end, None


def describe_exit(end: ChildExit, model: str) -> str:
    """The failed row's error for a process that ended without reporting `model`."""
    if end.hung_s is not None:
        return f"hung: no result within {end.hung_s:g} s; killed"
    if end.code >= 0:
        return f"crashed: exited with code {end.code} while measuring {model}"
    try:
        name = signal.Signals(-end.code).name
    except ValueError:
        name = f"signal {-end.code}"
    if -end.code != signal.SIGKILL:
        return f"crashed: killed by signal {name} ({-end.code}) while measuring {model}"
    # Nothing of the bench sends SIGKILL but the hang timeout (reported above); the
    # kernel's OOM killer does. Its log needs privileges, so the peak memory is the clue.
    total = memory.total_mib()
    peak = (f"; peak RSS {end.peak_rss_mib:.0f} MiB" if end.peak_rss_mib else "") + (
        f" of {total:.0f} MiB" if end.peak_rss_mib and total else "")
    return f"crashed: killed by SIGKILL (out of memory?) while measuring {model}{peak}"


def worker_env(threads: int) -> dict:
    """The measuring process's environment: pinned threads, no telemetry, no noise."""
    # c10's own deprecation notices bypass Python warnings; TORCH_CPP_LOG_LEVEL hides them.
    pinned = {var: str(threads) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                            "OPENBLAS_NUM_THREADS")}
    return telemetry.subprocess_env({**os.environ, **pinned,
                                     "PYTHONWARNINGS": "ignore", "TORCH_CPP_LOG_LEVEL": "ERROR"})
