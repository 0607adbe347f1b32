"""The Result record: one frozen, typed row per (model, backend).

Each column declares its unit and whether higher is better in its field metadata;
reports and the gate read that instead of keeping column lists of their own. The same
record goes unchanged to CSV and JSON.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

SCHEMA_VERSION = 5  # 2: statistics columns (issue 4), seed, precision variants
# 3: params count nn.Parameters only (buffers apart); speedup interval; noise floor;
#    distilled rows against the student baseline
# 4: predictions files and the manifest record the task (kind and class names); the
#    config in the manifest is in sections; columns carry their views and gate
# 5: what compressing cost (compress_seconds, compress_steps); the teacher's training rule
#: the oldest results.json this version still reads (bench.results.store.load_rows)
OLDEST_READABLE_SCHEMA = 2

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_NA = "n/a"


#: the views a column can appear in (its `views` metadata):
#:   main     the report's main results table
#:   summary  the report's per-backend summary table
#:   console  the table printed at the end of a run
#:   seeds    summarized as mean and sd across --seeds
#:   compare  listed by `bench compare` as an exact change (deterministic figures)
VIEWS = ("main", "summary", "console", "seeds", "compare")
#: how `bench check` gates a column (its `gate` metadata):
#:   exact   equal (counts) or within bench.results.baseline.ROUNDING (sizes)
#:   ratio   within the baseline's relative tolerance (speedup)
#:   margin  may not fall below the baseline by more than the margin (AUC)
GATES = ("exact", "ratio", "margin")


def col(unit: str = "", better: str | None = None, doc: str = "", default=None, *,
        views: tuple[str, ...] = (), gate: str | None = None, interval_of: str | None = None,
        label: str | None = None, width: int | None = None):
    """A column: unit, direction ('higher', 'lower' or None), a one-line meaning, and how
    the views use it: `views` (see VIEWS), `gate` (see GATES), `interval_of` (this is the
    low or high end of that column's 95% interval: its name ends in _ci_low / _ci_high),
    and for the console a short `label` and a `width`."""
    assert set(views) <= set(VIEWS) and gate in (None, *GATES)
    return field(default=default, metadata={
        "unit": unit, "better": better, "doc": doc, "views": tuple(views), "gate": gate,
        "interval_of": interval_of, "label": label, "width": width})


@dataclass(frozen=True)
class Result:
    model: str = col(doc="the chain that produced the model, e.g. kd+quant.static; or teacher / student", views=('main', 'summary', 'console'), width=34)
    method: str = col(doc="the last step's method; 'baseline' for teacher and student")
    backend: str = col(doc="runtime that ran it", views=('main', 'console'), width=8)
    arch: str = col(doc="architecture the model derives from")
    precision: str = col(doc="numeric format it runs in: fp32, bf16, fp16, int8", views=('main', 'summary', 'console'), label='prec', width=5)
    machine: str = col(doc="the machine its latency was measured on: a key of the manifest's `machines` (CPU, cores, OS, runtimes)", default="")
    status: str = col(doc="ok, failed, or n/a; qualifiers follow after ';' (quick: a --quick smoke-test row, not a measurement)", default=STATUS_OK, views=('main', 'console'), width=8)
    error: str = col(doc="why a row failed or is n/a", default="")
    params: int | None = col("count", "lower", "trainable parameters (nn.Parameter elements), as papers count them; int8 rows: their float parent's", views=('main', 'console', 'seeds', 'compare'), gate='exact', width=10)
    params_nonzero: int | None = col("count", "lower", "of those parameters, the ones that are not zero", views=('main', 'seeds', 'compare'), gate='exact')
    buffers: int | None = col("count", None, "floating-point buffer elements (batch-norm running statistics), not in params")
    weights_mib: float | None = col("MiB", "lower", "bytes of every tensor in the model's state", views=('compare',), gate='exact')
    file_mib: float | None = col("MiB", "lower", "size of the file(s) this backend deploys", views=('main', 'summary', 'console', 'seeds', 'compare'), width=8)
    file_gz_mib: float | None = col("MiB", "lower", "the deployed file(s) gzipped: shows unstructured sparsity", views=('compare',))
    compression_ratio: float | None = col("x", "higher", "teacher's file_mib / this row's, same backend", views=('main', 'summary', 'console', 'seeds'), gate='exact', label='ratio', width=6)
    macs: int | None = col("MACs", "lower", "multiply-accumulates per image (int8 rows: their float parent's)", views=('main', 'compare'))
    latency_ms_p50: float | None = col("ms", "lower", "median latency at batch 1: the median of the per-process medians", views=('main', 'summary', 'console', 'seeds'), label='p50_ms', width=8)
    latency_ms_ci_low: float | None = col("ms", "lower", "bootstrap 95% interval of latency_ms_p50, low end", interval_of='latency_ms_p50')
    latency_ms_ci_high: float | None = col("ms", "lower", "bootstrap 95% interval of latency_ms_p50, high end", interval_of='latency_ms_p50')
    latency_ms_p90: float | None = col("ms", "lower", "90th percentile (only with n >= 64)")
    latency_ms_p99: float | None = col("ms", "lower", "99th percentile (only with n >= 662)")
    latency_ms_mean: float | None = col("ms", "lower", "mean latency")
    latency_ms_std: float | None = col("ms", "lower", "standard deviation of latency")
    latency_ms_iqr: float | None = col("ms", "lower", "interquartile range of latency")
    latency_ms_min: float | None = col("ms", "lower", "fastest timed inference")
    latency_ms_max: float | None = col("ms", "lower", "slowest timed inference")
    latency_cold_ms: float | None = col("ms", "lower", "first inference after loading, timed apart (median over processes)")
    latency_n: int | None = col("count", None, "timed iterations behind the latency figures, all processes")
    latency_repeats: int | None = col("count", None, "fresh measuring processes behind the latency figures")
    latency_cv: float | None = col("", "lower", "coefficient of variation (see docs/results.md: Statistics)", views=('main',))
    throughput_per_s: float | None = col("1/s", "higher", "batch-1 inferences per second: 1000 / latency_ms_p50")
    speedup: float | None = col("x", "higher", "teacher's latency_ms_p50 / this row's, same backend", views=('main', 'summary', 'console', 'seeds'), gate='ratio', width=15)
    speedup_ci_low: float | None = col("x", "higher", "95% interval of speedup, low end: bootstrap of both headlines, widened by the noise floor", interval_of='speedup')
    speedup_ci_high: float | None = col("x", "higher", "95% interval of speedup, high end; an interval holding 1 is 'no measurable difference'", interval_of='speedup')
    noise_floor: float | None = col("", "lower", "this backend's noise floor: its teacher's processes' largest median / smallest - 1")
    threads: int | None = col("count", None, "intra-op threads the backend was pinned to")
    gmacs_per_s: float | None = col("GMAC/s", "higher", "macs / latency_ms_p50")
    peak_fraction: float | None = col("", "higher", "gmacs_per_s / this machine's measured GEMM peak in the row's precision")
    peak_rss_mib: float | None = col("MiB", "lower", "peak resident memory of the measuring process (VmHWM)")
    load_rss_mib: float | None = col("MiB", "lower", "resident memory added by loading the model")
    energy_mj_per_inference: float | None = col("mJ", "lower", "energy per batch-1 inference, the idle draw subtracted", views=('main', 'seeds'))
    energy_source: str = col(doc="rapl, nvml, or estimate:... with its assumptions", default="")
    parity_max_abs: float | None = col("probability", "lower", "max |class-probability difference| from PyTorch fp32 of the same model, fixed test batch")
    parity_agree: float | None = col("", "higher", "share of that batch whose predicted label equals PyTorch fp32's")
    auc_roc: float | None = col("", "higher", "test AUC-ROC (binary; macro one-vs-rest or per-label otherwise)", views=('main', 'summary', 'console', 'seeds'), gate='margin', width=6)
    auc_ci_low: float | None = col("", "higher", "stratified bootstrap 95% interval of auc_roc, low end", views=('seeds',), interval_of='auc_roc')
    auc_ci_high: float | None = col("", "higher", "stratified bootstrap 95% interval of auc_roc, high end", views=('seeds',), interval_of='auc_roc')
    delta_auc: float | None = col("", "higher", "auc_roc minus the teacher's on the same backend and test cases", views=('main', 'summary', 'seeds'))
    delta_auc_ci_low: float | None = col("", "higher", "paired bootstrap 95% interval of delta_auc, low end", interval_of='delta_auc')
    delta_auc_ci_high: float | None = col("", "higher", "paired bootstrap 95% interval of delta_auc, high end", interval_of='delta_auc')
    delong_p: float | None = col("", None, "DeLong's test p-value, this model's AUC against the teacher's", views=('main',))
    verdict: str = col(doc="non-inferior / inferior / inconclusive against the teacher at the run's margin", default="", views=('main', 'summary'))
    delta_auc_vs_student: float | None = col("", "higher", "student-architecture rows (kd, kd+...): auc_roc minus the undistilled student's, same backend and cases", views=('main',))
    delta_auc_vs_student_ci_low: float | None = col("", "higher", "paired bootstrap 95% interval of delta_auc_vs_student, low end", interval_of='delta_auc_vs_student')
    delta_auc_vs_student_ci_high: float | None = col("", "higher", "paired bootstrap 95% interval of delta_auc_vs_student, high end", interval_of='delta_auc_vs_student')
    delong_p_vs_student: float | None = col("", None, "DeLong's test p-value (paired bootstrap beyond binary), this model against the student", views=('main',))
    accuracy: float | None = col("", "higher", "test accuracy at the threshold", views=('main', 'seeds'))
    f1: float | None = col("", "higher", "macro F1 at the threshold", views=('seeds',))
    sensitivity: float | None = col("", "higher", "true-positive rate at the threshold (macro for several classes)", views=('main', 'seeds'))
    specificity: float | None = col("", "higher", "true-negative rate at the threshold (macro for several classes)", views=('main', 'seeds'))
    threshold: float | None = col("", None, "decision threshold on P(positive) (fixed, or chosen on validation)")
    ece: float | None = col("", "lower", "expected calibration error, 15 equal-width bins", views=('main', 'seeds'))
    brier: float | None = col("", "lower", "Brier score", views=('seeds',))
    flip_rate: float | None = col("", "lower", "share of test cases whose predicted label differs from the teacher's", views=('main', 'seeds'))
    compress_seconds: float | None = col("s", "lower", "wall time that produced the model from the teacher: every step of its chain (training, pruning, calibration), plus what the method's realisation on this backend did when deployed (its calibration, max_drop's layer search, pt2e QAT); the teacher's own training is the manifest's `teacher`", views=('main', 'seeds'))
    compress_steps: int | None = col("count", "lower", "optimiser steps that produced the model from the teacher, every step of its chain plus its realisation on this backend (pt2e QAT trains when deployed) (0: no training)", views=('main', 'seeds'))
    seed: int | None = col("", None, "seed of the pipeline that made this row")
    notes: str = col(doc="what the method did, in words (e.g. what dynamic int8 really quantized)", default="")

    @staticmethod
    def columns() -> list[dict]:
        return [{"name": f.name, **f.metadata} for f in fields(Result)]

    def to_dict(self) -> dict:
        return {k: _clean(v) for k, v in asdict(self).items()}

    def with_(self, **changes) -> Result:
        return replace(self, **changes)

    @property
    def ok(self) -> bool:
        return self.status.split(";")[0] == STATUS_OK


#: the columns that identify a row within one run: one row per (model, backend, precision)
KEY_COLUMNS = ("model", "backend", "precision")


def row_key(row: Result | dict) -> tuple[str, str, str]:
    """A row's identity within a run, from a Result or its dict form (the one place it
    is built: the store, the plan, the gate, compare and the report use it)."""
    if isinstance(row, dict):
        return tuple(row[k] for k in KEY_COLUMNS)
    return tuple(getattr(row, k) for k in KEY_COLUMNS)


def row_label(row: Result | dict) -> str:
    """The row's key as people read it: `model / backend / precision`."""
    return " / ".join(row_key(row))


def _clean(v):
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    return v


_META = {f.name: dict(f.metadata) for f in fields(Result)}


def meta(name: str) -> dict:
    """A column's metadata (unit, better, doc, views, gate, interval_of, label, width)."""
    return _META[name]


def view(name: str) -> list[str]:
    """The columns of a view (see VIEWS), in declaration order."""
    if name not in VIEWS:
        raise ValueError(f"unknown view {name!r}; known: {', '.join(VIEWS)}")
    return [c for c, m in _META.items() if name in m["views"]]


def gated(kind: str) -> list[str]:
    """The columns `bench check` gates this way (see GATES)."""
    return [c for c, m in _META.items() if m["gate"] == kind]


def interval(name: str) -> tuple[str, str] | None:
    """(low, high) column names of a headline's 95% interval, or None if it has none."""
    ends = [c for c, m in _META.items() if m["interval_of"] == name]
    return (ends[0], ends[1]) if len(ends) == 2 else None


def with_intervals(columns: list[str]) -> list[tuple[str, ...]]:
    """Each column as (column,) or (headline, low, high): how tables show intervals."""
    return [(c, *interval(c)) if interval(c) else (c,) for c in columns]



def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def nothing_to_transfer(rows: list[dict]) -> str | None:
    """What a reader must know when the teacher is not clearly better than the student on
    the test split: the paired 95% interval of the student's ΔAUC against the teacher
    reaches 0 (fp32 rows of the first backend that has the student); None otherwise."""
    for r in rows:
        if (r.get("model") == "student" and str(r.get("status", "")).split(";")[0] == STATUS_OK
                and r.get("precision") == "fp32" and _is_num(r.get("delta_auc"))):
            low, high = r.get("delta_auc_ci_low"), r.get("delta_auc_ci_high")
            if _is_num(high) and high < 0:
                return None
            ci = f" [{low:+.3f}, {high:+.3f}]" if _is_num(low) and _is_num(high) else ""
            return (f"the teacher is not clearly better than the student on the test split "
                    f"(student - teacher ΔAUC {r['delta_auc']:+.3f}{ci} on {r['backend']}): "
                    "distillation had nothing to transfer, so kd rows measure the student "
                    "recipe and the unlabelled images, not the teacher's knowledge")
    return None
