"""Where measuring processes run. A station starts them on one machine per backend and
says which machine that was; the plan (bench.measuring.plan) sees only this interface.

`LocalStation` is this machine, every process forked from one server per backend
(bench.child.forkserver), as every local run; `bench.cluster.station.RayStation` is a node of a
Ray cluster. Each process's result names its machine (`ProcessResult.machine`), and so
does each row: a backend's rows are all timed on one machine, since every speedup divides
by that backend's teacher.
"""

from __future__ import annotations

from dataclasses import replace

from bench.child import forkserver
from bench.child.records import Job, ProcessResult
from bench.measuring import launch
from bench.results.machines import describe_machine, machine_key


class NodeLost(RuntimeError):
    """The machine a backend was measured on went away mid-measurement (a Ray node died)."""


class LocalStation:
    """This machine: a fork server per backend, started right before its pass."""

    def __init__(self, threads: int):
        self.threads = threads
        self.description = describe_machine()
        self.key = machine_key(self.description)
        self.servers: dict = {}

    def place(self, backend: str) -> str:
        """The machine `backend` is measured on (its key)."""
        return self.key

    def machines(self) -> dict[str, dict]:
        return {self.key: self.description}

    def replace(self, backend: str) -> bool:
        """Another machine for a backend whose machine was lost: none here."""
        return False

    def probe(self, key: str, device: str, use_cache: bool, work) -> dict:
        return launch.measure_machine(self.threads, device, use_cache, work)

    def start(self, backend: str) -> None:
        self.servers[backend] = forkserver.start(backend, launch.worker_env(self.threads))

    def run(self, job: Job, job_path, backend: str) -> list[ProcessResult]:
        results = launch.run_worker(job, job_path, server=self.servers.get(backend))
        return [replace(r, machine=self.key) for r in results]

    def close(self) -> None:
        for server in self.servers.values():
            if server is not None:
                server.close()
        self.servers.clear()
