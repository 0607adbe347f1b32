"""What crosses the process boundary: an immutable job per measuring process, and an
immutable result per model it measured.

The bench writes a Job as JSON to a file and starts (or forks) a process on it; the
worker appends one ProcessResult per item, as a JSON line, to the job's `result_out`
file, flushed as each model finishes, so a process that dies mid-job still leaves the
results of the models before. Nothing is read from the worker's stdout. Where a process
dies or hangs (bench.measuring.launch), the bench appends that item's failed result to the
same file itself, so the file always holds one line per item measured so far, in order.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from bench.child.timed_loop import LatencyPlan

#: The default per-item timeout (a hung process is killed after it; see item_timeout_s).
TIMEOUT_FACTOR = 3.0
LOAD_ALLOWANCE_S = 120.0  # loading (twice where the row predicts) and the cold call
PREDICT_ALLOWANCE_S = 300.0  # predicting the test and validation splits, untimed


def item_timeout_s(plan: LatencyPlan, predicts: bool) -> float:
    """Seconds one item may take, from the previous item's result (or the worker's start):

        TIMEOUT_FACTOR * (warmup_s + min_s + max_s) + LOAD_ALLOWANCE_S
            + (PREDICT_ALLOWANCE_S if the item predicts the splits)

    The timed loop stops at max_s of wall time whatever the model, so the plan's seconds
    bound the timing; the factor covers the warm-up's minimum call count on a slow model,
    the cold call, and a machine loaded by others. Loading (OpenVINO compiles, TorchScript
    optimises on its first calls) and predicting the splits are not bounded by the plan:
    they get fixed allowances sized for the largest models here on 2 cores. It errs long
    on purpose: a hang costs this long once, a false kill costs a row. The default plan
    gives 217.5 s (517.5 s where the item predicts); --quick's, about 126 s (426 s).
    """
    timing = TIMEOUT_FACTOR * (plan.warmup_s + plan.min_s + plan.max_s)
    return timing + LOAD_ALLOWANCE_S + (PREDICT_ALLOWANCE_S if predicts else 0.0)


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
    #: seconds an item may go without a result before the process is killed as hung;
    #: None: scaled to the plan (item_timeout_s); 0: never
    timeout_s: float | None = None

    @property
    def item_timeout_s(self) -> float | None:
        """This job's per-item timeout in seconds, or None for no timeout."""
        if self.timeout_s is not None:
            return self.timeout_s if self.timeout_s > 0 else None
        return item_timeout_s(self.plan, any(i.predicts for i in self.items))

    def write(self, path: Path) -> Path:
        Path(path).write_text(json.dumps(asdict(self)))
        return Path(path)

    @staticmethod
    def read(path: Path) -> Job:
        return Job.read_doc(json.loads(Path(path).read_text()))

    @staticmethod
    def read_doc(doc: dict) -> Job:
        """The job from its JSON form (`asdict`), as written or as sent to a Ray node."""
        doc = dict(doc)
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
    machine: str | None = None  # where it ran (bench.results.machines.machine_key)

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
    """The results a process wrote, in order (none if it wrote none). A line cut short (a
    process killed while writing it) is not a result: that item is the one that failed."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    results = []
    for line in text.splitlines():
        try:
            results.append(ProcessResult.from_line(line))
        except (ValueError, TypeError, AttributeError):
            continue
    return results


def append_result(path: Path, result: ProcessResult) -> None:
    """Append a result the bench wrote itself (a process that died or hung), on a line of
    its own even after a line the process left unfinished."""
    with open(path, "a+b") as out:
        out.seek(0, 2)
        if out.tell():
            out.seek(-1, 2)
            if out.read(1) != b"\n":
                out.write(b"\n")
        out.write((result.to_line() + "\n").encode())
