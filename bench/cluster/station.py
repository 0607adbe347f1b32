"""RayStation: measuring processes on a Ray node (bench.measuring.station's interface).

Placement: with --measure-on RESOURCE, every measuring task asks for one unit of that
custom resource, so a node started with `--resources '{"RESOURCE": 1}'` runs one
measurement at a time; without it, measurements stay on the bench's own node. Each
backend is placed on the alive holder of the resource with the fewest backends so far
(the node describes itself in a first task: CPU, cores, OS, architecture, runtime
versions), and every further task of that backend is pinned there
(NodeAffinitySchedulingStrategy, not soft), since its speedups divide by its teacher timed
on the same machine; with several holders the plan measures that many backends at once.
A job's files travel through the object store, each file once.

Faults: a measuring task whose node is gone (its raylet no longer alive) raises NodeLost;
the plan then asks `replace` for another node holding the resource and measures that
backend again there, or fails its unmeasured rows naming the lost node. A task that failed
on a node still alive fails only its models, as a crashed process does locally.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

from bench.child.records import Job, ProcessResult
from bench.cluster import tasks
from bench.inputs import first_line
from bench.measuring.station import NodeLost
from bench.progress import log
from bench.results.machines import machine_key

#: seconds to wait for a node that holds the resource to take the placing task (it may be
#: busy measuring for another trial of a search)
PLACE_TIMEOUT_S = 1800.0
#: seconds a failed task's node is given to be declared dead by the cluster (Ray's health
#: checks take about 15 s here)
DEATH_WAIT_S = 45.0


class RayStation:
    def __init__(self, cfg):
        import ray

        self.ray = ray
        self.resource = cfg.execution.measure_on
        self.threads = cfg.measurement.threads
        self.nodes: dict[str, dict] = {}  # machine key -> the node's description
        self.placed: dict[str, str] = {}  # backend -> machine key
        self.lost: dict[str, str] = {}  # machine key -> why it is lost
        self.lock = threading.Lock()
        self.sent: dict[str, tuple] = {}  # local path -> (digest, ObjectRef)
        self._remote = {f: ray.remote(getattr(tasks, f)) for f in
                        ("node_description", "probe", "measure")}
        self.spent = {"send_s": 0.0, "measure_s": 0.0, "sent_mib": 0.0, "received_mib": 0.0}

    # -- placement -----------------------------------------------------------------------

    def _options(self, key: str | None) -> dict:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # "DEFAULT": not the placement group of a Tune trial that calls this (a measurement
        # goes to the resource's node, not into the trial's bundle)
        opts: dict = {"num_cpus": 0, "max_retries": 0, "scheduling_strategy": "DEFAULT"}
        if self.resource:
            opts["resources"] = {self.resource: 1}
        node = (self.nodes[key]["ray_node_id"] if key else
                None if self.resource else self.ray.get_runtime_context().get_node_id())
        if node:
            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
        return opts

    def _holders(self) -> list[str]:
        """The alive nodes holding the resource (node ids, in a fixed order)."""
        return sorted(n["NodeID"] for n in self.ray.nodes()
                      if n.get("Alive") and n.get("Resources", {}).get(self.resource))

    @property
    def parallel(self) -> int:
        """How many backends can be measured at once: one per node holding the resource
        (each node still runs one measurement at a time); 1 without --measure-on."""
        return max(1, len(self._holders())) if self.resource else 1

    def _find(self) -> str:
        """A node for the next backend: the alive holder of the resource with the fewest
        backends placed on it so far, or without --measure-on the bench's own node."""
        if not self.resource:
            return self._describe(self.ray.get_runtime_context().get_node_id())
        holders = self._holders()
        if not holders:
            lost = "; ".join(f"{k}: {why}" for k, why in self.lost.items())
            raise NodeLost(f"no alive node of the cluster advertises {self.resource!r}"
                           + (f" ({lost})" if lost else ""))
        placed = Counter(self.nodes[k]["ray_node_id"] for k in self.placed.values())
        return self._describe(min(holders, key=lambda n: (placed[n], n)))

    def _describe(self, node_id: str) -> str:
        """The node's key, from its own description (asked once, through a task that
        waits for the resource: it never runs beside a measurement there)."""
        from ray.exceptions import GetTimeoutError
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        known = next((k for k, d in self.nodes.items() if d["ray_node_id"] == node_id), None)
        if known:
            return known
        opts = {**self._options(None),
                "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=False)}
        ref = self._remote["node_description"].options(**opts).remote()
        try:
            description = self.ray.get(ref, timeout=PLACE_TIMEOUT_S)
        except GetTimeoutError:
            self.ray.cancel(ref, force=True)
            raise NodeLost(f"node {node_id[:8]} took no task within {PLACE_TIMEOUT_S:.0f} s"
                           ) from None
        key = machine_key(description)
        self.nodes[key] = description
        log(f"measuring on {key}: {description['cpu']}, {description['physical_cores']} "
            f"cores, {description['platform']}")
        return key

    def place(self, backend: str) -> str:
        with self.lock:  # backends are placed from the plan's threads
            if backend not in self.placed:
                self.placed[backend] = self._find()
            return self.placed[backend]

    def replace(self, backend: str) -> bool:
        """Another node for `backend`, whose node was lost: True where one holds the
        resource (the backend is measured again there)."""
        self.placed.pop(backend, None)
        try:
            self.place(backend)
        except NodeLost as exc:
            log(str(exc))
            return False
        log(f"{backend}: measured again on {self.placed[backend]}")
        return True

    def machines(self) -> dict[str, dict]:
        return {k: {**d, **({"lost": self.lost[k]} if k in self.lost else {})}
                for k, d in self.nodes.items()}

    # -- running ---------------------------------------------------------------------------

    def probe(self, key: str, device: str, use_cache: bool, work) -> dict:
        ref = self._remote["probe"].options(**self._options(key)).remote(self.threads, device,
                                                                         use_cache)
        return self._get(ref, key, "probing the machine")

    def start(self, backend: str) -> None:
        """Nothing to start here: the node's worker starts its fork server on first use."""

    def run(self, job: Job, job_path, backend: str) -> list[ProcessResult]:
        key = self.place(backend)
        start = time.perf_counter()
        files = {p: self._send(p) for p in _inputs(job)}
        self.spent["send_s"] += time.perf_counter() - start
        for item in job.items:  # a model's files share a folder there, as here
            folder = tasks.digest_of([files[f][0] for f in item.files])
            files.update({f: (folder, files[f][1]) for f in item.files})
        ref = self._remote["measure"].options(**self._options(key)).remote(asdict(job), files,
                                                                           backend)
        models = ", ".join(i.model for i in job.items)
        start = time.perf_counter()
        try:
            out = self._get(ref, key, f"measuring {models} on {backend}")
        except NodeLost:
            raise
        except RuntimeError as exc:  # the task failed on a node still alive
            return [ProcessResult(model=i.model, error=str(exc), machine=key) for i in job.items]
        finally:
            self.spent["measure_s"] += time.perf_counter() - start
        self.spent["received_mib"] += sum(len(b) for b in out["arrays"].values()) / 2**20
        return [self._received(item, ProcessResult(**r), out["arrays"], key)
                for item, r in zip(job.items, out["results"], strict=True)]

    def _get(self, ref, key: str, doing: str):
        from ray.exceptions import NodeDiedError, RayError

        try:
            return self.ray.get(ref)
        except RayError as exc:
            node = self.nodes[key]
            alive = self._alive(node["ray_node_id"])  # waits for the cluster to agree
            if alive and not isinstance(exc, NodeDiedError):
                raise RuntimeError(f"ray task failed on {key} while {doing}: "
                                   f"{first_line(exc)}") from None
            why = f"node {node['ip']} ({node['ray_node_id'][:8]}) lost while {doing}"
            self.lost[key] = why
            raise NodeLost(f"measuring {why}") from None

    def _alive(self, node_id: str) -> bool:
        """Whether the node is still alive once the cluster has had DEATH_WAIT_S to notice
        a death (a task's failure reaches the bench before the health checks do)."""
        deadline = time.monotonic() + DEATH_WAIT_S
        while time.monotonic() < deadline:
            if not any(n["NodeID"] == node_id and n.get("Alive") for n in self.ray.nodes()):
                return False
            time.sleep(1.0)
        return True

    def _send(self, path: str) -> tuple:
        """(digest, ObjectRef) of the file's bytes, put into the object store once."""
        with self.lock:
            if path not in self.sent:
                data = Path(path).read_bytes()
                self.sent[path] = (tasks.digest(path), self.ray.put(data))
                self.spent["sent_mib"] += len(data) / 2**20
            return self.sent[path]

    @staticmethod
    def _received(item, result: ProcessResult, arrays: dict, key: str) -> ProcessResult:
        """The node's result with its arrays written where the plan reads them."""
        moved = {}
        for field, local in (("samples_path", item.samples_out), ("logits_path", item.logits_out),
                             ("val_logits_path", item.val_logits_out)):
            remote = getattr(result, field)
            if remote and remote in arrays and local:
                Path(local).write_bytes(arrays[remote])
                moved[field] = local
            else:
                moved[field] = None
        return replace(result, machine=key, **moved)

    def close(self) -> None:
        pass


def _inputs(job: Job) -> list[str]:
    paths = [job.test_images] + ([job.val_images] if job.val_images else [])
    return paths + [f for item in job.items for f in item.files]
