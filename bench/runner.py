"""One run, in one direction: data -> teacher -> method chains -> artifacts -> backends
(a fresh worker process per model and backend) -> rows -> store -> report.

A method or backend failure becomes a row with status 'failed' and the error; the run
goes on, and the exit status at the end says whether anything failed.
"""

from __future__ import annotations

import contextlib
import gzip
import json
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
from bench import __version__, backends, launch, measuring
from bench.config import RunConfig
from bench.progress import log
from bench.result import STATUS_FAILED, STATUS_NA, Result
from bench.store import RunStore, stem

MIB = 1024 * 1024


def default_out_dir() -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path("reports") / "runs" / stamp


def run(cfg: RunConfig) -> int:
    """One run, or with --seeds one sub-run per seed plus a summary across them."""
    if not cfg.seeds:
        return _run_one(cfg)
    from bench import seeds

    root = Path(cfg.out) if cfg.out else default_out_dir()
    codes, runs = [], {}
    for seed in cfg.seeds:
        log(f"seed {seed} ({cfg.seeds.index(seed) + 1} of {len(cfg.seeds)})")
        runs[seed] = root / f"seed-{seed}"
        codes.append(_run_one(replace(cfg, seed=seed, seeds=[], out=str(runs[seed]))))
    summary = seeds.write_summary(root, runs)
    manifest = json.loads((runs[cfg.seeds[0]] / "manifest.json").read_text())
    RunStore(root).write_manifest({**manifest, "seeds": cfg.seeds,
                                   "seed_runs": {s: str(p.name) for s, p in runs.items()}})
    from reports.html import write_report

    write_report(root)
    log(f"summary across seeds {cfg.seeds}: {summary}")
    return max(codes)


def _run_one(cfg: RunConfig) -> int:
    import torch

    from bench.backends import telemetry
    from bench.data import load_dataset, resolve
    from bench.models import check_architecture
    from bench.teacher import get_ensemble, get_teacher
    from bench.training import use_device

    telemetry.switch_off()  # before any runtime is imported
    t_start = time.perf_counter()
    use_device(cfg.device)
    torch.set_num_threads(cfg.train_threads)  # measuring processes pin cfg.threads
    torch.manual_seed(cfg.seed)
    # Bad input fails here, before minutes of training.
    chains = methods.expand(cfg.methods)
    check_architecture(cfg.teacher, "--teacher")
    for arch in cfg.teachers:
        check_architecture(arch, "--teachers")
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
    if cfg.teachers:
        teacher = get_ensemble(cfg.teachers, data, cfg.teacher_epochs, cfg.seed, cfg.use_cache,
                               cfg.pretrained)
    else:
        teacher = get_teacher(cfg.teacher, data, cfg.teacher_epochs, cfg.seed,
                              cfg.teacher_checkpoint, cfg.use_cache, cfg.pretrained)
    store.update_manifest(data=data.info,
                          num_classes=data.task.num_outputs, image_size=cfg.image_size,
                          teacher={"source": teacher.source, **teacher.info})

    artifacts = _build_artifacts(cfg, chains, data, teacher)
    store.update_manifest(models={name: (a.provenance() if isinstance(a, methods.Artifact)
                                         else {"error": str(a)}) for name, a in artifacts.items()})

    work = store.root / ".work"
    work.mkdir(exist_ok=True)
    paths = measuring.Paths(test=_save_images(work / "test_images.npy", data.test.images),
                            val=(_save_images(work / "val_images.npy", data.val.images)
                                 if _needs_validation(cfg.operating_point) else None),
                            work=work)
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
        for outcomes in exported.values():  # sizes are in before anything is timed
            for _, item in outcomes:
                if item is not None:
                    item["file_mib"], item["file_gz_mib"] = item.pop("sizes").result()
    log("machine: idle power draw and GEMM peaks (probed, or from the cache if under 12 h old)")
    machine = launch.measure_machine(cfg, work)
    store.update_manifest(machine_probe=machine)
    outcomes = {name: [(row if item is None else row.with_(file_mib=item["file_mib"],
                                                           file_gz_mib=item["file_gz_mib"]), item)
                       for row, item in rows] for name, rows in exported.items()}
    measuring.measure_all(outcomes, cfg, data, store, paths, references, machine)
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
    from bench.training import STUDENT_LR
    from methods.kd import train_student

    ctx = methods.Context(
        task=data.task, train_images=data.train.images, train_labels=data.train.labels,
        calibration_images=data.calibration, teacher=teacher.module,
        teacher_logits=teacher.train_logits, teacher_member_logits=teacher.member_logits,
        student_arch=cfg.student, image_size=cfg.image_size,
        student_epochs=cfg.student_epochs, finetune_epochs=cfg.finetune_epochs, seed=cfg.seed,
        transfer_images=data.transfer, transfer_logits=teacher.transfer_logits,
        transfer_member_logits=teacher.member_transfer_logits,
    )
    root = methods.Artifact(name="teacher", arch=teacher.arch, module=teacher.module,
                            float_module=teacher.module, notes=(f"teacher ({teacher.source})",))
    out: dict[str, methods.Artifact | Exception] = {"teacher": root}
    start = time.perf_counter()
    try:
        log(f"student: training {cfg.student} without distillation (the KD baseline)")
        module = train_student(ctx, 0, STUDENT_LR, None, 0.0, 1.0, "student")
        out["student"] = methods.Artifact(
            name="student", arch=cfg.student, module=module, float_module=module,
            notes=("same student recipe and steps as kd, hard labels only",),
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
    from bench.models import count_buffers, count_macs, count_params, state_bytes

    # Counts come from the float model: an int8 row has its float parent's parameters.
    params, nonzero = count_params(artifact.float_module)
    try:
        macs = count_macs(artifact.float_module, image_size)
    except Exception:  # noqa: BLE001 - an uncountable graph leaves the cell empty
        macs = None
    return {"params": params, "params_nonzero": nonzero,
            "buffers": count_buffers(artifact.float_module),
            "weights_mib": state_bytes(artifact.module) / MIB, "macs": macs}


def _reference_logits(artifact: methods.Artifact, test_images: np.ndarray) -> np.ndarray:
    """PyTorch fp32 logits of the model on the parity batch: what every backend is checked against."""
    from bench.measuring import PARITY_BATCH
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
    """Deploy every model to one backend: [(row, worker item or None)] in model order.

    A float model is deployed once in fp32 and once more per --precision variant.
    """
    name = engine.name
    log(f"{name}: exporting {len(artifacts)} models"
        + (f" (+ {', '.join(cfg.precisions)} variants)" if cfg.precisions else ""))
    outcomes = []
    for model, art in artifacts.items():
        row = Result(model=model, method=_method_of(model, art), backend=name,
                     arch=getattr(art, "arch", ""), precision=getattr(art, "precision", ""),
                     threads=cfg.threads, seed=cfg.seed)
        if isinstance(art, Exception):
            outcomes.append((row.with_(status=STATUS_FAILED, error=_one_line(art)), None))
            continue
        row = row.with_(notes="; ".join(art.notes), **statics[model])
        variants = [""] + (list(cfg.precisions) if art.quantization is None else [])
        for variant in variants:
            outcomes.append(_export_one(engine, art, row, variant, store, env, gzip_pool))
    return outcomes


def _export_one(engine, art, row, variant, store, env, gzip_pool) -> tuple:
    model, name = row.model, engine.name
    if variant:
        row = row.with_(precision=variant)
    try:
        deployed = engine.export(art, store.artifact_dir(model, name, variant), env,
                                 variant or "fp32")
    except backends.NotApplicable as exc:
        with contextlib.suppress(OSError):  # nothing deployed: no empty folder left behind
            store.artifact_dir(model, name, variant).rmdir()
        return row.with_(status=STATUS_NA, error=str(exc)), None
    except Exception as exc:  # noqa: BLE001
        return row.with_(status=STATUS_FAILED, error=f"export: {_one_line(exc)}"), None
    row = row.with_(precision=deployed.precision, notes="; ".join([*art.notes, *deployed.notes]))
    return row, {
        "model": model, "variant": variant, "files": [str(f) for f in deployed.files],
        "options": deployed.options, "sizes": gzip_pool.submit(_file_sizes, deployed.files),
        "logits_out": str(store.root / ".work" / f"{stem(model, name, variant)}.logits.npy"),
        "val_logits_out": str(store.root / ".work" / f"{stem(model, name, variant)}.val.npy")}


def _save_images(path: Path, images: np.ndarray) -> Path:
    """What the workers feed every backend: 3 channels (grayscale repeated), float32."""
    np.save(path, np.repeat(images, 3, axis=1) if images.shape[1] == 1 else images)
    return path


def _needs_validation(operating_point: str) -> bool:
    from bench.stats.threshold import parse_operating_point

    return parse_operating_point(operating_point).kind != "threshold"


def _method_of(model: str, art) -> str:
    if model in ("teacher", "student"):
        return "baseline"
    return art.method if isinstance(art, methods.Artifact) else model.split("+")[-1].split(":")[0]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0][:300] if text else ''}"


def _print_table(rows: list[Result]) -> None:
    from bench.stats.latency import no_measurable_difference

    cols = [("model", 34), ("backend", 8), ("precision", 5), ("params", 10), ("file_mib", 8),
            ("compression_ratio", 6), ("latency_ms_p50", 8), ("speedup", 15), ("auc_roc", 6),
            ("status", 8)]
    head = {"compression_ratio": "ratio", "latency_ms_p50": "p50_ms", "precision": "prec"}
    print("  ".join(f"{head.get(c, c):>{w}}" if c != "model" else f"{c:<{w}}" for c, w in cols))
    for r in rows:
        cells = []
        for c, w in cols:
            v = getattr(r, c)
            if c == "speedup" and v is not None and r.model != "teacher":
                v = ("no difference" if no_measurable_difference(r.speedup_ci_low, r.speedup_ci_high)
                     else f"{v:.2f}" + (f" [{r.speedup_ci_low:.2f}-{r.speedup_ci_high:.2f}]"
                                        if r.speedup_ci_low is not None else ""))
            elif isinstance(v, float):
                v = f"{v:.3f}" if c == "auc_roc" else f"{v:.2f}"
            v = "-" if v is None else str(v)
            cells.append(f"{v:<{w}}" if c == "model" else f"{v:>{w}}")
        print("  ".join(cells))
    for r in rows:
        if r.delta_auc_vs_student is not None and r.backend == rows[0].backend:
            p = r.delong_p_vs_student
            print(f"{r.model} against the student (same steps, no teacher): AUC "
                  f"{r.delta_auc_vs_student:+.3f}"
                  + (f" [{r.delta_auc_vs_student_ci_low:+.3f}, {r.delta_auc_vs_student_ci_high:+.3f}]"
                     if r.delta_auc_vs_student_ci_low is not None else "")
                  + ("" if p is None else f", p = {p:.2g}"))
    floors = {r.backend: r.noise_floor for r in rows if r.model == "teacher" and r.noise_floor is not None}
    if floors:
        print("noise floor (the teacher's processes disagree by): "
              + ", ".join(f"{b} {f:.1%}" for b, f in floors.items())
              + "; 'no difference': the speedup's 95% interval, widened by it, holds 1")
