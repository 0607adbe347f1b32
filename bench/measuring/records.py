"""What crosses the process boundary: an immutable job per measuring process, and an
immutable result per model it measured.

The bench writes a Job as JSON to a file and starts (or forks) a process on it; the
worker appends one ProcessResult per item, as a JSON line, to the job's `result_out`
file, flushed as each model finishes, so a process that dies mid-job still leaves the
results of the models before. Nothing is read from the worker's stdout.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from bench.measure.latency import LatencyPlan


@dataclass(frozen=True)
class JobItem:
    """One model to measure in the process."""

    model: str
    variant: str  # "" or a --precision variant (bf16, fp16)
    files: tuple[str, ...]
    samples_out: str  # where the worker saves the raw timed samples (ms, .npy)
    options: tuple[tuple[str, str], ...] = ()  # Deployed.options, as pairs
    #: where to save the test split's logits; None: this process only times
    logits_out: str | None = None
    val_logits_out: str | None = None  # the validation split's, where an operating point needs it

    @property
    def predicts(self) -> bool:
        return self.logits_out is not None


@dataclass(frozen=True)
class Job:
    """One measuring process: its backend, threads, inputs and the models, in order."""

    backend: str
    threads: int
    device: str
    plan: LatencyPlan
    test_images: str
    result_out: str
    items: tuple[JobItem, ...]
    val_images: str | None = None
    predict_threads: int | None = None  # threads for the untimed predictions (every core)
    idle_w: float | None = None  # the machine's idle draw, subtracted from energy

    def write(self, path: Path) -> Path:
        Path(path).write_text(json.dumps(asdict(self)))
        return Path(path)

    @staticmethod
    def read(path: Path) -> Job:
        doc = json.loads(Path(path).read_text())
        items = tuple(JobItem(**{**i, "files": tuple(i["files"]),
                                 "options": tuple(tuple(p) for p in i["options"])})
                      for i in doc.pop("items"))
        return Job(**{**doc, "plan": LatencyPlan(**doc["plan"]), "items": items})


@dataclass(frozen=True)
class ProcessResult:
    """What one process measured for one model (or why it could not)."""

    model: str
    samples_path: str | None = None
    latency_cold_ms: float | None = None
    energy_mj_per_inference: float | None = None
    energy_source: str = ""
    energy: dict = field(default_factory=dict)  # the energy window's other figures
    peak_rss_mib: float | None = None
    load_rss_mib: float | None = None
    seconds: float | None = None  # wall time of this model in the process
    logits_path: str | None = None  # set where this process predicted the test split
    val_logits_path: str | None = None
    error: str | None = None
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def samples(self) -> np.ndarray:
        return np.load(self.samples_path)

    def to_line(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_line(line: str) -> ProcessResult:
        doc = json.loads(line)
        known = {f.name for f in fields(ProcessResult)}
        return ProcessResult(**{k: v for k, v in doc.items() if k in known})


def read_results(path: Path) -> list[ProcessResult]:
    """The results a process wrote, in order (none if it wrote none)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    return [ProcessResult.from_line(line) for line in text.splitlines() if line.strip()]
