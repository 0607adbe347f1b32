"""Measuring: fresh worker processes per (model, backend), repeated --repeats times,
and the rows they become.

Every row is measured in its own fresh process (see run_worker), and the R repeats are
interleaved (all rows once, then all rows again) so a slow drift of the machine spreads
over every row instead of landing on one. A row is written after each of its processes,
so a kill loses nothing measured. Quality and parity come from the first process's
predictions; later processes only time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.launch import run_worker, worker_env
from bench.progress import log
from bench.result import STATUS_FAILED, STATUS_OK, Result
from bench.store import RunStore, stem

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
    seconds: list = field(default_factory=list)  # wall time of each of its processes


@dataclass
class _Backend:
    """One backend's rows while they are measured."""

    name: str
    pending: list
    teacher: _Pending | None
    server: object = None  # bench.forkserver.Server, or None: plain processes

    @property
    def student(self) -> _Pending | None:
        return next((p for p in self.pending if p.row.model == "student"), None)


def measure_all(outcomes: dict, cfg, data, store: RunStore, paths: Paths, references: dict,
                machine: dict) -> None:
    """Measure every backend's rows (outcomes: backend -> [(row, worker item or None)],
    teacher first): a first pass per backend, then the adaptive pass across backends."""
    from bench import forkserver

    servers = {}
    try:
        session = []
        for name, rows in outcomes.items():  # each server starts right before its pass
            servers[name] = forkserver.start(name, worker_env(cfg.threads))
            session.append(_first_pass(name, rows, cfg, data, store, paths, references,
                                       machine, servers[name]))
        _adaptive_pass(session, cfg, data, store, paths, references, machine)
    finally:
        for server in servers.values():
            if server is not None:
                server.close()
    for b in session:  # the teacher's headline and noise floor are final now
        for p in b.pending:
            if p.item is not None:
                row = _compose(p, b.teacher, machine, cfg)
                store.add(row)
                if not p.failed:
                    _log_row(b.name, row)


def _first_pass(name: str, outcomes: list, cfg, data, store: RunStore, paths: Paths,
                references: dict, machine: dict, server=None) -> _Backend:
    """Every row in `cfg.repeats` interleaved rounds of fresh processes; the teacher in at
    least two (its disagreement is the backend's noise floor), one before the other rows
    and one after them, so the pair brackets the pass."""
    pending = [_Pending(row, item) for row, item in outcomes]
    for p in pending:
        if p.item is not None and paths.val is None:
            p.item.pop("val_logits_out", None)  # no operating point to choose on validation
    runnable = sum(p.item is not None for p in pending)
    log(f"{name}: measuring {runnable} models ("
        + ("one shared process: --quick" if cfg.shared_process else "a fresh process each")
        + f", {cfg.threads} thread{'s' if cfg.threads > 1 else ''}"
        + (f", {cfg.repeats} rounds" if cfg.repeats > 1 else "") + ")")
    for p in pending:
        if p.item is None:
            store.add(p.row)
    backend = _Backend(name, pending, next((p for p in pending if p.row.model == "teacher"), None),
                       server)
    for _ in range(cfg.repeats):
        live = [p for p in pending if p.item is not None and not p.failed]
        _run_group(backend, live, cfg, data, store, paths, references, machine)
    t = backend.teacher
    if (not cfg.shared_process and t is not None and t.item is not None and not t.failed
            and len(t.processes) < 2):
        _run_group(backend, [t], cfg, data, store, paths, references, machine)
    return backend


def _adaptive_pass(session: list, cfg, data, store, paths, references, machine) -> None:
    """Time goes where the noise is: rows whose latency is not yet stable, and their
    backend's teacher (every speedup divides by its median; up to three processes, more
    only if it is unstable itself), get further fresh processes while cfg.retime_budget_s
    lasts, up to cfg.max_repeats processes per row."""
    if cfg.shared_process or cfg.retime_budget_s <= 0:
        return
    deadline = time.perf_counter() + cfg.retime_budget_s
    spent_on = 0
    while True:
        todo = [(b, [p for p in b.pending if _needs_more(p, cfg)]) for b in session]
        todo = [(b, rows) for b, rows in todo if rows]
        if not todo:
            break
        progressed = False
        for b, rows in todo:
            t = b.teacher  # every speedup divides by its median: a median of three at least
            if t is not None and t not in rows and _usable(t) and len(t.processes) < 3:
                rows = [t] + rows
            rows = [p for p in rows if time.perf_counter() + _cost(p) <= deadline]
            if not rows:
                continue
            if not spent_on:
                log(f"re-timing rows that are not yet stable ({cfg.retime_budget_s:.0f} s budget)")
            spent_on += len(rows)
            log(f"{b.name}: re-timing " + ", ".join(
                f"{p.row.model} (process {len(p.processes) + 1})" for p in rows))
            _run_group(b, rows, cfg, data, store, paths, references, machine)
            progressed = True
        if not progressed:
            break
    if spent_on:
        left = [f"{b.name}/{p.row.model}" for b in session for p in b.pending if _needs_more(p, cfg)]
        log(f"re-timing done: {spent_on} more processes"
            + (f"; still unstable: {', '.join(left)}" if left else ""))


def _usable(p: _Pending) -> bool:
    return p.item is not None and not p.failed and p.latency is not None


def _needs_more(p: _Pending, cfg) -> bool:
    return _usable(p) and p.latency["unstable"] and len(p.processes) < cfg.max_repeats


def _cost(p: _Pending) -> float:
    """Wall seconds a further process of this row will take: as its cheapest one did (the
    first also predicted the test split)."""
    return min(p.seconds) if p.seconds else 0.0


def _run_group(backend: _Backend, rows: list, cfg, data, store, paths, references, machine) -> None:
    """One fresh process per row (or one shared process with --quick), in order."""
    for group in ([rows] if cfg.shared_process else [[p] for p in rows]):
        items = [{**p.item, "predict": p.probs is None,
                  "samples_out": str(paths.work / f"{stem(p.row.model, backend.name, p.item['variant'])}"
                                                  f".r{len(p.processes)}.npy")}
                 for p in group]
        started = time.perf_counter()
        results = run_worker(backend.name, cfg.threads, cfg.device, cfg.latency, paths, items,
                             machine.get("idle_w"), server=backend.server,
                             # --quick: one load per model (a second costs more than it saves)
                             predict_threads=None if cfg.shared_process else cfg.train_threads)
        wall = (time.perf_counter() - started) / len(group)
        for p, item, res in zip(group, items, results, strict=True):
            p.seconds.append(wall)
            _take(p, item, res, cfg, data, store, references, backend.teacher, backend.student)
            row = _compose(p, backend.teacher, machine, cfg)
            store.add(row)
            if p.failed:
                _log_row(backend.name, row)


def _take(p: _Pending, item: dict, res: dict, cfg, data, store, references, teacher,
          student=None) -> None:
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
    if item.get("predict"):
        _quality(p, cfg, data, store, references[p.row.model], teacher)
        _against_student(p, cfg, data, student)


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


def _against_student(p: _Pending, cfg, data, student: _Pending | None) -> None:
    """A row of the student's architecture (kd, kd+...) against the undistilled student on
    the same backend and test cases: what distillation itself bought."""
    from bench.stats import quality

    if (student is None or p is student or student.probs is None or p.probs is None
            or p.row.arch != student.row.arch or p.failed):
        return
    task = data.task
    q = quality.quality_row(task, data.test.labels, task.scores(p.probs),
                            teacher_probs=task.scores(student.probs), groups=data.test.groups,
                            margin=cfg.margin, n_boot=cfg.n_boot, seed=cfg.seed)
    p.row = p.row.with_(delta_auc_vs_student=q["delta_auc"],
                        delta_auc_vs_student_ci_low=q["delta_auc_ci_low"],
                        delta_auc_vs_student_ci_high=q["delta_auc_ci_high"],
                        delong_p_vs_student=q["delong_p"])


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
    return _relative_to_teacher(row, p, teacher, cfg)


_LATENCY_COLUMNS = ("latency_ms_p50", "latency_ms_ci_low", "latency_ms_ci_high", "latency_ms_p90",
                    "latency_ms_p99", "latency_ms_mean", "latency_ms_std", "latency_ms_iqr",
                    "latency_ms_min", "latency_ms_max", "latency_n", "latency_cv",
                    "throughput_per_s")


def _median(values):
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def _relative_to_teacher(row: Result, p: _Pending, teacher: _Pending | None, cfg) -> Result:
    """compression_ratio, speedup with its interval, and the noise floor, against the
    teacher's fp32 row on the same backend (see bench.stats.latency)."""
    from bench.stats.latency import speedup_interval

    if teacher is None or teacher.latency is None or teacher.failed:
        return row
    t_file = teacher.row.file_mib
    t_p50 = teacher.latency["latency_ms_p50"]
    floor = teacher.latency["noise_floor"]
    ratio = t_file / row.file_mib if row.file_mib and t_file else None
    speed = t_p50 / row.latency_ms_p50 if row.latency_ms_p50 else None
    low = high = None
    if speed is not None and p is not teacher and cfg.n_boot > 0:
        low, high = speedup_interval(teacher.processes, p.processes, floor,
                                     n_boot=cfg.n_boot, seed=cfg.seed)
    return row.with_(compression_ratio=ratio, speedup=speed, speedup_ci_low=low,
                     speedup_ci_high=high, noise_floor=floor)


def _log_row(backend: str, row: Result) -> None:
    def fmt(v, digits=2):
        return "-" if v is None else f"{v:.{digits}f}"

    log(f"{backend}: {row.model} {row.precision}: p50 {fmt(row.latency_ms_p50)} ms, "
        f"AUC {fmt(row.auc_roc, 3)}" + ("" if row.ok else f", {row.status.upper()}: {row.error}"))
