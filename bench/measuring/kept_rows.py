"""A row's measured processes, kept by the run's one saving mechanism (bench.results.saved)
after each process, and restored from it when a killed run continues.

The store writes the row's raw samples (RUN/latency/<stem>.npz), each process's figures
beside them (<stem>.processes.jsonl) and, from its first process, its predictions; the
row's record keys them by the sha256 of the files that were measured, so a cell deployed
again is measured again, and a row whose files do not hash as recorded starts afresh.
"""

from __future__ import annotations

from dataclasses import replace

from bench import cache
from bench.child.records import ProcessResult
from bench.measuring.rows import RowState, Target, against_student, quality_of
from bench.measuring.session import Session
from bench.progress import log
from bench.results.row import row_key
from bench.results.saved import file_sha256
from bench.results.store import load_predictions, load_samples, stem
from bench.stats.latency import latency_row

STAGE = "measurements"


def measured_key(s: Session, target: Target) -> str:
    """What a row's measurements were made from: its deployed files (their sha256) and
    runtime options. Hashed once per measuring pass (`s.measured_keys`): the files do not
    change while it runs, and a row is kept after each of its processes."""
    at = (tuple(target.files), tuple(target.options))
    if at not in s.measured_keys:
        s.measured_keys[at] = cache.key({"files": [file_sha256(f) for f in target.files],
                                         "options": list(target.options)})
    return s.measured_keys[at]


def keep(s: Session, backend: str, state: RowState) -> None:
    """Write the row's samples and process figures (its predictions were written with its
    first process) and record them as the row's measurements."""
    store, t = s.store, state.target
    model, variant = t.base.model, t.variant
    files = [store.save_samples(model, backend, variant, state.samples()),
             store.save_process_log(model, backend, variant,
                                    [p.to_line() for p in state.processes])]
    predictions = store.predictions_path(model, backend, variant)
    if predictions.exists():
        files.append(predictions)
    s.saved.keep(STAGE, stem(model, backend, variant), measured_key(s, t), files)


def restored(s: Session, backend: str, target: Target) -> RowState:
    """The row as an earlier, killed attempt at this run left it: its processes (figures
    and raw samples) and quality from its stored predictions; a fresh state where nothing
    was kept."""
    state = RowState(target)
    model, variant = target.base.model, target.variant
    stored = next((r for r in s.store.rows
                   if row_key(r) == (model, backend, target.base.precision)), None)
    if (stored is not None and stored.status.split(";")[0] == "failed"
            and not stored.error.startswith("export")):
        return replace(state, error=stored.error)
    if s.saved.find(STAGE, stem(model, backend, variant), measured_key(s, target)) is None:
        return state
    lines = s.store.load_process_log(model, backend, variant)
    samples = load_samples(s.store.root, model, backend, target.base.precision) or []
    # the samples are held in the state; the restored results point at no files
    processes = tuple(replace(ProcessResult.from_line(line), samples_path=None,
                              logits_path=None, val_logits_path=None) for line in lines)
    elsewhere = {p.machine for p in processes if p.machine and p.machine != s.placed[backend]}
    if elsewhere:  # its teacher is timed here now: measured again, not mixed
        log(f"{backend}: {model}: measured on {', '.join(sorted(elsewhere))} by the earlier "
            f"attempt, not on {s.placed[backend]}: measuring it again")
        return state
    m = s.cfg.measurement
    state = replace(state, processes=processes, arrays=tuple(samples),
                    latency=latency_row(list(samples), n_boot=m.n_boot, seed=s.cfg.seed))
    pred = load_predictions(s.store.root, model, backend, target.base.precision)
    if pred is not None and s.paths.val is None:  # validation predictions are not stored
        teacher = state if model == "teacher" else s.teacher(backend)
        quality = quality_of(state, pred["logits"], None, s.data, s.cfg, s.references[model],
                             teacher)
        state = replace(state, quality=quality)
        state = replace(state, vs_student=against_student(state, s.student(backend), s.data,
                                                          s.cfg))
    return state
