"""`bench search --executor ray`: the search's trials as Ray Tune trials, Optuna as Tune's
search algorithm (ray.tune.search.optuna.OptunaSearch) on the search's own study.

The honest selection is unchanged (bench.search): Tune's OptunaSearch asks and tells the
same SQLite study (`study.db`, same name, same sampler), so every trial, its validation
figures, its non-inferiority constraint (`Trial.set_constraint`, read by TPE and NSGA-II)
and a resumed search's history are where a local search keeps them; the finalists are
chosen from it on validation alone and measured once on test by a run.

A trial is a Tune function trainable with the training resources (CPUs, or a GPU): it
builds its chain from the teacher, reusing every prefix another trial already made (a
`StepCache` actor holds them in the object store), deploys it on the search's backend,
and has it measured by a RayStation on a node holding --measure-on's resource (one
measurement at a time per node; trials train while others are measured, so measurements
need nodes of their own). What it reports are validation figures; the test labels never
leave the bench process (the trials receive the training context, the validation images
and labels, and the teacher's validation logits).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import methods
from bench import backends
from bench.cluster.station import RayStation
from bench.cluster.tasks import on_node
from bench.pipeline.artifacts import apply_one, static_figures
from bench.pipeline.export import file_sizes
from bench.progress import log
from bench.search import space as search_space
from bench.search import study as search_study
from bench.search.trials import validation_job


class StepCache:
    """Chains' prefixes made by trials, by name: (prefix, Artifact). A Ray actor: it holds
    the models itself, since a trial's worker (the owner of what it puts in the object
    store) exits with its trial."""

    def __init__(self):
        self.steps: dict = {}

    def get(self, name: str):
        return self.steps.get(name)

    def put(self, name: str, prefix, artifact) -> None:
        self.steps.setdefault(name, (prefix, artifact))

    def items(self) -> list:
        return list(self.steps.values())


def run_trial(config: dict, shared: dict) -> None:
    """One trial, on a worker of the cluster: build, deploy, measure, score on validation;
    reports the figures, or {"error": ...} (the trial is then FAIL with it)."""
    from ray import tune

    try:
        figures = _trial_figures(config["model"], shared)
    except Exception as exc:  # noqa: BLE001 - the trial fails with it, the search goes on
        # Tune checks every report names the metrics: NaN, and the error the searcher reads
        tune.report({**{c: float("nan") for c in shared["metrics"]}, "model": config["model"],
                     "error": str(exc).splitlines()[0] if str(exc) else repr(exc)})
        return
    tune.report(figures)


def _trial_figures(model: str, shared: dict) -> dict:
    import ray

    cfg, ctx = shared["cfg"], shared["ctx"]
    on_node(cfg.training.train_threads, cfg.device, cfg.training.precision)
    (chain,) = methods.expand(model)
    cache = shared["cache"]
    artifact = shared["teacher"]
    for i in range(1, len(chain) + 1):
        prefix, name = chain[:i], methods.chain_name(chain[:i])
        hit = ray.get(cache.get.remote(name))
        if hit is not None:
            artifact = hit[1]
            continue
        artifact = apply_one(artifact, prefix, ctx)
        if isinstance(artifact, Exception):
            raise artifact
        if methods.get(prefix[-1].method).travels:
            ray.get(cache.put.remote(name, prefix, artifact))
    statics = static_figures(artifact, cfg.data.image_size)
    figures = measure(artifact, model, shared)
    q = _quality(figures.pop("val_logits"), shared)
    return {**figures, "model": model, "latency_ms_process": figures["latency_ms"],
            "params": statics["params"], "macs": statics["macs"],
            "val_auc": q["auc_roc"], "val_delta_auc": q["delta_auc"],
            "val_delta_ci_low": q["delta_auc_ci_low"], "val_delta_ci_high": q["delta_auc_ci_high"],
            "val_verdict": q["verdict"] or "", "build_s": round(artifact.seconds, 1)}


def measure(artifact, model: str, shared: dict) -> dict:
    """Deploy here on the search's backend; one measuring process on a node holding the
    resource (the short plan, validation predictions)."""
    import ray

    cfg = shared["cfg"]
    with tempfile.TemporaryDirectory(prefix="medbench-trial-") as work:
        work = Path(work)
        env = backends.ExportEnv(image_size=cfg.data.image_size,
                                 calibration=shared["ctx"].calibration_images, work_dir=work,
                                 device=cfg.device)
        (work / "model").mkdir()
        deployed = backends.deploy(backends.get(shared["backend"]), artifact, work / "model", env)
        disk_mib, _ = file_sizes(deployed.files)
        val_images = work / "val_images.npy"
        val_images.write_bytes(ray.get(shared["val_images"]))
        job = validation_job(cfg, shared["backend"], shared["plan"], model, deployed,
                             val_images, work)
        (result,) = RayStation(cfg).run(job, work / "job.json", shared["backend"])
        if not result.ok:
            raise RuntimeError(result.error)
        return {"latency_ms": float(np.median(result.samples())), "file_mib": disk_mib,
                "precision": deployed.precision, "notes": list(deployed.notes),
                "val_logits": np.load(result.logits_path), "machine": result.machine}


def _quality(logits, shared: dict) -> dict:
    import torch

    from bench.stats import quality

    task, cfg = shared["task"], shared["cfg"]
    probs = task.probabilities(torch.from_numpy(logits)).numpy()
    t_probs = task.probabilities(torch.from_numpy(shared["teacher_val_logits"])).numpy()
    return quality.quality_row(task, shared["val_labels"], task.scores(probs),
                               teacher_probs=task.scores(t_probs), margin=cfg.measurement.margin,
                               n_boot=cfg.measurement.n_boot, seed=cfg.seed)


class _Space:
    """The define-by-run space Tune's OptunaSearch draws from: the search's own draw
    (bench.search.space.suggest), the chain's name returned as the trial's `model`. The
    Optuna trial of the latest draw is kept (`last`): the searcher's own record of which
    Optuna trial each Tune trial is, rather than OptunaSearch's private table."""

    def __init__(self, templates):
        self.templates = templates
        self.last = None

    def __call__(self, trial) -> dict:
        self.last = trial
        return {"model": methods.chain_name(search_space.suggest(trial, self.templates))}


def _searcher(study, storage_path, objectives, templates, margin: float, pooled: dict,
              started: float):
    """OptunaSearch on the search's study (its storage opened from `storage_path`),
    telling Optuna what a local search tells it: the figures as user attributes, the
    constraint, the pooled latency, or the error. Public APIs only: Tune's Searcher
    methods, Optuna's Trial and Study.tell."""
    from optuna.trial import TrialState
    from ray.tune.search.optuna import OptunaSearch

    space = _Space(templates)
    drawn: dict = {}  # Tune's trial id -> the Optuna trial it drew
    told: set = set()  # Tune's trial ids told as failed here

    class Search(OptunaSearch):
        def suggest(self, trial_id):
            config = super().suggest(trial_id)
            if config is not None and space.last is not None:
                drawn[trial_id] = space.last
            return config

        def on_trial_complete(self, trial_id, result=None, error=False):
            if trial_id in told:
                return None
            ot_trial = drawn.get(trial_id)
            if ot_trial is None:
                return super().on_trial_complete(trial_id, result, error)
            result = dict(result or {})
            if error or "error" in result or "val_auc" not in result:
                ot_trial.set_user_attr("model", result.get("model", "?"))
                ot_trial.set_user_attr("error", result.get("error") or "the trial's worker failed")
                study.tell(ot_trial.number, state=TrialState.FAIL)
                told.add(trial_id)
                _log(study, ot_trial.number, objectives, started)
                return None
            runs = pooled.setdefault(result["model"], [])
            runs.append(result["latency_ms_process"])
            result.update(latency_ms=float(np.median(runs)), latency_processes=len(runs))
            for key in ("model", "latency_ms", "latency_ms_process", "latency_processes",
                        "file_mib", "precision", "notes", "params", "macs", "val_auc",
                        "val_delta_auc", "val_delta_ci_low", "val_delta_ci_high", "val_verdict",
                        "build_s", "machine"):
                ot_trial.set_user_attr(key, result.get(key))
            bound = search_study.constraint(result, margin)
            ot_trial.set_user_attr("constraint", bound)
            ot_trial.set_constraint("non_inferiority", bound)
            out = super().on_trial_complete(trial_id, result, error)
            _log(study, ot_trial.number, objectives, started)
            return out

        def save(self, checkpoint_path: str) -> None:
            """Nothing: the study in study.db is the search's state (a resumed search
            reopens it, as a local one does), and the sampler is rebuilt from it."""

        def restore(self, checkpoint_path: str) -> None:
            pass

    return Search(space=space, metric=objectives.columns,
                  mode=["min"] * len(objectives.names), sampler=study.sampler,
                  study_name=study.study_name, storage=search_study.storage(storage_path))


def _log(study, number: int, objectives, started: float) -> None:
    t = study.get_trials(deepcopy=False)[number]
    search_study.log_trial(t, objectives, started)


def optimize(study, shared: dict, templates, objectives, margin: float, trials: int | None,
             seconds: float | None, root: Path, cfg) -> StepCache:
    """Trials on the cluster until `trials` are finished in the study (over every attempt)
    or `seconds` of this attempt have passed. Returns the step cache (for the finalists)."""
    # the bench logs each trial itself; Tune's own result files and tables would repeat it
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray
    from ray import tune

    left = None if trials is None else max(0, trials - search_study.finished(study))
    cache = ray.remote(StepCache).options(num_cpus=0).remote()
    if left == 0:
        log(f"search: the study already holds {trials} finished trials")
        return cache
    started = time.perf_counter()
    train = ({"gpu": 1, "cpu": 1} if cfg.device == "cuda"
             else {"cpu": cfg.training.train_threads})
    sent = {**{k: v for k, v in shared.items() if k != "pooled"}, "metrics": objectives.columns}
    trainable = tune.with_resources(tune.with_parameters(run_trial,
                                                         shared={**sent, "cache": cache}), train)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=_searcher(study, root / "study.db", objectives, templates, margin,
                                 shared["pooled"], started),
            num_samples=left if left is not None else -1, time_budget_s=seconds),
        run_config=tune.RunConfig(name="trials", storage_path=str((root / "tune").resolve()),
                                  verbose=0))
    tuner.fit()
    return cache


def search_trials(study, cfg, data, builder, objectives, templates, opts, root: Path,
                  plan) -> None:
    """The trials of `bench search` on the cluster (the local search's Evaluator loop), the
    teacher's validation figures first (measured on the cluster too), and every prefix the
    trials made saved into the search's steps for the finalists' run."""
    import ray

    from bench.pipeline.runner import save_images

    (root / ".work").mkdir(parents=True, exist_ok=True)
    val_path = save_images(root / ".work" / "val_images.npy", data.val.images)
    shared = {"cfg": cfg, "ctx": builder.ctx, "teacher": builder.teacher,
              "backend": objectives.backend, "plan": plan,
              "val_images": ray.put(val_path.read_bytes()), "val_labels": data.val.labels,
              "task": data.task}
    saved = root / "teacher" / "figures.json"
    if saved.exists():  # a resumed search: measured by the stopped attempt
        shared["teacher_val_logits"] = np.load(saved.with_name("val_logits.npy"))
    else:
        log(f"search: the teacher on {objectives.backend} (validation predictions, short "
            "timing, on the cluster)")
        figures = measure(builder.teacher, "teacher", shared)
        saved.parent.mkdir(parents=True, exist_ok=True)
        np.save(saved.with_name("val_logits.npy"), figures["val_logits"])
        shared["teacher_val_logits"] = figures.pop("val_logits")
        saved.write_text(json.dumps(figures))
    log(f"search: minimising {', '.join(map(objectives.label, objectives.names))} over "
        f"{len(templates)} chain templates with Ray Tune (Optuna as its search algorithm); "
        f"budget " + " and ".join(filter(None, [opts.trials and f"{opts.trials} trials",
                                                opts.time_s and f"{opts.time_s:.0f}s"])))
    pooled = search_study.latency_processes(study)
    cache = optimize(study, {**shared, "pooled": pooled}, templates, objectives,
                     cfg.measurement.margin, opts.trials, opts.time_s, root, cfg)
    for prefix, artifact in ray.get(cache.items.remote()):
        builder.made[prefix] = artifact  # saved in the search directory for the finalists
