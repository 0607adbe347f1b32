"""Measuring: fresh worker processes per (model, backend), repeated --repeats times,
and the rows they become.

Every row is measured in its own fresh process (see run_worker), and the R repeats are
interleaved (all rows once, then all rows again) so a slow drift of the machine spreads
over every row instead of landing on one. A row is written after each of its processes,
so a kill loses nothing measured. Quality and parity come from the first process's
predictions; later processes only time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.progress import log
from bench.result import STATUS_FAILED, STATUS_OK, Result
from bench.store import RunStore, stem
from bench.worker import RESULT_PREFIX

PARITY_BATCH = 64
#: fp32 rows whose probabilities differ from PyTorch fp32 by more than this fail (the
#: fp32 exports measured here agree within 1e-5; lower precisions report, never fail).
PARITY_TOLERANCE_FP32 = 1e-3


@dataclass
class Paths:
    """Inputs the worker processes read, written once per run."""

    test: Path
    val: Path | None  # only when the operating point is chosen on validation data
    work: Path


@dataclass
class _Pending:
    """One row while its processes come in."""

    row: Result  # static figures, then parity and quality once predictions are in
    item: dict | None  # what the worker runs; None: nothing to run (n/a, failed export)
    processes: list = field(default_factory=list)  # raw samples (ms) per process
    results: list = field(default_factory=list)  # the worker's report per process
    latency: dict | None = None  # bench.stats.latency.latency_row over `processes`
    probs: np.ndarray | None = None
    val_probs: np.ndarray | None = None
    failed: bool = False


def measure_machine(cfg, work: Path) -> dict:
    """Idle power draw (subtracted from energy) and GEMM peaks per precision, once per run."""
    job = {"kind": "machine", "threads": cfg.threads, "device": cfg.device,
           "idle_s": cfg.latency.min_s}
    path = work / "job-machine.json"
    path.write_text(json.dumps(job))
    proc = subprocess.run([sys.executable, "-m", "bench.worker", str(path)], stdout=subprocess.PIPE,
                          text=True, env=worker_env(cfg.threads))
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    return {"error": f"machine probe exited with code {proc.returncode}"}


def measure_backend(name: str, outcomes: list, cfg, data, store: RunStore, paths: Paths,
                    references: dict, machine: dict) -> None:
    """Measure one backend's rows (outcomes: [(row, worker item or None)], teacher first)."""
    pending = [_Pending(row, item) for row, item in outcomes]
    for p in pending:
        if p.item is not None and paths.val is None:
            p.item.pop("val_logits_out", None)  # no operating point to choose on validation
    runnable = sum(p.item is not None for p in pending)
    log(f"{name}: measuring {runnable} models ("
        + ("one shared process: --quick" if cfg.shared_process else "a fresh process each")
        + f", {cfg.threads} threads" + (f", {cfg.repeats} rounds" if cfg.repeats > 1 else "") + ")")
    for p in pending:
        if p.item is None:
            store.add(p.row)
    teacher = next((p for p in pending if p.row.model == "teacher"), None)
    for rnd in range(cfg.repeats):
        live = [p for p in pending if p.item is not None and not p.failed]
        for group in ([live] if cfg.shared_process else [[p] for p in live]):
            items = [{**p.item, "predict": rnd == 0,
                      "samples_out": str(paths.work / f"{stem(p.row.model, name, p.item['variant'])}.r{rnd}.npy")}
                     for p in group]
            results = run_worker(name, cfg.threads, cfg.device, cfg.latency, paths, items,
                                 machine.get("idle_w"))
            for p, item, res in zip(group, items, results, strict=True):
                _take(p, item, res, rnd, cfg, data, store, references, teacher)
                store.add(_compose(p, teacher, machine, cfg))
                if rnd == cfg.repeats - 1 or p.failed:
                    _log_row(name, store.rows[-1])
        if rnd < cfg.repeats - 1:
            for p in pending:  # the teacher's headline moved: every speedup with it
                if p.item is not None:
                    store.add(_compose(p, teacher, machine, cfg))


def _take(p: _Pending, item: dict, res: dict, rnd: int, cfg, data, store, references, teacher) -> None:
    """Fold one process's report into the row; the first one also brings predictions."""
    if "error" in res:
        p.failed = True
        p.row = p.row.with_(status=STATUS_FAILED, error=res["error"])
        return
    from bench.stats.latency import latency_row

    p.processes.append(np.load(item["samples_out"]))
    p.results.append(res)
    p.latency = latency_row(p.processes, n_boot=cfg.n_boot, seed=cfg.seed)  # once per process
    store.save_samples(p.row.model, p.row.backend, p.item["variant"], p.processes)
    if rnd == 0:
        _quality(p, cfg, data, store, references[p.row.model], teacher)


def _quality(p: _Pending, cfg, data, store, reference: np.ndarray, teacher) -> None:
    """Parity against PyTorch fp32, then every quality column from the saved predictions."""
    import torch

    from bench.stats import quality

    task = data.task
    logits = np.load(p.item["logits_out"])
    p.probs = task.probabilities(torch.from_numpy(logits)).numpy()
    if p.item.get("val_logits_out"):
        p.val_probs = task.probabilities(torch.from_numpy(np.load(p.item["val_logits_out"]))).numpy()
    # Parity on probabilities, not logits: softmax ignores a shift common to all logits,
    # and the teacher's logits carry one of about +-50 that NNCF's int8 model drops (labels
    # still agreed on 99.75% of the test split), which a raw-logit difference reports as ~40.
    got = p.probs[:PARITY_BATCH]
    ref = task.probabilities(torch.from_numpy(reference)).numpy()
    diff = float(np.abs(got - ref).max())
    agree = float((task.predicted_labels(got) == task.predicted_labels(ref)).mean())
    row = p.row.with_(parity_max_abs=diff, parity_agree=agree)
    store.save_predictions(row.model, row.backend, data.test.labels, task.scores(p.probs), logits,
                           p.item["variant"])
    is_teacher = teacher is p
    ref_probs = p.probs if is_teacher else (teacher.probs if teacher is not None else None)
    ref_val = p.val_probs if is_teacher else (teacher.val_probs if teacher is not None else None)
    q = quality.quality_row(
        task, data.test.labels, task.scores(p.probs),
        teacher_probs=None if ref_probs is None else task.scores(ref_probs),
        val_true=data.val.labels if p.val_probs is not None else None,
        val_probs=None if p.val_probs is None else task.scores(p.val_probs),
        teacher_val_probs=None if ref_val is None else task.scores(ref_val),
        groups=data.test.groups, margin=cfg.margin,
        operating_point=cfg.operating_point, n_boot=cfg.n_boot, seed=cfg.seed)
    columns = {k: q[k] for k in quality.COLUMNS}
    columns["verdict"] = columns["verdict"] or ""
    notes = [row.notes] if row.notes else []
    notes += q["reasons"]
    if ref_probs is None:
        notes.append("no comparison with the teacher: its row on this backend has no predictions")
    status, error = STATUS_OK + (";quick" if cfg.quick else ""), ""
    if row.precision == "fp32" and diff > PARITY_TOLERANCE_FP32:
        status = STATUS_FAILED
        error = (f"parity: probabilities differ from PyTorch fp32 by {diff:.2e} > "
                 f"{PARITY_TOLERANCE_FP32:g}: a broken export, not a result")
        p.failed = True
    p.row = row.with_(status=status, error=error, notes="; ".join(notes), **columns)


def _compose(p: _Pending, teacher: _Pending | None, machine: dict, cfg) -> Result:
    """The row as it stands: quality (once) plus latency over the processes so far."""
    row, lat = p.row, p.latency
    if lat is None:
        return row
    fields = {k: lat.get(k) for k in _LATENCY_COLUMNS}
    fields["latency_repeats"] = lat["latency_processes"]
    fields["latency_cold_ms"] = _median([r.get("latency_cold_ms") for r in p.results])
    fields["energy_mj_per_inference"] = _median([r.get("energy_mj_per_inference") for r in p.results])
    fields["peak_rss_mib"] = max(r.get("peak_rss_mib") or 0 for r in p.results) or None
    fields["load_rss_mib"] = _median([r.get("load_rss_mib") for r in p.results])
    row = row.with_(energy_source=p.results[0].get("energy_source", ""), **fields)
    p50 = row.latency_ms_p50
    if row.macs and p50:
        gmacs = row.macs / (p50 / 1e3) / 1e9
        peak = (machine.get("gemm_peak_gmacs") or {}).get(row.precision)
        row = row.with_(gmacs_per_s=gmacs, peak_fraction=gmacs / peak if peak else None)
    if lat["unstable"] and row.ok:
        row = row.with_(status=row.status + ";unstable",
                        notes="; ".join(filter(None, [row.notes, "unstable: " + "; ".join(lat["unstable_reasons"])])))
    if lat["latency_notes"]:
        row = row.with_(notes="; ".join(filter(None, [row.notes, *lat["latency_notes"]])))
    return _relative_to_teacher(row, teacher)


_LATENCY_COLUMNS = ("latency_ms_p50", "latency_ms_ci_low", "latency_ms_ci_high", "latency_ms_p90",
                    "latency_ms_p99", "latency_ms_mean", "latency_ms_std", "latency_ms_iqr",
                    "latency_ms_min", "latency_ms_max", "latency_n", "latency_cv",
                    "throughput_per_s")


def _median(values):
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def _relative_to_teacher(row: Result, teacher: _Pending | None) -> Result:
    """compression_ratio and speedup against the teacher's fp32 row on the same backend."""
    if teacher is None or teacher.latency is None or teacher.failed:
        return row
    t_file = teacher.row.file_mib
    t_p50 = teacher.latency["latency_ms_p50"]
    ratio = t_file / row.file_mib if row.file_mib and t_file else None
    speed = t_p50 / row.latency_ms_p50 if row.latency_ms_p50 else None
    return row.with_(compression_ratio=ratio, speedup=speed)


def _log_row(backend: str, row: Result) -> None:
    def fmt(v, digits=2):
        return "-" if v is None else f"{v:.{digits}f}"

    log(f"{backend}: {row.model} {row.precision}: p50 {fmt(row.latency_ms_p50)} ms, "
        f"AUC {fmt(row.auc_roc, 3)}" + ("" if row.ok else f", {row.status.upper()}: {row.error}"))


def run_worker(backend: str, threads: int, device: str, plan, paths: Paths, items: list[dict],
               idle_w: float | None = None) -> list[dict]:
    """Measure models in a fresh process; returns one result per item, in order.

    Normally one process per model: measured here, fp32 DenseNet-121 ran at 10.5 ms per
    inference in a fresh process but 17.3 ms in a process that had first run two
    MobileNetV2 models, so models sharing a process do not get equal conditions.
    --quick shares one process per backend to stay fast: a smoke test, not a measurement.
    """
    job = {"backend": backend, "threads": threads, "device": device,
           "test_images": str(paths.test), "val_images": str(paths.val) if paths.val else None,
           "latency": plan.__dict__, "idle_w": idle_w,
           "items": items}
    job_path = paths.work / f"job-{backend}.json"
    job_path.write_text(json.dumps(job))
    proc = subprocess.run([sys.executable, "-m", "bench.worker", str(job_path)],
                          stdout=subprocess.PIPE, text=True, env=worker_env(threads))
    results = []
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            results.append(json.loads(line[len(RESULT_PREFIX):]))
        else:
            sys.stderr.write(line + "\n")
    for item in items[len(results):]:
        results.append({"model": item["model"], "error": f"measuring process exited with code "
                                                         f"{proc.returncode} before reporting"})
    return results


def worker_env(threads: int) -> dict:
    """The measuring process's environment: pinned threads, no telemetry, no noise."""
    from bench.backends import telemetry

    # c10's own deprecation notices bypass Python warnings; TORCH_CPP_LOG_LEVEL hides them.
    return telemetry.subprocess_env({**os.environ, "OMP_NUM_THREADS": str(threads),
                                     "PYTHONWARNINGS": "ignore", "TORCH_CPP_LOG_LEVEL": "ERROR"})
