"""What the measuring plan holds while it runs (`Session`), shared by the plan
(bench.measuring.plan), the rounds of processes it starts (bench.measuring.rounds) and
the rows a resumed run restores (bench.measuring.kept_rows)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from bench.measuring.rows import RowState, Target, build_row
from bench.results.row import Result
from bench.results.saved import SavedOutputs
from bench.results.store import RunStore


@dataclass(frozen=True)
class Paths:
    """Inputs the worker processes read, written once per run."""

    test: Path
    val: Path | None  # only when the operating point is chosen on validation data
    work: Path


@dataclass
class Session:
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
    saved: SavedOutputs  # what each row measured, kept for a resumed run (bench.measuring.kept_rows)
    #: (deployed files, options) -> their measurements' key (bench.measuring.kept_rows)
    measured_keys: dict = field(default_factory=dict)
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


def row_id(target: Target) -> tuple:
    """A row's place in `Session.states[backend]`: (model, variant)."""
    return (target.base.model, target.variant)
