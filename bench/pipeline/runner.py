"""One run, in one direction, as its stages: data -> teacher -> method steps -> exports
(every model to every backend) -> measurements (a fresh process per model and backend)
-> report. Each stage's output is saved once, keyed (bench.results.saved), so a killed
run continues where it stopped.

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
from bench.backends import telemetry
from bench.config.sections import RunConfig
from bench.measuring import Paths, measure_all
from bench.pipeline import artifacts as made
from bench.pipeline import executors, export
from bench.pipeline.resume import open_run
from bench.pipeline.saved_stages import SavedExports, saved_steps
from bench.progress import log
from bench.results import console, manifest
from bench.results.row import STATUS_FAILED
from bench.results.saved import SavedOutputs
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
    """One run, as its stages: each takes what the one before produced, and each output is
    saved once, keyed, in the run directory (bench.results.saved), so running a killed
    run again is each stage finding what the earlier attempt saved."""
    import torch

    from bench.modelling.training import use_device, use_precision

    telemetry.switch_off()  # before any runtime is imported
    executor = executor or executors.LocalExecutor()
    t_start = time.perf_counter()
    use_device(cfg.device)
    use_precision(cfg.training.precision)
    torch.set_num_threads(cfg.training.train_threads)  # measuring processes pin their own
    torch.manual_seed(cfg.seed)
    store = open_store(cfg)
    outputs = SavedOutputs(store.root)

    data = data_stage(cfg, store)
    teacher = teacher_stage(cfg, data, store, executor)
    models = executor.build_all(cfg, data, teacher, saved_steps(outputs, cfg, data, teacher))
    store.update_manifest(models={name: (a.provenance() if isinstance(a, methods.Artifact)
                                         else {"error": str(a)}) for name, a in models.items()})
    work = store.root / ".work"  # scratch: made again by every attempt at the run
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    exported, references = export_stage(cfg, data, models, store, SavedExports(outputs), work)
    measure_stage(cfg, data, exported, references, store, executor, work)
    shutil.rmtree(work, ignore_errors=True)
    outputs.clear()  # the run is whole now
    return report_stage(store, t_start)


def open_store(cfg: RunConfig) -> RunStore:
    """The run directory: new, or the unfinished run of this configuration to continue
    (its stored rows kept)."""
    root = Path(cfg.output.out) if cfg.output.out else default_out_dir()
    run = open_run(root, cfg.to_dict())
    store = RunStore(root, resume=run.resuming)
    if run.resuming:
        log(f"run directory: {store.root}: continuing the unfinished run started "
            f"{run.manifest.get('created')} ({len(store.rows)} rows stored)")
        store.update_manifest(resumed=[*run.manifest.get("resumed", []),
                                       datetime.now(UTC).isoformat(timespec="seconds")])
    else:
        log(f"run directory: {store.root}")
        store.write_manifest(manifest.initial(cfg))
    return store


def data_stage(cfg: RunConfig, store: RunStore):
    """The dataset (generated data from the cache where it was made before)."""
    from bench.data import load_dataset

    data = load_dataset(cfg.data, cfg.seed)
    log(f"data: {data.name}, {data.task.kind} {list(data.task.class_names)}, "
        f"{len(data.train)}/{len(data.val)}/{len(data.test)} train/val/test at "
        f"{cfg.data.image_size}px")
    store.update_manifest(data=data.info, num_classes=data.task.num_outputs,
                          task={"kind": data.task.kind, "class_names": list(data.task.class_names)},
                          image_size=cfg.data.image_size)
    return data


def teacher_stage(cfg: RunConfig, data, store: RunStore, executor):
    """The shared teacher (trained once and cached across runs, or the user's checkpoint)."""
    teacher = executor.teacher(cfg, data)
    store.update_manifest(teacher={"source": teacher.source, **teacher.info})
    return teacher


def export_stage(cfg: RunConfig, data, models: dict, store: RunStore, deployed, work: Path):
    """Every model deployed to every backend ({backend: [Target or finished row]}), and
    each model's PyTorch logits on the parity batch (what every backend is checked against).
    The manifest's `exports` records each deployed cell's files and their sha256."""
    engines = [backends.get(b) for b in cfg.measurement.backends]
    built = {name: a for name, a in models.items() if isinstance(a, methods.Artifact)}
    statics = {name: made.static_figures(a, cfg.data.image_size) for name, a in built.items()}
    references = {name: made.reference_logits(a, data.test.images) for name, a in built.items()}
    env = backends.ExportEnv(image_size=cfg.data.image_size, calibration=data.calibration,
                             work_dir=work, device=cfg.device)
    exported = export.export_all(engines, cfg, models, statics, store, env, deployed)
    store.update_manifest(exports=deployed.manifest_records(),
                          backends={e.name: e.describe(cfg.measurement.threads) for e in engines})
    return exported, references


def measure_stage(cfg: RunConfig, data, exported: dict, references: dict, store: RunStore,
                  executor, work: Path) -> None:
    """Every row measured in fresh processes where the executor places them; each row is
    stored as it is finished (bench.measuring)."""
    paths = Paths(test=save_images(work / "test_images.npy", data.test.images),
                  val=(save_images(work / "val_images.npy", data.val.images)
                       if _needs_validation(cfg.measurement.operating_point) else None),
                  work=work)
    measure_all(exported, cfg, data, store, paths, references, executor.station(cfg))
    store.update_manifest(execution=executor.describe())


def report_stage(store: RunStore, t_start: float) -> int:
    """report.html, the run's wall time (which marks it finished) and the console table;
    exit status 1 if any row failed."""
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
