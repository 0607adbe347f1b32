"""From measured parts to a Result row, in one step.

A row's parts: the exported row (identity, static figures, file sizes, notes), the
processes that timed it (immutable ProcessResults, with their latency statistics), its
quality (from the first process's predictions, computed once), the comparison with the
undistilled student, and its backend's teacher. `build_row` makes the Result from them
at once; the measuring plan calls it again whenever a part changes, so the stored row is
always the latest whole, never a row patched in place.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from bench.child.records import ProcessResult
from bench.results.row import STATUS_FAILED, STATUS_OK, Result
from bench.stats.latency import speedup_interval

PARITY_BATCH = 64
#: fp32 rows whose probabilities differ from PyTorch fp32 by more than this fail (the
#: fp32 exports measured here agree within 1e-5; lower precisions report, never fail).
PARITY_TOLERANCE_FP32 = 1e-3
#: what bench.stats.latency.latency_row returns that is not one of the row's own columns
#: as it stands: the noise floor is the backend's (its teacher's), set in _against_teacher
_NOT_THE_ROWS = ("noise_floor",)
_COLUMNS = {f.name for f in fields(Result)}


@dataclass(frozen=True)
class Target:
    """A row to measure: the row as exported, and the deployed file(s) to load."""

    base: Result
    files: tuple[str, ...]
    options: tuple[tuple[str, str], ...] = ()
    variant: str = ""  # a --precision variant (bf16, fp16), or ""


@dataclass(frozen=True)
class Quality:
    """A row's quality, from its predictions of the test split (computed once)."""

    probs: np.ndarray
    val_probs: np.ndarray | None
    columns: dict  # Result columns: parity, AUC and the rest (bench.stats.quality)
    notes: tuple[str, ...] = ()
    error: str | None = None  # a broken export (parity), which fails the row


@dataclass(frozen=True)
class RowState:
    """Everything measured for one row so far."""

    target: Target
    processes: tuple[ProcessResult, ...] = ()
    #: each process's raw timed samples (ms), read once from its file
    arrays: tuple[np.ndarray, ...] = ()
    latency: dict | None = None  # bench.stats.latency.latency_row over `arrays`
    quality: Quality | None = None
    vs_student: dict | None = None  # delta_auc_vs_student columns
    error: str | None = None  # a process failed

    @property
    def model(self) -> str:
        return self.target.base.model

    @property
    def usable(self) -> bool:
        return self.error is None and self.latency is not None and (
            self.quality is None or self.quality.error is None)

    def samples(self) -> list[np.ndarray]:
        return list(self.arrays)


def quality_of(state: RowState, logits: np.ndarray, val_logits: np.ndarray | None, data, cfg,
               reference: np.ndarray, teacher: RowState | None) -> Quality:
    """Parity against PyTorch fp32, then every quality column from the predictions."""
    import torch

    from bench.stats import quality

    task = data.task
    probs = task.probabilities(torch.from_numpy(logits)).numpy()
    val_probs = None
    if val_logits is not None:
        val_probs = task.probabilities(torch.from_numpy(val_logits)).numpy()
    # Parity on probabilities, not logits: softmax ignores a shift common to all logits,
    # and the teacher's logits carry one of about +-50 that NNCF's int8 model drops (labels
    # still agreed on 99.75% of the test split), which a raw-logit difference reports as ~40.
    got = probs[:PARITY_BATCH]
    ref = task.probabilities(torch.from_numpy(reference)).numpy()
    diff = float(np.abs(got - ref).max())
    agree = float((task.predicted_labels(got) == task.predicted_labels(ref)).mean())
    is_teacher = teacher is not None and teacher.target is state.target
    t_quality = teacher.quality if teacher is not None and not is_teacher else None
    ref_probs = probs if is_teacher else (t_quality.probs if t_quality else None)
    ref_val = val_probs if is_teacher else (t_quality.val_probs if t_quality else None)
    m = cfg.measurement
    q = quality.quality_row(
        task, data.test.labels, task.scores(probs),
        teacher_probs=None if ref_probs is None else task.scores(ref_probs),
        val_true=data.val.labels if val_probs is not None else None,
        val_probs=None if val_probs is None else task.scores(val_probs),
        teacher_val_probs=None if ref_val is None else task.scores(ref_val),
        groups=data.test.groups, margin=m.margin, operating_point=m.operating_point,
        n_boot=m.n_boot, seed=cfg.seed)
    columns = {k: q[k] for k in quality.COLUMNS}
    columns["verdict"] = columns["verdict"] or ""
    columns.update(parity_max_abs=diff, parity_agree=agree)
    notes = list(q["reasons"])
    if ref_probs is None:
        notes.append("no comparison with the teacher: its row on this backend has no predictions")
    error = None
    if state.target.base.precision == "fp32" and diff > PARITY_TOLERANCE_FP32:
        error = (f"parity: probabilities differ from PyTorch fp32 by {diff:.2e} > "
                 f"{PARITY_TOLERANCE_FP32:g}: a broken export, not a result")
    return Quality(probs, val_probs, columns, tuple(notes), error)


def against_student(state: RowState, student: RowState | None, data, cfg) -> dict | None:
    """A row of the student's architecture (kd, kd+...) against the undistilled student on
    the same backend and test cases: what distillation itself bought."""
    from bench.stats import quality

    if (student is None or student.target is state.target or student.quality is None
            or state.quality is None or state.target.base.arch != student.target.base.arch
            or not state.usable):
        return None
    task, m = data.task, cfg.measurement
    q = quality.quality_row(task, data.test.labels, task.scores(state.quality.probs),
                            teacher_probs=task.scores(student.quality.probs),
                            groups=data.test.groups, margin=m.margin, n_boot=m.n_boot,
                            seed=cfg.seed)
    return {"delta_auc_vs_student": q["delta_auc"],
            "delta_auc_vs_student_ci_low": q["delta_auc_ci_low"],
            "delta_auc_vs_student_ci_high": q["delta_auc_ci_high"],
            "delong_p_vs_student": q["delong_p"]}


def build_row(state: RowState, teacher: RowState | None, machine: dict, cfg) -> Result:
    """The row from its parts (module docstring), in one construction."""
    base = state.target.base
    fields: dict = {}
    notes = [base.notes] if base.notes else []
    status, error = STATUS_OK + (";quick" if cfg.quick else ""), ""
    q = state.quality
    if q is not None:
        fields.update(q.columns)
        notes += q.notes
        if q.error:
            status, error = STATUS_FAILED, q.error
    if state.vs_student:
        fields.update(state.vs_student)
    lat = state.latency
    if lat is not None:
        fields.update(_latency_fields(state, lat, base, machine))
        if lat["unstable"] and status.split(";")[0] == STATUS_OK:
            status += ";unstable"
            notes.append("unstable: " + "; ".join(lat["unstable_reasons"]))
        notes += lat["latency_notes"]
        fields.update(_against_teacher(state, teacher, fields, base, cfg))
    if state.error:
        status, error = STATUS_FAILED, state.error
    return replace(base, status=status, error=error, notes="; ".join(filter(None, notes)),
                   **fields)


def _latency_fields(state: RowState, lat: dict, base: Result, machine: dict) -> dict:
    runs = state.processes
    out = {k: v for k, v in lat.items() if k in _COLUMNS and k not in _NOT_THE_ROWS}
    out["latency_repeats"] = lat["latency_processes"]
    out["latency_cold_ms"] = _median([r.latency_cold_ms for r in runs])
    out["energy_mj_per_inference"] = _median([r.energy_mj_per_inference for r in runs])
    out["energy_source"] = runs[0].energy_source if runs else ""
    out["peak_rss_mib"] = max(r.peak_rss_mib or 0 for r in runs) or None
    out["load_rss_mib"] = _median([r.load_rss_mib for r in runs])
    out["machine"] = next((r.machine for r in runs if r.machine), "")
    p50 = out["latency_ms_p50"]
    if base.macs and p50:
        gmacs = base.macs / (p50 / 1e3) / 1e9
        peak = (machine.get("gemm_peak_gmacs") or {}).get(base.precision)
        out.update(gmacs_per_s=gmacs, peak_fraction=gmacs / peak if peak else None)
    return out


def _against_teacher(state: RowState, teacher: RowState | None, fields: dict, base: Result,
                     cfg) -> dict:
    """compression_ratio, speedup with its interval, and the noise floor, against the
    teacher's fp32 row on the same backend (see bench.stats.latency)."""
    if teacher is None or teacher.latency is None or teacher.error:
        return {}
    t_file = teacher.target.base.file_mib
    t_p50 = teacher.latency["latency_ms_p50"]
    floor = teacher.latency["noise_floor"]
    p50 = fields.get("latency_ms_p50")
    ratio = t_file / base.file_mib if base.file_mib and t_file else None
    speed = t_p50 / p50 if p50 else None
    low = high = None
    if speed is not None and teacher.target is not state.target and cfg.measurement.n_boot > 0:
        low, high = speedup_interval(teacher.samples(), state.samples(), floor,
                                     n_boot=cfg.measurement.n_boot, seed=cfg.seed)
    return {"compression_ratio": ratio, "speedup": speed, "speedup_ci_low": low,
            "speedup_ci_high": high, "noise_floor": floor}


def _median(values):
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None

