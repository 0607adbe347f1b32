"""Hand-made run directories for the report and compare tests: rows, predictions and latency
samples written through RunStore, with every statistic computed by bench.stats as a real
run would (no model is trained or measured)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.results.row import Result
from bench.results.store import RunStore
from bench.stats.latency import latency_row, noise_floor, speedup_interval
from bench.stats.quality import quality_row
from bench.task_kinds import Task

#: model: (method, arch, precision, latency ms, file MiB, params, nonzero share, noise of
#: its own beside the teacher's: 0 is the teacher's scores)
MODELS = {
    "teacher": ("baseline", "densenet121", "fp32", 20.0, 27.0, 7_000_000, 1.0, 0.0),
    "student": ("baseline", "mobilenet_v2", "fp32", 6.0, 9.0, 2_260_000, 1.0, 1.2),
    "kd": ("kd", "mobilenet_v2", "fp32", 6.0, 9.0, 2_260_000, 1.0, 0.5),
    "prune.magnitude": ("prune.magnitude", "densenet121", "fp32", 20.0, 27.0, 7_000_000, 0.5, 0.3),
    "prune.structured": ("prune.structured", "densenet121", "fp32", 11.0, 14.0, 3_500_000, 1.0,
                         0.4),
    "quant.dynamic": ("quant.dynamic", "densenet121", "int8", 17.0, 26.0, 7_000_000, 1.0, 0.05),
    "quant.static": ("quant.static", "densenet121", "int8", 8.0, 7.5, 7_000_000, 0.99, 0.1),
    "kd+quant.static": ("quant.static", "mobilenet_v2", "int8", 2.5, 2.6, 2_260_000, 0.99, 0.6),
}
BACKENDS = ("torch", "onnxruntime", "openvino")
CLASSES = {"binary": ("normal", "opacity"), "multiclass": ("a", "b", "c", "d"),
           "multilabel": ("l0", "l1", "l2", "l3", "l4")}


def labels(kind: str, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng([seed, 99])
    if kind == "binary":
        return rng.integers(0, 2, n)
    if kind == "multiclass":
        return rng.integers(0, len(CLASSES[kind]), n)
    y = rng.integers(0, 2, (n, len(CLASSES[kind]))).astype(np.float64)
    y[rng.random(y.shape) < 0.1] = np.nan  # unknown labels: ignored
    return y


def scores(kind: str, y: np.ndarray, noise: float, seed) -> np.ndarray:
    """Scores as the store keeps them: P(positive) for binary, (N, K) otherwise. The
    teacher's noise (fixed by the labels' seed) plus `noise` of the model's own (`seed`),
    so that models close to the teacher are close case by case, as compressed ones are."""
    shape = y.shape if kind != "multiclass" else (len(y), len(CLASSES[kind]))
    common = np.random.default_rng(98).normal(size=shape)
    z = common + noise * np.random.default_rng(seed).normal(size=shape)
    if kind == "binary":
        return 1 / (1 + np.exp(-(1.2 * (2 * y - 1) + z)))
    if kind == "multiclass":
        z = 1.5 * np.eye(len(CLASSES[kind]))[y] + z
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return 1 / (1 + np.exp(-(1.2 * (2 * np.nan_to_num(y, nan=0.5) - 1) + z)))


def make_run(root: Path, models=tuple(MODELS), backends=BACKENDS, kind: str = "binary",
             n: int = 240, processes: int = 3, per_process: int = 200, seed: int = 0,
             latency_factor: float = 1.0, prediction_seed: int | None = None,
             failed: bool = True, quick: bool = False, preset: str | None = None,
             names: dict | None = None) -> Path:
    """A run directory with one row per (model, backend), teacher first on each backend,
    plus (failed=True) a failed row and an n/a row. names: model -> name as written (e.g.
    a hostile one); statistics, files and provenance use the written name."""
    names = names or {}
    store = RunStore(root)
    task = Task(kind, CLASSES[kind])
    y = labels(kind, n, seed)
    pseed = seed if prediction_seed is None else prediction_seed
    preds = {m: scores(kind, y, MODELS[m][7], [pseed, i]) for i, m in enumerate(models)}
    for b_i, backend in enumerate(backends):
        teacher_p50 = teacher_procs = floor = None
        for m_i, model in enumerate(models):
            method, arch, prec, ms, mib, params, nz, _ = MODELS[model]
            name = names.get(model, model)
            rng = np.random.default_rng([seed, b_i, m_i, 7])
            base = ms * (0.4 if backend != "torch" else 1.0) * latency_factor
            procs = [base * rng.lognormal(0.0, 0.05, per_process) * (1 + 0.01 * p)
                     for p in range(processes)]
            lat = latency_row(procs, n_boot=200, seed=0)
            teacher_scores = preds.get("teacher")
            q = quality_row(task, y, preds[model], teacher_probs=teacher_scores,
                            margin=0.02, n_boot=200, seed=0)
            status = "ok" + (";quick" if quick else "") + (";unstable" if lat["unstable"] else "")
            if model == "teacher":
                teacher_p50, teacher_procs = lat["latency_ms_p50"], procs
                floor = noise_floor(procs) if len(procs) > 1 else None
            interval = (speedup_interval(teacher_procs, procs, floor, n_boot=200)
                        if teacher_p50 and model != "teacher" else (None, None))
            row = Result(
                model=name, method=method, backend=backend, arch=arch, precision=prec,
                status=status, params=params, params_nonzero=int(params * nz),
                weights_mib=mib * 0.97, file_mib=mib, file_gz_mib=mib * 0.9 * nz,
                compression_ratio=MODELS["teacher"][4] / mib if "teacher" in models else None,
                macs=params * 8, threads=1, seed=seed,
                speedup=teacher_p50 / lat["latency_ms_p50"] if teacher_p50 else None,
                speedup_ci_low=interval[0], speedup_ci_high=interval[1],
                noise_floor=floor if teacher_p50 else None,
                latency_repeats=lat["latency_processes"],
                energy_mj_per_inference=lat["latency_ms_p50"] * 10,
                energy_source="estimate:codecarbon cpu_load, test figures",
                notes="; ".join(q["reasons"] + (["unstable: " + "; ".join(lat["unstable_reasons"])]
                                                if lat["unstable"] else [])),
                verdict=q["verdict"] or "",
                **{k: lat[k] for k in ("latency_ms_p50", "latency_ms_ci_low", "latency_ms_ci_high",
                                       "latency_ms_p90", "latency_ms_mean", "latency_ms_std",
                                       "latency_ms_iqr", "latency_ms_min", "latency_ms_max",
                                       "latency_n", "latency_cv", "throughput_per_s")},
                **{k: q[k] for k in ("auc_roc", "auc_ci_low", "auc_ci_high", "delta_auc",
                                     "delta_auc_ci_low", "delta_auc_ci_high", "delong_p",
                                     "accuracy", "f1", "sensitivity", "specificity", "threshold",
                                     "ece", "brier", "flip_rate")},
            )
            store.add(row)
            store.save_predictions(name, backend, y, preds[model], np.zeros((n, 2)), task=task)
            store.save_samples(name, backend, "", procs)
    if failed:
        store.add(Result(model="prune.broken", method="prune.broken", backend=backends[0],
                         arch="densenet121", precision="fp32", status="failed",
                         error="RuntimeError: deliberate <failure> & co"))
        store.add(Result(model="quant.dynamic", method="quant.dynamic", backend="openvino-npu",
                         arch="densenet121", precision="int8", status="n/a",
                         error="dynamic int8 does not exist on this backend"))
    manifest = {
        "created": "2026-01-01T00:00:00+00:00", "command": ["bench", "run"],
        "config": {"methods": "kd,prune,quant", "task": kind, "teacher": "densenet121",
                   "margin": 0.02, "quick": quick, "preset": preset, "seed": seed},
        "image_size": 32, "versions": {"bench": "0.1.0", "python": "3.11"},
        "machine": {"cpu": "test", "physical_cores": 2}, "git_commit": "abc123",
        "data": {"generator": "synthetic", "task": kind, "classes": list(CLASSES[kind])},
        "teacher": {"source": "trained", "arch": "densenet121"},
        "machine_probe": {"idle_w": 6.0, "gemm_peak_gmacs": {"fp32": 30.0}},
        "models": {names.get(m, m): {"model": names.get(m, m), "arch": MODELS[m][1],
                                     "steps": [] if MODELS[m][0] == "baseline" else
                                     [{"method": MODELS[m][0], "params": {"ratio": 0.5}}],
                                     "precision": MODELS[m][2], "notes": ["made by a test"],
                                     "seconds": 1.0} for m in models},
    }
    store.write_manifest(manifest)
    return Path(root)


def read_manifest(root: Path) -> dict:
    return json.loads((Path(root) / "manifest.json").read_text())
