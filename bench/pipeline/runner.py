"""One run, in one direction: data -> teacher -> method chains -> artifacts -> backends
(a fresh worker process per model and backend) -> rows -> store -> report.

The configuration is checked first (bench.config.settings.validate), so bad input fails before
minutes of training. A method or backend failure becomes a row with status 'failed' and
the error; the run goes on, and the exit status at the end says whether anything failed.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

import methods
from bench import backends
from bench.config.sections import RunConfig
from bench.pipeline import artifacts as made
from bench.pipeline import executors
from bench.pipeline.resume import open_run
from bench.progress import log
from bench.results import manifest
from bench.results.row import STATUS_FAILED
from bench.results.store import RunStore


def default_out_dir() -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path("reports") / "runs" / stamp


def run(cfg: RunConfig, connect=None) -> int:
    """One run, or with --seeds one sub-run per seed plus a summary across them. Once the
    configuration is valid, `connect(cfg)` gives the executor (bench.execution.connect,
    which may join a cluster; by default this machine); it is closed at the end."""
    from bench.config.settings import validate

    validate(cfg)
    executor = connect(cfg) if connect else executors.LocalExecutor()
    try:
        return _run_seeds(cfg, executor) if cfg.seeds else run_one(cfg, executor)
    finally:
        executor.close()


def _run_seeds(cfg: RunConfig, executor) -> int:
    from bench.results import seeds

    root = Path(cfg.output.out) if cfg.output.out else default_out_dir()
    codes, runs = [], {}
    per_seed = [replace(cfg, seed=seed, seeds=[],
                        output=replace(cfg.output, out=str(root / f"seed-{seed}")))
                for seed in cfg.seeds]
    executor.prefetch(per_seed)  # on a cluster: every seed's teacher trains at once
    for seed, one in zip(cfg.seeds, per_seed, strict=True):
        log(f"seed {seed} ({cfg.seeds.index(seed) + 1} of {len(cfg.seeds)})")
        runs[seed] = Path(one.output.out)
        codes.append(run_one(one, executor))
    summary = seeds.write_summary(root, runs)
    first = json.loads((runs[cfg.seeds[0]] / "manifest.json").read_text())
    RunStore(root).write_manifest({**first, "seeds": cfg.seeds,
                                   "seed_runs": {s: str(p.name) for s, p in runs.items()}})
    from reports.html import write_report

    write_report(root)
    log(f"summary across seeds {cfg.seeds}: {summary}")
    return max(codes)


def run_one(cfg: RunConfig, executor=None) -> int:
    import torch

    from bench.backends import telemetry
    from bench.data import load_dataset
    from bench.measuring import Paths, measure_all
    from bench.modelling.training import use_device
    from bench.pipeline import export
    from bench.results import console

    telemetry.switch_off()  # before any runtime is imported
    executor = executor or executors.LocalExecutor()
    t_start = time.perf_counter()
    use_device(cfg.device)
    torch.set_num_threads(cfg.training.train_threads)  # measuring processes pin their own
    torch.manual_seed(cfg.seed)
    engines = [backends.get(b) for b in cfg.measurement.backends]
    root = Path(cfg.output.out) if cfg.output.out else default_out_dir()
    run = open_run(root, cfg.to_dict())  # a killed run of this configuration continues
    store = RunStore(root, resume=run.resuming)
    if run.resuming:
        log(f"run directory: {store.root}: continuing the unfinished run started "
            f"{run.manifest.get('created')} ({len(store.rows)} rows stored)")
        store.update_manifest(resumed=[*run.manifest.get("resumed", []),
                                       datetime.now(UTC).isoformat(timespec="seconds")])
    else:
        log(f"run directory: {store.root}")
        store.write_manifest(manifest.initial(cfg))

    data = load_dataset(cfg.data, cfg.seed)
    log(f"data: {data.name}, {data.task.kind} {list(data.task.class_names)}, "
        f"{len(data.train)}/{len(data.val)}/{len(data.test)} train/val/test at "
        f"{cfg.data.image_size}px")
    teacher = executor.teacher(cfg, data)
    store.update_manifest(data=data.info, num_classes=data.task.num_outputs,
                          task={"kind": data.task.kind, "class_names": list(data.task.class_names)},
                          image_size=cfg.data.image_size,
                          teacher={"source": teacher.source, **teacher.info})

    models = executor.build_all(cfg, data, teacher, run)
    store.update_manifest(models={name: (a.provenance() if isinstance(a, methods.Artifact)
                                         else {"error": str(a)}) for name, a in models.items()})

    work = store.root / ".work"  # scratch: made again by every attempt at the run
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    paths = Paths(test=save_images(work / "test_images.npy", data.test.images),
                  val=(save_images(work / "val_images.npy", data.val.images)
                       if _needs_validation(cfg.measurement.operating_point) else None),
                  work=work)
    built = {name: a for name, a in models.items() if isinstance(a, methods.Artifact)}
    statics = {name: made.static_figures(a, cfg.data.image_size) for name, a in built.items()}
    references = {name: made.reference_logits(a, data.test.images) for name, a in built.items()}
    env = backends.ExportEnv(image_size=cfg.data.image_size, calibration=data.calibration,
                             work_dir=work, device=cfg.device)
    exported = export.export_all(engines, cfg, models, statics, store, env, run)
    measure_all(exported, cfg, data, store, paths, references, executor.station(cfg))
    store.update_manifest(execution=executor.describe())
    store.update_manifest(backends={e.name: e.describe(cfg.measurement.threads) for e in engines})
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(store.root / ".resume", ignore_errors=True)  # the run is whole now

    from reports.html import write_report

    write_report(store.root)
    failed = [r for r in store.rows if r.status.split(";")[0] == STATUS_FAILED]
    elapsed = time.perf_counter() - t_start
    store.update_manifest(wall_seconds=round(elapsed, 1), failed_rows=len(failed))
    log(f"done in {elapsed:.0f}s: {len(store.rows)} rows, {len(failed)} failed -> {store.root}")
    print(console.table(store.rows))
    return 1 if failed else 0


def save_images(path: Path, images: np.ndarray) -> Path:
    """What the workers feed every backend: 3 channels (grayscale repeated), float32."""
    np.save(path, np.repeat(images, 3, axis=1) if images.shape[1] == 1 else images)
    return path


def _needs_validation(operating_point: str) -> bool:
    from bench.stats.threshold import parse_operating_point

    return parse_operating_point(operating_point).kind != "threshold"
