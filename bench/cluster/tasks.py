"""What runs on a node. Plain functions: bench.cluster.executor and .station wrap them in
`ray.remote` with each call's resource request. Everything a task needs arrives as its
arguments through Ray's object store (the data, the teacher, a parent model, a measuring
job's files), never through a shared filesystem, and its results go back the same way.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

from bench.backends import telemetry
from bench.child import forkserver
from bench.child.records import Job
from bench.measuring import launch
from bench.pipeline.artifacts import apply_one
from bench.results.machines import describe_machine
from bench.results.saved import file_sha256

#: this worker process's fork servers, kept between measuring jobs: backend -> server
_SERVERS: dict = {}


def on_node(threads: int, device: str = "cpu", precision: str = "auto") -> None:
    import torch

    from bench.modelling.training import use_device, use_precision

    telemetry.switch_off()
    use_device(device)
    use_precision(precision)
    torch.set_num_threads(threads)  # CPU training is reproducible for a thread count only


def node_description() -> dict:
    """This node as a row's reader needs it (bench.results.machines.describe_machine),
    with its Ray node id and address."""
    import ray

    return describe_machine(ray_node_id=ray.get_runtime_context().get_node_id(),
                            ip=ray.util.get_node_ip_address())


def train_teacher(cfg, data) -> tuple:
    """The run's teacher, trained (or from this node's cache) here; and where and how long."""
    import torch

    from bench.modelling.teacher import for_config

    on_node(cfg.training.train_threads, cfg.device, cfg.training.precision)
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    teacher = for_config(cfg, data)
    if cfg.device == "cuda":
        teacher.module.cpu()
    return teacher, _where(start)


def apply_step(parent, prefix: tuple, ctx, threads: int, device: str,
               precision: str = "auto") -> tuple:
    """One method step on its parent's model (bench.pipeline.artifacts.apply_one: a failure comes back
    as the exception, as in a local run); and where and how long."""
    on_node(threads, device, precision)
    start = time.perf_counter()
    made = apply_one(parent, prefix, ctx)
    return made, _where(start)


def _where(start: float) -> dict:
    import ray

    return {"node": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address(),
            "seconds": round(time.perf_counter() - start, 1)}


def probe(threads: int, device: str, use_cache: bool) -> dict:
    """The node's idle power draw and GEMM peaks (bench.measuring.launch.measure_machine)."""
    with tempfile.TemporaryDirectory(prefix="medbench-probe-") as work:
        return launch.measure_machine(threads, device, use_cache, Path(work))


def measure(job_doc: dict, files: dict, backend: str) -> dict:
    """A measuring job on this node: its files written from the object store into a folder
    of this node, the job run as a local run runs it (a process forked per model from this
    worker's server for the backend), and its results with their arrays as bytes.

    `files`: the job's paths (as the bench process named them) -> (folder, ObjectRef of
    the bytes): the folder is a digest of the contents, shared by one model's files (an
    OpenVINO .xml beside its .bin), so a file sent again is not written again."""
    import ray

    job = Job.read_doc(job_doc)
    root = Path(tempfile.gettempdir()) / "medbench-station"
    refs = {path: ref for path, (_, ref) in files.items()}
    blobs = dict(zip(refs, ray.get(list(refs.values())), strict=True))
    local = {}
    for path, (digest, _) in files.items():
        target = root / "files" / digest / Path(path).name
        if not target.exists():  # sent before in this run: the same bytes
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            partial.write_bytes(blobs[path])
            partial.replace(target)
        local[path] = str(target)
    with tempfile.TemporaryDirectory(prefix="medbench-job-", dir=root) as work:
        work = Path(work)

        def out(path):
            return None if path is None else str(work / Path(path).name)

        items = tuple(replace(i, files=tuple(local[f] for f in i.files),
                              samples_out=out(i.samples_out), logits_out=out(i.logits_out),
                              val_logits_out=out(i.val_logits_out)) for i in job.items)
        run = replace(job, items=items, test_images=local[job.test_images],
                      val_images=local[job.val_images] if job.val_images else None,
                      result_out=str(work / "results.jsonl"))
        results = launch.run_worker(run, work / "job.json", server=_server(backend, job.threads))
        arrays = {}
        for r in results:
            for p in (r.samples_path, r.logits_path, r.val_logits_path):
                if p and Path(p).exists():
                    arrays[p] = Path(p).read_bytes()
        return {"results": [asdict(r) for r in results], "arrays": arrays}


def _server(backend: str, threads: int):
    """This worker process's fork server for `backend`, started on first use: as in a
    local run, a model's process is forked from it rather than started from nothing."""
    key = (backend, threads)
    server = _SERVERS.get(key)
    if server is None or not server.alive():
        _SERVERS[key] = server = forkserver.start(backend, launch.worker_env(threads))
    return server


def digest_of(parts: list[str]) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:32]


def digest(path: str) -> str:
    """The file's sha256 (bench.results.saved.file_sha256), shortened: a folder name on a node."""
    return file_sha256(path)[:32]
