"""The measuring plan: which row gets a fresh process when, and what each process adds.

1. Per backend, in order, a fork server is started (bench.child.forkserver) and waited for;
   nothing runs beside a timed child: the next backend's server starts after this pass.
2. First pass: every row in `repeats` interleaved rounds of fresh processes (so a slow
   drift of the machine spreads over every row); the teacher once more after the others,
   so each backend's teacher has two processes that bracket the pass. Their disagreement
   is the backend's noise floor.
3. Adaptive pass (`retime_budget_s`): rows flagged unstable by bench.stats.latency get
   further processes, with their backend's teacher (up to three), until they settle,
   reach `max_repeats`, or the budget is spent.
4. Every row is built once more against the final teacher (bench.measuring.rows).

A row is stored after each of its processes, so a kill loses nothing measured. Quality
and parity come from the first process's predictions; later processes only time.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from bench.child.records import Job, JobItem, ProcessResult
from bench.measuring.rows import RowState, Target, against_student, build_row, quality_of
from bench.measuring.station import NodeLost
from bench.progress import log
from bench.results.row import Result, row_key
from bench.results.store import RunStore, stem


@dataclass(frozen=True)
class Paths:
    """Inputs the worker processes read, written once per run."""

    test: Path
    val: Path | None  # only when the operating point is chosen on validation data
    work: Path


@dataclass
class _Session:
    """What the plan holds while it runs: the latest state of every row, by backend, and
    the machine each backend is measured on (with that machine's probe)."""

    cfg: object
    data: object
    store: RunStore
    paths: Paths
    references: dict
    station: object  # bench.measuring.station.LocalStation, or a cluster's
    states: dict  # backend -> {model key: RowState}, in row order
    placed: dict  # backend -> machine key
    probes: dict  # machine key -> its probe (idle power, GEMM peaks)
    lost: set  # backends whose machine went away (no more processes for them)
    #: held while the store and the shared maps change: backends on machines of their
    #: own are measured from threads (bench.cluster.station)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def teacher(self, backend: str) -> RowState | None:
        return next((s for s in self.states[backend].values() if s.model == "teacher"), None)

    def student(self, backend: str) -> RowState | None:
        return next((s for s in self.states[backend].values() if s.model == "student"), None)

    def row(self, backend: str, state: RowState) -> Result:
        probe = self.probes.get(self.placed.get(backend), {})
        return build_row(state, self.teacher(backend), probe, self.cfg)


def measure_all(exported: dict[str, list], cfg, data, store: RunStore, paths: Paths,
                references: dict, station) -> None:
    """Measure every backend's rows on `station`. `exported`: backend -> rows in order
    (teacher first), each a Target to measure or a finished Result (n/a, or failed before
    measuring)."""
    s = _Session(cfg, data, store, paths, references, station, {}, {}, {}, set())
    at_once = min(getattr(station, "parallel", 1), len(exported))
    try:
        if at_once > 1:  # one machine per backend at a time (bench.cluster.station)
            log(f"measuring {len(exported)} backends on {at_once} machines at once")
            with ThreadPoolExecutor(max_workers=at_once) as pool:
                for done in [pool.submit(_measure_backend, s, b, rows)
                             for b, rows in exported.items()]:
                    done.result()
        else:
            for backend, rows in exported.items():  # each server starts right before its pass
                _measure_backend(s, backend, rows)
        _adaptive_pass(s)
    finally:
        station.close()
    if s.probes:  # a machine lost on the way says so
        store.update_manifest(machines={k: {**d, "probe": s.probes.get(k)}
                                        for k, d in station.machines().items()})
    for backend, states in s.states.items():  # the teacher's figures are final now
        for state in states.values():
            row = s.row(backend, state)
            store.add(row)
            if state.error is None:
                _log_row(backend, row)


def _measure_backend(s: _Session, backend: str, rows: list) -> None:
    """The backend's first pass on one machine. Where that machine is lost mid-pass, the
    pass starts again on another that the station finds (its rows measured there are not
    kept: their teacher is timed on the new one); where there is none, the rows left
    unmeasured fail, naming the machine lost."""
    while True:
        try:
            _start_backend(s, backend)
            _first_pass(s, backend, rows)
            return
        except NodeLost as exc:
            log(f"{backend}: {exc}")
            if not s.station.replace(backend):
                _fail_unfinished(s, backend, rows, str(exc))
                return


def _start_backend(s: _Session, backend: str) -> None:
    key = s.station.place(backend)
    with s.lock:
        s.placed[backend] = key
        if key not in s.probes:
            log(f"machine {key}: idle power draw and GEMM peaks (probed, or from the cache if "
                "under 12 h old)")
            s.probes[key] = s.station.probe(key, s.cfg.device, s.cfg.output.use_cache,
                                            s.paths.work)
            machines = s.station.machines()
            s.store.update_manifest(
                machine_probe=s.probes[next(iter(s.probes))],
                machines={k: {**d, "probe": s.probes.get(k)} for k, d in machines.items()})
    s.station.start(backend)


def _fail_unfinished(s: _Session, backend: str, rows: list, error: str) -> None:
    with s.lock:
        states = s.states.setdefault(backend, {})
        for t in (r for r in rows if isinstance(r, Target)):
            st = states.get(_key(t)) or RowState(t)
            if st.error is None and (not st.processes or st.quality is None):
                states[_key(t)] = st = replace(st, error=error)
                s.store.add(s.row(backend, st))
        s.lost.add(backend)


def _key(target: Target) -> tuple:
    return (target.base.model, target.variant)


def _first_pass(s: _Session, backend: str, rows: list) -> None:
    m = s.cfg.measurement
    targets = [r for r in rows if isinstance(r, Target)]
    log(f"{backend}: measuring {len(targets)} models ("
        + ("one shared process: --quick" if m.shared_process else "a fresh process each")
        + f", {m.threads} thread{'s' if m.threads > 1 else ''}"
        + (f", {m.repeats} rounds" if m.repeats > 1 else "") + ")")
    with s.lock:
        for r in rows:
            if isinstance(r, Result):
                s.store.add(r)
        s.states[backend] = {}
        for t in targets:  # teacher first: the others' quality is measured against it
            s.states[backend][_key(t)] = _restored(s, backend, t)
    kept = [f"{st.model} ({len(st.processes)} process{'es' if len(st.processes) > 1 else ''})"
            if st.processes else f"{st.model} (failed)"
            for st in s.states[backend].values() if st.processes or st.error]
    if kept:
        log(f"{backend}: kept from the earlier attempt at this run: " + ", ".join(kept))
    for round_ in range(m.repeats):
        _run_group(s, backend, [k for k, st in s.states[backend].items()
                                if st.error is None and (len(st.processes) <= round_ or (
                                    round_ == 0 and st.quality is None))])
    t = s.teacher(backend)
    if not m.shared_process and t is not None and t.usable and len(t.processes) < 2:
        _run_group(s, backend, [_key(t.target)])


def _restored(s: _Session, backend: str, target: Target) -> RowState:
    """The row as an earlier, killed attempt at this run left it: its processes (figures
    and raw samples) and quality from its stored predictions; a fresh state if none."""
    from bench.child.records import ProcessResult
    from bench.stats.latency import latency_row

    state = RowState(target)
    model, variant = target.base.model, target.variant
    stored = next((r for r in s.store.rows
                   if row_key(r) == (model, backend, target.base.precision)), None)
    if (stored is not None and stored.status.split(";")[0] == "failed"
            and not stored.error.startswith("export")):
        return replace(state, error=stored.error)
    lines = s.store.load_process_log(model, backend, variant)
    from bench.results.store import load_predictions, load_samples

    samples = load_samples(s.store.root, model, backend, target.base.precision) or []
    if not lines or len(lines) != len(samples):
        return state
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


def _adaptive_pass(s: _Session) -> None:
    """Time goes where the noise is: rows whose latency is not yet stable, and their
    backend's teacher (every speedup divides by its median; up to three processes, more
    only if it is unstable itself), get further fresh processes while the budget lasts."""
    m = s.cfg.measurement
    if m.shared_process or m.retime_budget_s <= 0:
        return
    deadline = time.perf_counter() + m.retime_budget_s
    spent_on = 0
    while True:
        progressed = False
        for backend, states in s.states.items():
            if backend in s.lost:
                continue
            keys = [k for k, st in states.items() if _needs_more(st, m)]
            if not keys:
                continue
            t = s.teacher(backend)
            if t is not None and _key(t.target) not in keys and t.usable and len(t.processes) < 3:
                keys = [_key(t.target)] + keys
            keys = [k for k in keys if time.perf_counter() + _cost(states[k]) <= deadline]
            if not keys:
                continue
            if not spent_on:
                log(f"re-timing rows that are not yet stable ({m.retime_budget_s:.0f} s budget)")
            spent_on += len(keys)
            log(f"{backend}: re-timing " + ", ".join(
                f"{states[k].model} (process {len(states[k].processes) + 1})" for k in keys))
            try:
                _run_group(s, backend, keys)
            except NodeLost as exc:  # its rows keep what the lost machine measured
                log(f"{backend}: {exc}; its rows keep the processes measured before")
                s.lost.add(backend)
            progressed = True
        if not progressed:
            break
    if spent_on:
        left = [f"{b}/{st.model}" for b, states in s.states.items() for st in states.values()
                if _needs_more(st, m)]
        log(f"re-timing done: {spent_on} more processes"
            + (f"; still unstable: {', '.join(left)}" if left else ""))


def _needs_more(state: RowState, m) -> bool:
    return (state.usable and state.latency["unstable"]
            and len(state.processes) < m.max_repeats)


def _cost(state: RowState) -> float:
    """Wall seconds a further process of this row will take: as its cheapest one did (the
    first also predicted the test split)."""
    seconds = [p.seconds for p in state.processes if p.seconds]
    return min(seconds) if seconds else 0.0


def _run_group(s: _Session, backend: str, keys: list) -> None:
    """One fresh process per row (or one shared process with --quick), in order."""
    m = s.cfg.measurement
    for group in ([keys] if m.shared_process else [[k] for k in keys]):
        states = [s.states[backend][k] for k in group]
        job = _job(s, backend, states)
        results = s.station.run(job, s.paths.work / f"job-{backend}.json", backend)
        for key, result in zip(group, results, strict=True):
            with s.lock:
                state = _fold(s, backend, s.states[backend][key], result)
                s.states[backend][key] = state
                row = s.row(backend, state)
                s.store.add(row)
            if state.error is not None:
                _log_row(backend, row)
            elif result.ok:
                log(f"{backend}: {state.model} measured (process {len(state.processes)}, "
                    f"median {np.median(state.arrays[-1]):.2f} ms)")


def _job(s: _Session, backend: str, states: list[RowState]) -> Job:
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


def _fold(s: _Session, backend: str, state: RowState, result: ProcessResult) -> RowState:
    """The row's state with one more process: its samples, and (first) its predictions."""
    from bench.stats.latency import latency_row

    if not result.ok:
        return replace(state, error=result.error)
    m = s.cfg.measurement
    processes = state.processes + (result,)
    arrays = state.arrays + (result.samples(),)
    state = replace(state, processes=processes, arrays=arrays,
                    latency=latency_row(list(arrays), n_boot=m.n_boot, seed=s.cfg.seed))
    t = state.target
    s.store.save_samples(t.base.model, backend, t.variant, state.samples())
    s.store.save_process_log(t.base.model, backend, t.variant, [p.to_line() for p in processes])
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
    return state


def _log_row(backend: str, row: Result) -> None:
    def fmt(v, digits=2):
        return "-" if v is None else f"{v:.{digits}f}"

    log(f"{backend}: {row.model} {row.precision}: p50 {fmt(row.latency_ms_p50)} ms, "
        f"AUC {fmt(row.auc_roc, 3)}"
        + ("" if row.ok else f", {row.status.upper()}: {row.error}"))
