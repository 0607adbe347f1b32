"""One round of fresh measuring processes: the job file for some rows of a backend, the
station running it, and each process's result folded into its row, which is stored and
kept (bench.measuring.kept_rows) before the next process starts, so a kill loses nothing
measured."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from bench.child.records import Job, JobItem, ProcessResult
from bench.measuring import kept_rows
from bench.measuring.rows import RowState, against_student, quality_of
from bench.measuring.session import Session
from bench.progress import log
from bench.results.row import Result
from bench.results.store import stem
from bench.stats.latency import latency_row


def run_group(s: Session, backend: str, keys: list) -> None:
    """One fresh process per row (or one shared process with --quick), in order."""
    m = s.cfg.measurement
    for group in ([keys] if m.shared_process else [[k] for k in keys]):
        states = [s.states[backend][k] for k in group]
        job = job_of(s, backend, states)
        results = s.station.run(job, s.paths.work / f"job-{backend}.json", backend)
        for key, result in zip(group, results, strict=True):
            with s.lock:
                state = fold(s, backend, s.states[backend][key], result)
                s.states[backend][key] = state
                row = s.row(backend, state)
                s.store.add(row)
            if state.error is not None:
                log_row(backend, row)
            elif result.ok:
                log(f"{backend}: {state.model} measured (process {len(state.processes)}, "
                    f"median {np.median(state.arrays[-1]):.2f} ms)")


def job_of(s: Session, backend: str, states: list[RowState]) -> Job:
    m = s.cfg.measurement
    items = []
    for st in states:
        t = st.target
        name = stem(t.base.model, backend, t.variant)
        first = st.quality is None
        items.append(JobItem(
            model=t.base.model, variant=t.variant, files=t.files, options=t.options,
            samples_out=str(s.paths.work / f"{name}.r{len(st.processes)}.npy"),
            logits_out=str(s.paths.work / f"{name}.logits.npy") if first else None,
            val_logits_out=(str(s.paths.work / f"{name}.val.npy")
                            if first and s.paths.val is not None else None)))
    return Job(backend=backend, threads=m.threads, device=s.cfg.device, plan=m.latency,
               test_images=str(s.paths.test), result_out=str(s.paths.work / f"result-{backend}.jsonl"),
               items=tuple(items), val_images=str(s.paths.val) if s.paths.val else None,
               # --quick: one load per model (a second costs more than it saves)
               predict_threads=None if m.shared_process else s.cfg.training.train_threads,
               idle_w=s.probes.get(s.placed[backend], {}).get("idle_w"))


def fold(s: Session, backend: str, state: RowState, result: ProcessResult) -> RowState:
    """The row's state with one more process: its samples, and (first) its predictions."""
    if not result.ok:
        return replace(state, error=result.error)
    m = s.cfg.measurement
    processes = state.processes + (result,)
    arrays = state.arrays + (result.samples(),)
    state = replace(state, processes=processes, arrays=arrays,
                    latency=latency_row(list(arrays), n_boot=m.n_boot, seed=s.cfg.seed))
    t = state.target
    if result.logits_path:
        logits = np.load(result.logits_path)
        val_logits = np.load(result.val_logits_path) if result.val_logits_path else None
        quality = quality_of(state, logits, val_logits, s.data, s.cfg,
                             s.references[t.base.model], s.teacher(backend))
        state = replace(state, quality=quality)
        s.store.save_predictions(t.base.model, backend, s.data.test.labels,
                                 s.data.task.scores(quality.probs), logits, t.variant,
                                 task=s.data.task)
        state = replace(state, vs_student=against_student(state, s.student(backend), s.data,
                                                          s.cfg))
    kept_rows.keep(s, backend, state)
    return state


def log_row(backend: str, row: Result) -> None:
    def fmt(v, digits=2):
        return "-" if v is None else f"{v:.{digits}f}"

    log(f"{backend}: {row.model} {row.precision}: p50 {fmt(row.latency_ms_p50)} ms, "
        f"AUC {fmt(row.auc_roc, 3)}"
        + ("" if row.ok else f", {row.status.upper()}: {row.error}"))
