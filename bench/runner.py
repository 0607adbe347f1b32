"""One run, in one direction: data -> teacher -> method chains -> artifacts -> backends
(a fresh worker process per model and backend) -> rows -> store -> report.

A method or backend failure becomes a row with status 'failed' and the error; the run
goes on, and the exit status at the end says whether anything failed.
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

import methods
from bench import __version__, backends
from bench.config import RunConfig
from bench.progress import log
from bench.result import STATUS_FAILED, STATUS_NA, STATUS_OK, Result
from bench.store import RunStore, safe_name
from bench.worker import RESULT_PREFIX

MIB = 1024 * 1024


def default_out_dir() -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path("reports") / "runs" / stamp


def run(cfg: RunConfig) -> int:
    import torch

    from bench.backends import telemetry
    from bench.data import load_dataset, resolve
    from bench.models import check_architecture
    from bench.teacher import get_teacher

    telemetry.switch_off()  # before any runtime is imported
    t_start = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    # Bad input fails here, before minutes of training.
    chains = methods.expand(cfg.methods)
    check_architecture(cfg.teacher, "--teacher")
    check_architecture(cfg.student, "--student")
    if cfg.teacher_checkpoint and not Path(cfg.teacher_checkpoint).is_file():
        raise ValueError(f"{cfg.teacher_checkpoint}: teacher checkpoint not found")
    engines = [backends.get(b) for b in cfg.backends]
    resolve(cfg.dataset, cfg.data_root, cfg.image_size)
    store = RunStore(Path(cfg.out) if cfg.out else default_out_dir())
    log(f"run directory: {store.root}")
    store.write_manifest(_manifest(cfg))

    data = load_dataset(cfg.dataset, cfg.image_size, cfg.seed, cfg.task, cfg.num_classes, cfg.sizes,
                        data_root=cfg.data_root, uncertainty=cfg.uncertainty,
                        frontal_only=cfg.frontal_only, labels=cfg.labels)
    log(f"data: {data.name}, {data.task.kind} {list(data.task.class_names)}, "
        f"{len(data.train)}/{len(data.val)}/{len(data.test)} train/val/test at {cfg.image_size}px")
    teacher = get_teacher(cfg.teacher, data, cfg.teacher_epochs, cfg.seed,
                          cfg.teacher_checkpoint, cfg.use_cache)
    store.update_manifest(data=data.info,
                          num_classes=data.task.num_outputs, image_size=cfg.image_size,
                          teacher={"source": teacher.source, **teacher.info})

    artifacts = _build_artifacts(cfg, chains, data, teacher)
    store.update_manifest(models={name: (a.provenance() if isinstance(a, methods.Artifact)
                                         else {"error": str(a)}) for name, a in artifacts.items()})

    work = store.root / ".work"
    work.mkdir(exist_ok=True)
    test_path = work / "test_images.npy"
    test = data.test.images
    np.save(test_path, np.repeat(test, 3, axis=1) if test.shape[1] == 1 else test)
    built = {name: a for name, a in artifacts.items() if isinstance(a, methods.Artifact)}
    statics = {name: _static_stats(a, cfg.image_size) for name, a in built.items()}
    references = {name: _reference_logits(a, data.test.images) for name, a in built.items()}
    env = backends.ExportEnv(image_size=cfg.image_size, calibration=data.calibration,
                             work_dir=work, device=cfg.device)
    # Every export first, gzip sizes on a thread pool meanwhile (zlib releases the GIL);
    # then measurement, with nothing else running on the machine.
    with ThreadPoolExecutor(max_workers=2) as gzip_pool:
        exported = {e.name: _export_backend(e, cfg, artifacts, statics, store, env, gzip_pool)
                    for e in engines}
    for engine in engines:
        _measure_backend(engine.name, exported[engine.name], cfg, data, store, test_path, references)
    store.update_manifest(backends={e.name: e.describe(cfg.threads) for e in engines})
    shutil.rmtree(work, ignore_errors=True)

    from reports.html import write_report

    write_report(store.root)
    failed = [r for r in store.rows if r.status.split(";")[0] == STATUS_FAILED]
    elapsed = time.perf_counter() - t_start
    store.update_manifest(wall_seconds=round(elapsed, 1), failed_rows=len(failed))
    log(f"done in {elapsed:.0f}s: {len(store.rows)} rows, {len(failed)} failed -> {store.root}")
    _print_table(store.rows)
    return 1 if failed else 0


def _manifest(cfg: RunConfig) -> dict:
    import torch

    versions = {"bench": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for pkg in ("torchvision", "torch_pruning", "numpy", "sklearn", "onnxruntime", "openvino",
                "codecarbon"):
        versions[pkg] = _version_of(pkg)
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": sys.argv,
        "config": cfg.to_dict(),
        "image_size": cfg.image_size,
        "versions": versions,
        "machine": _machine(),
        "git_commit": _git_commit(),
    }


def _version_of(pkg: str) -> str | None:
    from importlib import metadata

    dist = {"sklearn": "scikit-learn", "torch_pruning": "torch-pruning"}.get(pkg, pkg)
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _machine() -> dict:
    import psutil

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu,
            "physical_cores": psutil.cpu_count(logical=False),
            "logical_cores": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent.parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5,
                               cwd=Path(__file__).resolve().parent.parent).stdout.strip()
        return (out.stdout.strip() + ("-dirty" if dirty else "")) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _build_artifacts(cfg, chains, data, teacher) -> dict[str, methods.Artifact | Exception]:
    from methods.kd import train_student

    ctx = methods.Context(
        task=data.task, train_images=data.train.images, train_labels=data.train.labels,
        calibration_images=data.calibration, teacher=teacher.module,
        teacher_logits=teacher.train_logits, student_arch=cfg.student, image_size=cfg.image_size,
        student_epochs=cfg.student_epochs, finetune_epochs=cfg.finetune_epochs, seed=cfg.seed,
    )
    root = methods.Artifact(name="teacher", arch=cfg.teacher, module=teacher.module,
                            float_module=teacher.module, notes=(f"teacher ({teacher.source})",))
    out: dict[str, methods.Artifact | Exception] = {"teacher": root}
    start = time.perf_counter()
    try:
        log(f"student: training {cfg.student} without distillation (the KD baseline)")
        module = train_student(ctx, 0, 0.05, None, 0.0, 1.0, "student")
        out["student"] = methods.Artifact(
            name="student", arch=cfg.student, module=module, float_module=module,
            notes=("same student recipe as kd, hard labels only",),
            seconds=time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - recorded in the row
        out["student"] = exc
    memo: dict[tuple, methods.Artifact | Exception] = {(): root}
    for chain in chains:
        name = methods.chain_name(chain)
        for i in range(1, len(chain) + 1):
            prefix = chain[:i]
            if prefix in memo:
                continue
            parent = memo[chain[:i - 1]]
            if isinstance(parent, Exception):
                memo[prefix] = parent
                continue
            step = prefix[-1]
            log(f"{methods.chain_name(prefix)}: applying {step.method} to {parent.name}")
            try:
                made = methods.get(step.method)().apply(parent, ctx, **dict(step.params))
                memo[prefix] = replace(made, name=methods.chain_name(prefix),
                                       steps=parent.steps + (step,))
            except Exception as exc:  # noqa: BLE001 - recorded in the row
                log(f"{methods.chain_name(prefix)}: FAILED: {exc}")
                memo[prefix] = exc
        out[name] = memo[chain]
    return out


def _static_stats(artifact: methods.Artifact, image_size: int) -> dict:
    """Backend-independent row figures."""
    from bench.models import count_macs, count_params, state_bytes

    params, nonzero = count_params(artifact.module)
    try:
        macs = count_macs(artifact.float_module, image_size)
    except Exception:  # noqa: BLE001 - an uncountable graph leaves the cell empty
        macs = None
    return {"params": params, "params_nonzero": nonzero,
            "weights_mib": state_bytes(artifact.module) / MIB, "macs": macs}


def _reference_logits(artifact: methods.Artifact, test_images: np.ndarray) -> np.ndarray:
    """PyTorch fp32 logits of the model on the parity batch: what every backend is checked against."""
    from bench.training import predict_logits

    return predict_logits(artifact.float_module, test_images[:PARITY_BATCH]).numpy()


def _file_sizes(files) -> tuple[float, float]:
    total = gz = 0
    for f in files:
        data = Path(f).read_bytes()
        total += len(data)
        gz += len(gzip.compress(data, compresslevel=6))
    return total / MIB, gz / MIB


def _export_backend(engine, cfg, artifacts, statics, store, env, gzip_pool) -> list:
    """Deploy every model to one backend: [(row, worker item or None)] in model order."""
    name = engine.name
    log(f"{name}: exporting {len(artifacts)} models")
    outcomes = []
    for model, art in artifacts.items():
        row = Result(model=model, method=_method_of(model, art), backend=name,
                     arch=getattr(art, "arch", ""), precision=getattr(art, "precision", ""),
                     threads=cfg.threads)
        if isinstance(art, Exception):
            outcomes.append((row.with_(status=STATUS_FAILED, error=_one_line(art)), None))
            continue
        row = row.with_(notes="; ".join(art.notes), **statics[model])
        try:
            deployed = engine.export(art, store.artifact_dir(model, name), env)
        except backends.NotApplicable as exc:
            outcomes.append((row.with_(status=STATUS_NA, error=str(exc)), None))
            continue
        except Exception as exc:  # noqa: BLE001
            outcomes.append((row.with_(status=STATUS_FAILED, error=f"export: {_one_line(exc)}"), None))
            continue
        row = row.with_(precision=deployed.precision, notes="; ".join([*art.notes, *deployed.notes]))
        outcomes.append((row, {
            "model": model, "files": [str(f) for f in deployed.files], "options": deployed.options,
            "sizes": gzip_pool.submit(_file_sizes, deployed.files),
            "logits_out": str(store.root / ".work" / f"{safe_name(model)}__{name}.logits.npy"),
            "samples_out": str(_samples_path(store, model, name))}))
    return outcomes


def _measure_backend(name, outcomes, cfg, data, store, test_path, references) -> None:
    """Measure one backend's models; each row is written when done."""
    log(f"{name}: measuring {sum(item is not None for _, item in outcomes)} models ("
        + ("one shared process: --quick" if cfg.quick else "a fresh process each")
        + f", {cfg.threads} threads)")
    groups = [outcomes] if cfg.quick else [[o] for o in outcomes]
    teacher_row = None
    for group in groups:
        items = [item for _, item in group if item is not None]
        results = (run_worker(name, cfg.threads, cfg.device, cfg.latency, test_path, items,
                              store.root / ".work") if items else {})
        for row, item in group:
            if item is not None:
                file_mib, gz_mib = item["sizes"].result()
                row = _finish_row(row.with_(file_mib=file_mib, file_gz_mib=gz_mib),
                                  results[row.model], store, data, item["logits_out"],
                                  references[row.model], cfg.quick)
                log(f"{name}: {row.model}: p50 {_fmt(row.latency_ms_p50)} ms, "
                    f"AUC {_fmt(row.auc_roc, 3)}" + ("" if row.ok else f", FAILED: {row.error}"))
            if row.model == "teacher":
                teacher_row = row
            store.add(_relative_to_teacher(row, teacher_row))


def run_worker(backend: str, threads: int, device: str, plan, test_path: Path, items: list[dict],
               work: Path) -> dict:
    """Measure models in a fresh process; returns {model: worker result}.

    Normally one process per model: measured here, fp32 DenseNet-121 ran at 10.5 ms per
    inference in a fresh process but 17.3 ms in a process that had first run two
    MobileNetV2 models, so models sharing a process do not get equal conditions.
    --quick shares one process per backend to stay fast: a smoke test, not a measurement.
    """
    job = {"backend": backend, "threads": threads, "device": device,
           "test_images": str(test_path), "latency": plan.__dict__,
           "items": [{k: v for k, v in item.items() if k != "sizes"} for item in items]}
    job_path = work / f"job-{backend}.json"
    job_path.write_text(json.dumps(job))
    proc = subprocess.run([sys.executable, "-m", "bench.worker", str(job_path)],
                          stdout=subprocess.PIPE, text=True, env=worker_env(threads))
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            res = json.loads(line[len(RESULT_PREFIX):])
            results[res["model"]] = res
        else:
            sys.stderr.write(line + "\n")
    for item in items:
        results.setdefault(item["model"], {
            "model": item["model"],
            "error": f"measuring process exited with code {proc.returncode} before reporting"})
    return results


def worker_env(threads: int) -> dict:
    """The measuring process's environment: pinned threads, no telemetry, no noise."""
    from bench.backends import telemetry

    # c10's own deprecation notices bypass Python warnings; TORCH_CPP_LOG_LEVEL hides them.
    return telemetry.subprocess_env({**os.environ, "OMP_NUM_THREADS": str(threads),
                                     "PYTHONWARNINGS": "ignore", "TORCH_CPP_LOG_LEVEL": "ERROR"})


def _samples_path(store, model, backend) -> Path:
    path = store.root / "latency" / f"{safe_name(model)}__{backend}.npy"
    path.parent.mkdir(exist_ok=True)
    return path


PARITY_BATCH = 64
#: fp32 rows whose probabilities differ from PyTorch fp32 by more than this fail (the
#: fp32 exports measured here agree within 1e-5; lower precisions report, never fail).
PARITY_TOLERANCE_FP32 = 1e-3


def _finish_row(row: Result, res: dict, store: RunStore, data, logits_path: str,
                reference: np.ndarray, quick: bool = False) -> Result:
    from bench import metrics

    if "error" in res:
        return row.with_(status=STATUS_FAILED, error=res["error"])
    logits = np.load(logits_path)
    import torch

    probs = data.task.probabilities(torch.from_numpy(logits)).numpy()
    # Parity on probabilities, not logits: softmax ignores a shift common to all logits,
    # and the teacher's logits carry one of about +-50 that NNCF's int8 model drops (labels
    # still agreed on 99.75% of the test split), which a raw-logit difference reports as ~40.
    got = probs[:PARITY_BATCH]
    ref = data.task.probabilities(torch.from_numpy(reference)).numpy()
    diff = float(np.abs(got - ref).max())
    agree = float((data.task.predicted_labels(got) == data.task.predicted_labels(ref)).mean())
    row = row.with_(parity_max_abs=diff, parity_agree=agree)

    y_score = data.task.scores(probs)
    store.save_predictions(row.model, row.backend, data.test.labels, y_score, logits)
    auc, reasons = metrics.auc_roc(data.task, data.test.labels, y_score)
    fields = {k: res.get(k) for k in ("latency_ms_p50", "latency_ms_p90", "latency_ms_mean",
                                      "latency_ms_std", "latency_cold_ms", "latency_n",
                                      "peak_rss_mib", "energy_mj_per_inference")}
    notes = row.notes + ("; " + "; ".join(reasons) if reasons else "")
    status, error = STATUS_OK + (";quick" if quick else ""), ""
    if row.precision == "fp32" and diff > PARITY_TOLERANCE_FP32:
        status = STATUS_FAILED
        error = (f"parity: probabilities differ from PyTorch fp32 by {diff:.2e} > {PARITY_TOLERANCE_FP32:g}: "
                 "a broken export, not a result")
    return row.with_(status=status, error=error, auc_roc=auc, accuracy=metrics.accuracy(data.task, data.test.labels, probs),
                     energy_source=res.get("energy_source", ""), notes=notes, **fields)


def _relative_to_teacher(row: Result, teacher: Result | None) -> Result:
    if teacher is None or not teacher.ok:
        return row
    ratio = teacher.file_mib / row.file_mib if row.file_mib else None
    speed = (teacher.latency_ms_p50 / row.latency_ms_p50
             if row.latency_ms_p50 and teacher.latency_ms_p50 else None)
    return row.with_(compression_ratio=ratio, speedup=speed)


def _method_of(model: str, art) -> str:
    if model in ("teacher", "student"):
        return "baseline"
    return art.method if isinstance(art, methods.Artifact) else model.split("+")[-1].split(":")[0]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0][:300] if text else ''}"


def _fmt(v, digits=2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _print_table(rows: list[Result]) -> None:
    cols = [("model", 34), ("backend", 8), ("precision", 5), ("params", 10), ("file_mib", 8),
            ("compression_ratio", 6), ("latency_ms_p50", 8), ("speedup", 6), ("auc_roc", 6),
            ("status", 8)]
    head = {"compression_ratio": "ratio", "latency_ms_p50": "p50_ms", "precision": "prec"}
    print("  ".join(f"{head.get(c, c):>{w}}" if c != "model" else f"{c:<{w}}" for c, w in cols))
    for r in rows:
        cells = []
        for c, w in cols:
            v = getattr(r, c)
            if isinstance(v, float):
                v = f"{v:.3f}" if c == "auc_roc" else f"{v:.2f}"
            v = "-" if v is None else str(v)
            cells.append(f"{v:<{w}}" if c == "model" else f"{v:>{w}}")
        print("  ".join(cells))
