"""One trial's figures, on the validation split only: its chain built from the shared
teacher (every prefix once, bench.pipeline.artifacts.Builder), deployed on the search's backend,
timed with the short plan in a fresh measuring process that also predicts the validation
images, and compared with the teacher's validation predictions on the same backend
(paired bootstrap, the bench's non-inferiority verdict).

Latency between processes varies here by more than the short plan resolves: in one
default search, six processes of the same int8 model gave medians from 2.9 to 4.9 ms.
Samplers propose a chain again once they converge, so a chain drawn again is timed in one
more process and its figure is the median of its processes' medians."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import methods
from bench import backends
from bench.child import forkserver
from bench.child.records import Job, JobItem
from bench.child.timed_loop import LatencyPlan
from bench.measuring import launch
from bench.pipeline.artifacts import Builder, static_figures
from bench.pipeline.export import file_sizes
from bench.progress import log

#: the search's timing plan: a shorter loop than a run's (the finalists get the full one)
SEARCH_LATENCY = LatencyPlan(warmup_n=5, warmup_s=0.2, min_n=50, min_s=0.5, max_s=5.0)


def validation_job(cfg, backend: str, plan: LatencyPlan, model: str, deployed, val_images,
                   where: Path) -> Job:
    """A trial's measuring process: the short plan, predicting the validation images (in
    their place, as the worker predicts the test split of a run), its files in `where`."""
    return Job(backend=backend, threads=cfg.measurement.threads, device=cfg.device, plan=plan,
               test_images=str(val_images), result_out=str(where / "result.jsonl"),
               items=(JobItem(model=model, variant="", files=tuple(map(str, deployed.files)),
                              options=tuple((str(k), str(v))
                                            for k, v in deployed.options.items()),
                              samples_out=str(where / "samples.npy"),
                              logits_out=str(where / "val_logits.npy")),),
               predict_threads=cfg.training.train_threads)


@dataclass
class Evaluator:
    """What every trial shares: the builder, the backend's server, the teacher's figures."""

    cfg: object
    data: object  # test labels sealed (bench.search.sealed)
    builder: Builder
    backend: str
    root: Path
    plan: LatencyPlan
    server: object = None
    teacher: dict | None = None
    #: model -> the median latency of each of its measuring processes so far: a chain
    #: drawn again is timed again, and its figure is the median over its processes
    processes: dict = field(default_factory=dict)

    def start(self) -> None:
        from bench.pipeline.runner import save_images

        env = backends.ExportEnv(image_size=self.cfg.data.image_size,
                                 calibration=self.data.calibration,
                                 work_dir=self.root / ".work", device=self.cfg.device)
        self.env = env
        env.work_dir.mkdir(parents=True, exist_ok=True)
        self.val_images = save_images(env.work_dir / "val_images.npy", self.data.val.images)
        self.server = forkserver.start(self.backend, launch.worker_env(
            self.cfg.measurement.threads))
        self.teacher = self._teacher()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        shutil.rmtree(self.root / ".work", ignore_errors=True)

    def _teacher(self) -> dict:
        """The teacher on the backend (validation logits and latency), measured once per
        search and kept for a resumed one."""
        saved = self.root / "teacher" / "figures.json"
        if saved.exists():
            figures = json.loads(saved.read_text())
            figures["val_logits"] = np.load(saved.with_name("val_logits.npy"))
            return figures
        log(f"search: the teacher on {self.backend} (validation predictions, short timing)")
        figures = self._measure(self.builder.teacher, self.root / "teacher")
        np.save(saved.with_name("val_logits.npy"), figures["val_logits"])
        saved.write_text(json.dumps({k: v for k, v in figures.items() if k != "val_logits"}))
        return figures

    def _measure(self, artifact, where: Path) -> dict:
        """Deploy on the backend, then one fresh process: short timing and validation logits."""
        (where / "model").mkdir(parents=True, exist_ok=True)
        deployed = backends.deploy(backends.get(self.backend), artifact, where / "model",
                                   self.env)
        disk_mib, _ = file_sizes(deployed.files)
        job = validation_job(self.cfg, self.backend, self.plan, artifact.name, deployed,
                             self.val_images, where)
        (result,) = launch.run_worker(job, where / "job.json", server=self.server)
        if not result.ok:
            raise RuntimeError(result.error)
        samples = result.samples()
        logits = np.load(result.logits_path)
        shutil.rmtree(where / "model", ignore_errors=True)  # the finalists deploy their own
        return {"latency_ms": float(np.median(samples)), "file_mib": disk_mib,
                "precision": deployed.precision, "notes": list(deployed.notes),
                "val_logits": logits}

    def evaluate(self, number: int, chain: tuple) -> dict:
        """Every figure of the trial (validation only), or an exception from the step that
        failed (the trial is then recorded as failed, with it)."""
        import torch

        from bench.stats import quality

        artifact = self.builder.chain(chain)
        if isinstance(artifact, Exception):
            raise artifact
        statics = static_figures(artifact, self.cfg.data.image_size)
        figures = self._measure(artifact, self.root / "trials" / str(number))
        name = methods.chain_name(chain)
        runs = self.processes.setdefault(name, [])
        runs.append(figures["latency_ms"])
        figures.update(latency_ms_process=figures["latency_ms"],
                       latency_ms=float(np.median(runs)), latency_processes=len(runs))
        task, m = self.data.task, self.cfg.measurement
        probs = task.probabilities(torch.from_numpy(figures.pop("val_logits"))).numpy()
        t_probs = task.probabilities(torch.from_numpy(self.teacher["val_logits"])).numpy()
        q = quality.quality_row(task, self.data.val.labels, task.scores(probs),
                                teacher_probs=task.scores(t_probs), margin=m.margin,
                                n_boot=m.n_boot, seed=self.cfg.seed)
        return {**figures, "model": name, "params": statics["params"],
                "macs": statics["macs"], "val_auc": q["auc_roc"], "val_delta_auc": q["delta_auc"],
                "val_delta_ci_low": q["delta_auc_ci_low"],
                "val_delta_ci_high": q["delta_auc_ci_high"],
                "val_verdict": q["verdict"] or "", "build_s": round(artifact.seconds, 1)}
