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

A row is stored after each of its processes, and its processes kept with it
(bench.measuring.rounds, bench.measuring.kept_rows), so a kill loses nothing measured and
a resumed run restores them. Quality and parity come from the first process's predictions; later processes only
time.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from bench.measuring import kept_rows
from bench.measuring.rounds import log_row, run_group
from bench.measuring.rows import RowState, Target
from bench.measuring.session import Paths, Session, row_id
from bench.measuring.station import NodeLost
from bench.progress import log
from bench.results.row import Result
from bench.results.saved import SavedOutputs
from bench.results.store import RunStore


def measure_all(exported: dict[str, list], cfg, data, store: RunStore, paths: Paths,
                references: dict, station) -> None:
    """Measure every backend's rows on `station`. `exported`: backend -> rows in order
    (teacher first), each a Target to measure or a finished Result (n/a, or failed before
    measuring)."""
    s = Session(cfg, data, store, paths, references, station, {}, {}, {}, set(),
                 SavedOutputs(store.root))
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
                log_row(backend, row)


def _measure_backend(s: Session, backend: str, rows: list) -> None:
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


def _start_backend(s: Session, backend: str) -> None:
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


def _fail_unfinished(s: Session, backend: str, rows: list, error: str) -> None:
    with s.lock:
        states = s.states.setdefault(backend, {})
        for t in (r for r in rows if isinstance(r, Target)):
            st = states.get(row_id(t)) or RowState(t)
            if st.error is None and (not st.processes or st.quality is None):
                states[row_id(t)] = st = replace(st, error=error)
                s.store.add(s.row(backend, st))
        s.lost.add(backend)


def _first_pass(s: Session, backend: str, rows: list) -> None:
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
            s.states[backend][row_id(t)] = kept_rows.restored(s, backend, t)
    kept = [f"{st.model} ({len(st.processes)} process{'es' if len(st.processes) > 1 else ''})"
            if st.processes else f"{st.model} (failed)"
            for st in s.states[backend].values() if st.processes or st.error]
    if kept:
        log(f"{backend}: kept from the earlier attempt at this run: " + ", ".join(kept))
    for round_ in range(m.repeats):
        run_group(s, backend, [k for k, st in s.states[backend].items()
                                if st.error is None and (len(st.processes) <= round_ or (
                                    round_ == 0 and st.quality is None))])
    t = s.teacher(backend)
    if not m.shared_process and t is not None and t.usable and len(t.processes) < 2:
        run_group(s, backend, [row_id(t.target)])


def _adaptive_pass(s: Session) -> None:
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
            if t is not None and row_id(t.target) not in keys and t.usable and len(t.processes) < 3:
                keys = [row_id(t.target)] + keys
            keys = [k for k in keys if time.perf_counter() + _cost(states[k]) <= deadline]
            if not keys:
                continue
            if not spent_on:
                log(f"re-timing rows that are not yet stable ({m.retime_budget_s:.0f} s budget)")
            spent_on += len(keys)
            log(f"{backend}: re-timing " + ", ".join(
                f"{states[k].model} (process {len(states[k].processes) + 1})" for k in keys))
            try:
                run_group(s, backend, keys)
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


