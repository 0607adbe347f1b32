"""The Result record: one frozen, typed row per (model, backend).

Each column declares its unit and whether higher is better in its field metadata;
reports and the gate read that instead of keeping column lists of their own. The same
record goes unchanged to CSV and JSON.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

SCHEMA_VERSION = 1

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_NA = "n/a"


def col(unit: str = "", better: str | None = None, doc: str = "", default=None):
    """A column: unit, direction ('higher', 'lower' or None) and a one-line meaning."""
    return field(default=default, metadata={"unit": unit, "better": better, "doc": doc})


@dataclass(frozen=True)
class Result:
    model: str = col(doc="the chain that produced the model, e.g. kd+quant.static; or teacher / student")
    method: str = col(doc="the last step's method; 'baseline' for teacher and student")
    backend: str = col(doc="runtime that ran it")
    arch: str = col(doc="architecture the model derives from")
    precision: str = col(doc="numeric format it runs in: fp32, bf16, fp16, int8")
    status: str = col(doc="ok, failed, or n/a; qualifiers follow after ';' (quick: a --quick smoke-test row, not a measurement)", default=STATUS_OK)
    error: str = col(doc="why a row failed or is n/a", default="")
    params: int | None = col("count", "lower", "parameters in the model's state (quantized weights included)")
    params_nonzero: int | None = col("count", "lower", "parameters that are not zero")
    weights_mib: float | None = col("MiB", "lower", "bytes of every tensor in the model's state")
    file_mib: float | None = col("MiB", "lower", "size of the file(s) this backend deploys")
    file_gz_mib: float | None = col("MiB", "lower", "the deployed file(s) gzipped: shows unstructured sparsity")
    compression_ratio: float | None = col("x", "higher", "teacher's file_mib / this row's, same backend")
    macs: int | None = col("MACs", "lower", "multiply-accumulates per image (int8 rows: their float parent's)")
    latency_ms_p50: float | None = col("ms", "lower", "median latency at batch 1")
    latency_ms_p90: float | None = col("ms", "lower", "90th percentile latency at batch 1")
    latency_ms_mean: float | None = col("ms", "lower", "mean latency at batch 1")
    latency_ms_std: float | None = col("ms", "lower", "standard deviation of latency")
    latency_cold_ms: float | None = col("ms", "lower", "first inference after loading, timed apart")
    latency_n: int | None = col("count", None, "timed iterations behind the latency figures")
    speedup: float | None = col("x", "higher", "teacher's latency_ms_p50 / this row's, same backend")
    threads: int | None = col("count", None, "intra-op threads the backend was pinned to")
    peak_rss_mib: float | None = col("MiB", "lower", "peak resident memory of the measuring process (VmHWM)")
    energy_mj_per_inference: float | None = col("mJ", "lower", "energy per batch-1 inference")
    energy_source: str = col(doc="rapl, nvml, or estimate:... with its assumptions", default="")
    parity_max_abs: float | None = col("probability", "lower", "max |class-probability difference| from PyTorch fp32 of the same model, fixed test batch")
    parity_agree: float | None = col("", "higher", "share of that batch whose predicted label equals PyTorch fp32's")
    auc_roc: float | None = col("", "higher", "test AUC-ROC (binary; macro one-vs-rest or per-label otherwise)")
    accuracy: float | None = col("", "higher", "test accuracy at threshold 0.5 / argmax")
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


def _clean(v):
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    return v
