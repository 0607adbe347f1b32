"""The run directory: manifest, rows (written as they come, atomically), predictions
and artifacts. Layout:

    RUN/manifest.json
    RUN/results.csv, RUN/results.json
    RUN/predictions/<model>__<backend>[__<variant>].npz   (y_true, y_score, logits)
    RUN/latency/<model>__<backend>[__<variant>].npz       (raw samples in ms, one array
                                                          per measuring process: process_0, ...)
    RUN/artifacts/<model>/<backend>[-<variant>]/...

A variant is a lower precision asked for with --precision (bf16, fp16): the same model,
deployed again, on a row of its own.
    RUN/report.html                                        (reports.html.write_report)
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np

from bench.backends import LOWER_PRECISIONS
from bench.cache import atomic_write_bytes
from bench.results.row import OLDEST_READABLE_SCHEMA, SCHEMA_VERSION, Result, row_key


def safe_name(model: str) -> str:
    """A model name as a path component (':' ',' and the like become '_')."""
    return re.sub(r"[^A-Za-z0-9._+=-]", "_", model)


def stem(model: str, backend: str, variant: str = "") -> str:
    """The file name stem of one row's predictions and latency samples."""
    return f"{safe_name(model)}__{backend}" + (f"__{variant}" if variant else "")


def row_stem(model: str, backend: str, precision: str) -> str:
    """The stem of a stored row's files: its precision is a variant only for bf16 / fp16
    (int8 models are their own models, deployed without a variant)."""
    return stem(model, backend, precision if precision in LOWER_PRECISIONS else "")


class RunStore:
    def __init__(self, root: Path, resume: bool = False):
        """`resume`: keep the rows an earlier, killed attempt at this run stored."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "predictions").mkdir(exist_ok=True)
        (self.root / "artifacts").mkdir(exist_ok=True)
        self.rows: list[Result] = []
        if resume and (self.root / "results.json").exists():
            self.rows = load_rows(self.root)

    def write_manifest(self, manifest: dict) -> None:
        atomic_write_bytes(self.root / "manifest.json",
                           json.dumps(manifest, indent=2, default=str).encode())

    def update_manifest(self, **entries) -> None:
        path = self.root / "manifest.json"
        manifest = json.loads(path.read_text()) if path.exists() else {}
        manifest.update(entries)
        self.write_manifest(manifest)

    def artifact_dir(self, model: str, backend: str, variant: str = "") -> Path:
        """Where a cell's deployed files go (made whole by bench.pipeline.export, not here)."""
        return self.root / "artifacts" / safe_name(model) / (backend + (f"-{variant}" if variant else ""))

    def predictions_path(self, model: str, backend: str, variant: str = "") -> Path:
        return self.root / "predictions" / f"{stem(model, backend, variant)}.npz"

    def samples_path(self, model: str, backend: str, variant: str = "") -> Path:
        path = self.root / "latency" / f"{stem(model, backend, variant)}.npz"
        path.parent.mkdir(exist_ok=True)
        return path

    def save_samples(self, model: str, backend: str, variant: str, processes: list) -> Path:
        path = self.samples_path(model, backend, variant)
        buf = io.BytesIO()
        np.savez(buf, **{f"process_{i}": np.asarray(p, dtype=np.float64)
                         for i, p in enumerate(processes)})
        atomic_write_bytes(path, buf.getvalue())
        return path

    def save_process_log(self, model: str, backend: str, variant: str, lines: list[str]) -> Path:
        """Each measuring process's figures (ProcessResult JSON lines) beside its samples,
        so a resumed run restores the row's processes instead of measuring them again."""
        path = self.samples_path(model, backend, variant).with_suffix(".processes.jsonl")
        atomic_write_bytes(path, "".join(line + "\n" for line in lines).encode())
        return path

    def load_process_log(self, model: str, backend: str, variant: str) -> list[str]:
        path = self.samples_path(model, backend, variant).with_suffix(".processes.jsonl")
        try:
            return [ln for ln in path.read_text().splitlines() if ln.strip()]
        except OSError:
            return []

    def save_predictions(self, model: str, backend: str, y_true, y_score, logits,
                         variant: str = "", *, task) -> Path:
        """`task` (bench.task_kinds.Task) is stored beside the arrays, so no reader has to
        guess the task kind from their shapes."""
        path = self.predictions_path(model, backend, variant)
        buf = io.BytesIO()
        np.savez(buf, y_true=y_true, y_score=y_score, logits=logits,
                 task_kind=np.array(task.kind), class_names=np.array(list(task.class_names)))
        atomic_write_bytes(path, buf.getvalue())
        return path

    def add(self, row: Result) -> None:
        """Add a row, or replace the one with its (model, backend, precision) where it
        stands, and rewrite both tables at once, so a kill loses nothing."""
        key = row_key(row)
        at = next((i for i, r in enumerate(self.rows) if row_key(r) == key), None)
        if at is None:
            self.rows.append(row)
        else:
            self.rows[at] = row
        self.flush()

    def flush(self) -> None:
        write_tables(self.root, self.rows)


def write_tables(root: Path, rows: list[Result]) -> None:
    """results.csv and results.json of `rows`, each replaced atomically."""
    dicts = [r.to_dict() for r in rows]
    names = [c["name"] for c in Result.columns()]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for d in dicts:
        writer.writerow({k: "" if v is None else v for k, v in d.items()})
    atomic_write_bytes(Path(root) / "results.csv", buf.getvalue().encode())
    doc = {"schema_version": SCHEMA_VERSION, "columns": Result.columns(), "rows": dicts}
    atomic_write_bytes(Path(root) / "results.json", json.dumps(doc, indent=1).encode())


def load_rows(run_dir: Path) -> list[Result]:
    """The rows of a run's results.json, written by schema OLDEST_READABLE_SCHEMA or later.

    Columns an older schema lacks become their defaults (None for figures); columns this
    version does not know are dropped. Any other file is a one-line ValueError naming it,
    so `bench report|compare|check` can say what is wrong instead of misreading it.
    """
    path = Path(run_dir) / "results.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no results here (is this a run directory?)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file (not UTF-8): not a results file") from None
    except OSError as exc:  # a folder of that name, no permission
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    rows = doc.get("rows", []) if isinstance(doc, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{path}: not a medbench results file (expected a list of rows)")
    _check_schema(path, doc.get("schema_version"))
    known = {c["name"] for c in Result.columns()}
    return [Result(**{k: v for k, v in row.items() if k in known}) for row in rows]


def _check_schema(path: Path, version) -> None:
    readable = f"{OLDEST_READABLE_SCHEMA}..{SCHEMA_VERSION}"
    if version is None:
        raise ValueError(f"{path}: no schema_version (older than schema {OLDEST_READABLE_SCHEMA}"
                         f", or not medbench's); this one reads {readable}")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"{path}: schema_version {version!r} is not a whole number; "
                         f"this one reads {readable}")
    if version > SCHEMA_VERSION:
        raise ValueError(f"{path}: written by a newer medbench (schema {version}); "
                         f"this one reads {readable}")
    if version < OLDEST_READABLE_SCHEMA:
        raise ValueError(f"{path}: written by an older medbench (schema {version}); "
                         f"this one reads {readable}: rerun the benchmark")


def load_predictions(run_dir: Path, model: str, backend: str, precision: str) -> dict | None:
    """A row's saved predictions {y_true, y_score, logits, task}, or None if absent or
    unreadable. `task` is a bench.task_kinds.Task: stored in the file since schema 4; for older
    runs, from the manifest's data record, or else from the arrays' shapes
    (`legacy_task`), the one place where a task kind is ever inferred."""
    path = Path(run_dir) / "predictions" / f"{row_stem(model, backend, precision)}.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            pred = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # missing or unreadable
        return None
    from bench.task_kinds import Task

    kind, names = pred.pop("task_kind", None), pred.pop("class_names", None)
    if kind is not None and names is not None:
        pred["task"] = Task(str(kind), tuple(str(n) for n in names))
    else:
        pred["task"] = legacy_task(run_dir, pred["y_true"], pred["y_score"])
    return pred


def legacy_task(run_dir: Path, y_true, y_score):
    """The task of a schema 2-3 predictions file, which did not record it: the manifest's
    `task` (schema 4), its data record (the generator's), or else the arrays' shapes:
    1-D scores are binary, 2-D scores with 1-D labels multiclass, 2-D both multilabel."""
    from bench.task_kinds import Task

    try:
        manifest = json.loads((Path(run_dir) / "manifest.json").read_text())
    except (OSError, ValueError):
        manifest = {}
    task = manifest.get("task") or {}
    if task.get("kind") and task.get("class_names"):
        return Task(task["kind"], tuple(task["class_names"]))
    data = manifest.get("data") or {}
    if data.get("task") in ("binary", "multiclass", "multilabel") and data.get("classes"):
        return Task(data["task"], tuple(data["classes"]))
    if np.ndim(y_score) == 1:
        return Task("binary", ("negative", "positive"))
    n = np.shape(y_score)[1]
    kind = "multilabel" if np.ndim(y_true) == 2 else "multiclass"
    return Task(kind, tuple(f"class {i}" for i in range(n)))


def load_samples(run_dir: Path, model: str, backend: str, precision: str) -> list | None:
    """A row's raw latency samples (ms), one array per measuring process, or None."""
    path = Path(run_dir) / "latency" / f"{row_stem(model, backend, precision)}.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            names = sorted((k for k in z.files if k.startswith("process_")),
                           key=lambda k: int(k.split("_")[1]))
            return [np.asarray(z[k], dtype=np.float64) for k in names] or None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
