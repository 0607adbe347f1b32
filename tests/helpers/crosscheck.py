"""Cross-check the bench's latency loop against OpenVINO's own `benchmark_app`.

Both measure the same IR at batch 1, one stream, the same threads and f32 inference;
if their medians disagree, the bench's loop (not the model) is suspect.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.backends import telemetry
from bench.child.timed_loop import LatencyPlan


def benchmark_app_median(xml: Path, threads: int, image_size: int, seconds: float = 5.0) -> float:
    """Median latency (ms) that benchmark_app reports for `xml`."""
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).parent / "benchmark_app")
    cmd = [exe, "-m", str(xml), "-d", "CPU", "-hint", "none", "-nstreams", "1", "-nireq", "1",
           "-nthreads", str(threads), "-api", "sync", "-b", "1",
           "-shape", f"[1,3,{image_size},{image_size}]", "-infer_precision", "f32",
           "-t", str(int(seconds))]
    out = subprocess.run(cmd, capture_output=True, text=True, env=telemetry.subprocess_env(),
                         timeout=seconds * 10 + 60)
    match = re.search(r"Median:\s+([\d.]+)\s*ms", out.stdout)
    if out.returncode != 0 or not match:
        raise RuntimeError(f"benchmark_app failed ({out.returncode}): {(out.stdout + out.stderr)[-500:]}")
    return float(match.group(1))


def bench_median(files: list[Path], threads: int, image_size: int, seconds: float = 5.0) -> float:
    """Median latency (ms) of the bench's own worker on the same OpenVINO files."""
    from bench.child.records import Job, JobItem
    from bench.measuring.launch import run_worker

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.save(tmp / "x.npy", np.random.default_rng(0).standard_normal(
            (8, 3, image_size, image_size)).astype(np.float32))
        plan = LatencyPlan(warmup_n=10, warmup_s=1.0, min_n=200, min_s=seconds, max_s=seconds * 4)
        item = JobItem(model="m", variant="", files=tuple(str(f) for f in files),
                       samples_out=str(tmp / "s.npy"), options=(("inference_precision", "f32"),))
        job = Job(backend="openvino", threads=threads, device="cpu", plan=plan,
                  test_images=str(tmp / "x.npy"), result_out=str(tmp / "r.jsonl"), items=(item,))
        res = run_worker(job, tmp / "job.json")[0]
        if not res.ok:
            raise RuntimeError(f"bench worker: {res.error}")
        return float(np.median(res.samples()))
