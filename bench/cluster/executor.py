"""RayExecutor: the run's teachers and method chains as Ray tasks, its measurements on a
RayStation. The runner calls it where it would call the local executor
(bench.pipeline.executors.LocalExecutor); what comes back is the same objects, saved into the same
run directory in the same form.

Resource requests: a teacher or a step asks for `train_threads` CPUs (the count its
training is reproducible for), or with --device cuda one GPU and one CPU. Unless given,
`train_threads` is the fewest CPUs of any node that offers CPUs, so every training node
can take a task (set once the cluster is joined, before anything trains). Independent
steps run at once: the chains are built in waves by length (every first step together,
then every second step on its finished parent), each step saved into the run directory
as it arrives, so a killed run continues from what the cluster finished.
"""

from __future__ import annotations

import time

import methods
from bench.cluster import tasks
from bench.cluster.connect import connect
from bench.cluster.station import RayStation
from bench.inputs import first_line
from bench.pipeline import artifacts as made
from bench.progress import log


class RayExecutor:
    name = "ray"

    def __init__(self, cfg, joined):
        import ray

        self.ray = ray
        self.joined = joined  # bench.cluster.connect.Joined
        self.train_threads_from = "--train-threads"
        self.teachers: dict = {}  # seed -> ObjectRef of (Teacher, where), started early
        self._remote = {f: ray.remote(getattr(tasks, f)) for f in
                        ("train_teacher", "apply_step")}
        self.cfg = cfg
        self.spent = {"teacher_s": 0.0, "chains_s": 0.0}  # wall time waiting on the cluster
        self.stations: list = []

    @classmethod
    def connect(cls, cfg) -> RayExecutor:
        joined = connect(cfg.execution.ray_address, cfg.execution.allow_unauthenticated)
        ex = cls(cfg, joined)
        try:
            ex._check_resources(cfg)
        except ValueError:
            ex.close()
            raise
        return ex

    def _check_resources(self, cfg) -> None:
        """One line before any training where no node could run a task at all (a task Ray
        cannot place would wait for ever)."""
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        res = [n.get("Resources", {}) for n in nodes]
        cpus = max((r.get("CPU", 0) for r in res), default=0)
        log(f"ray: joined {self.joined.where} ("
            + ("token-authenticated" if self.joined.authenticated else "NOT AUTHENTICATED")
            + (", TLS" if self.joined.tls else "") + f"): {len(nodes)} "
            + f"node{'s' if len(nodes) != 1 else ''}, "
            + ", ".join(f"{n['NodeManagerAddress']} {_resources(n)}" for n in nodes))
        if cfg.training.train_threads == 0:  # not given: what the cluster's nodes offer
            trainers = [int(r["CPU"]) for r in res if r.get("CPU", 0) >= 1]
            cfg.training.train_threads = min(trainers, default=1)
            self.train_threads_from = "the cluster (the fewest CPUs of a node that trains)"
            log(f"ray: --train-threads {cfg.training.train_threads}, from "
                + self.train_threads_from)
        if cfg.device == "cuda" and not any(r.get("GPU", 0) >= 1 for r in res):
            raise ValueError("--device cuda: no node of the Ray cluster has a GPU")
        if cfg.device != "cuda" and cpus < cfg.training.train_threads:
            raise ValueError(f"--train-threads {cfg.training.train_threads}: no node of the Ray "
                             f"cluster has that many CPUs (largest: {cpus:g}); training would "
                             "wait for ever")
        on = cfg.execution.measure_on
        if on and not any(r.get(on, 0) >= 1 for r in res):
            raise ValueError(f"--measure-on {on}: no node of the Ray cluster advertises it "
                             f"(start one with ray start --resources '{{\"{on}\": 1}}')")

    def _train_options(self, cfg) -> dict:
        if cfg.device == "cuda":
            return {"num_gpus": 1, "num_cpus": 1}
        return {"num_cpus": cfg.training.train_threads}

    # -- teachers ----------------------------------------------------------------------

    def prefetch(self, runs) -> None:
        """Start every seed's teacher now: they are independent, so the cluster trains
        them at once while the first seed's chains are built."""
        from bench.data import load_dataset

        for cfg in runs:
            if cfg.seed not in self.teachers:
                data = load_dataset(cfg.data, cfg.seed)
                self.teachers[cfg.seed] = self._submit_teacher(cfg, data)

    def _submit_teacher(self, cfg, data):
        log(f"teacher (seed {cfg.seed}): sent to the cluster")
        return self._remote["train_teacher"].options(**self._train_options(cfg)).remote(
            cfg, self.ray.put(data))

    def teacher(self, cfg, data):
        start = time.perf_counter()
        ref = self.teachers.pop(cfg.seed, None) or self._submit_teacher(cfg, data)
        teacher, where = self.ray.get(ref)
        self.spent["teacher_s"] += time.perf_counter() - start
        log(f"teacher: {teacher.source} on node {where['ip']} ({where['node'][:8]}) in "
            f"{where['seconds']:.0f} s")
        return teacher

    # -- chains ------------------------------------------------------------------------

    def build_all(self, cfg, data, teacher, saved=None) -> dict:
        """As bench.pipeline.artifacts.build_all, each step a task: model name -> Artifact or the
        exception that stopped it. `saved`: the steps already made (SavedSteps of the run
        directory: found there, not sent to the cluster; each new one saved as it comes)."""
        start = time.perf_counter()
        builder = made.Builder(cfg, data, teacher, saved)
        ctx_ref = self.ray.put(builder.ctx)
        chains = made.chains_of(cfg)
        refs: dict = {(): self.ray.put(builder.teacher)}
        for length in range(1, max((len(c) for c in chains), default=0) + 1):
            wave = list(dict.fromkeys(c[:length] for c in chains if len(c) >= length))
            pending = {}
            for prefix in wave:
                parent = builder.chain(prefix[:-1])
                if (prefix in builder.made or isinstance(parent, Exception)
                        or not methods.get(prefix[-1].method).travels):  # made here (its docstring)
                    refs[prefix] = self.ray.put(builder.chain(prefix))
                    continue
                art_ref, where_ref = self._remote["apply_step"].options(
                    num_returns=2, **self._train_options(cfg)).remote(
                    refs[prefix[:-1]], prefix, ctx_ref, cfg.training.train_threads, cfg.device,
                    cfg.training.precision)
                pending[where_ref] = (prefix, art_ref)
            self._collect(pending, builder.made, refs)
        self.spent["chains_s"] += time.perf_counter() - start
        return {"teacher": builder.teacher,
                **{methods.chain_name(c): builder.chain(c) for c in chains}}

    def _collect(self, pending: dict, done, refs: dict) -> None:
        """Each step as it finishes: put into `done` (the builder's steps, which saves a
        float model into the run directory), then logged; its object in the store is what
        the next wave's steps receive."""
        from ray.exceptions import RayError

        left = list(pending)
        while left:
            ready, left = self.ray.wait(left, num_returns=1)
            prefix, art_ref = pending[ready[0]]
            name = methods.chain_name(prefix)
            try:
                where = self.ray.get(ready[0])
                art = self.ray.get(art_ref)
                refs[prefix] = art_ref
            except RayError as exc:  # the task itself was lost (its node, its worker)
                where, art = None, RuntimeError(f"lost on the Ray cluster: {first_line(exc)}")
                refs[prefix] = self.ray.put(art)
            done[prefix] = art
            if where is None:
                log(f"{name}: FAILED: {art}")
            elif not isinstance(art, Exception):
                log(f"{name}: made on node {where['ip']} ({where['node'][:8]}) in "
                    f"{where['seconds']:.0f} s")

    # -- measuring ---------------------------------------------------------------------

    def station(self, cfg):
        self.stations.append(RayStation(cfg))
        return self.stations[-1]

    def describe(self) -> dict:
        """For the manifest: where the run went and how its time split (seconds of wall
        time the bench waited on the cluster; bytes sent to and from measuring nodes)."""
        totals = {k: round(sum(st.spent[k] for st in self.stations), 2)
                  for k in ("send_s", "measure_s", "sent_mib", "received_mib")}
        return {"executor": "ray", "joined": self.joined.where,
                "authenticated": self.joined.authenticated, "tls": self.joined.tls,
                "train_threads": self.cfg.training.train_threads,
                "train_threads_from": self.train_threads_from,
                "measure_on": self.cfg.execution.measure_on,
                **{k: round(v, 1) for k, v in self.spent.items()}, **totals}

    def close(self) -> None:
        self.ray.shutdown()


def _resources(node: dict) -> str:
    r = node.get("Resources", {})
    keep = {k: v for k, v in r.items() if not k.startswith(("node:", "memory",
                                                            "object_store_memory"))}
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(keep.items())) + "}"
