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
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from bench.result import SCHEMA_VERSION, Result


def safe_name(model: str) -> str:
    """A model name as a path component (':' ',' and the like become '_')."""
    return re.sub(r"[^A-Za-z0-9._+=-]", "_", model)


def stem(model: str, backend: str, variant: str = "") -> str:
    """The file name stem of one row's predictions and latency samples."""
    return f"{safe_name(model)}__{backend}" + (f"__{variant}" if variant else "")


def row_stem(model: str, backend: str, precision: str) -> str:
    """The stem of a stored row's files: its precision is a variant only for bf16 / fp16
    (int8 models are their own models, deployed without a variant)."""
    from bench.backends import LOWER_PRECISIONS

    return stem(model, backend, precision if precision in LOWER_PRECISIONS else "")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class RunStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "predictions").mkdir(exist_ok=True)
        (self.root / "artifacts").mkdir(exist_ok=True)
        self.rows: list[Result] = []

    def write_manifest(self, manifest: dict) -> None:
        _atomic_write(self.root / "manifest.json", json.dumps(manifest, indent=2, default=str))

    def update_manifest(self, **entries) -> None:
        path = self.root / "manifest.json"
        manifest = json.loads(path.read_text()) if path.exists() else {}
        manifest.update(entries)
        self.write_manifest(manifest)

    def artifact_dir(self, model: str, backend: str, variant: str = "") -> Path:
        path = self.root / "artifacts" / safe_name(model) / (backend + (f"-{variant}" if variant else ""))
        path.mkdir(parents=True, exist_ok=True)
        return path

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
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, path)
        return path

    def save_predictions(self, model: str, backend: str, y_true, y_score, logits,
                         variant: str = "") -> Path:
        path = self.predictions_path(model, backend, variant)
        buf = io.BytesIO()
        np.savez(buf, y_true=y_true, y_score=y_score, logits=logits)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, path)
        return path

    def add(self, row: Result) -> None:
        """Add a row, or replace the one with its (model, backend, precision) where it
        stands, and rewrite both tables at once, so a kill loses nothing."""
        key = (row.model, row.backend, row.precision)
        at = next((i for i, r in enumerate(self.rows)
                   if (r.model, r.backend, r.precision) == key), None)
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
    _atomic_write(Path(root) / "results.csv", buf.getvalue())
    doc = {"schema_version": SCHEMA_VERSION, "columns": Result.columns(), "rows": dicts}
    _atomic_write(Path(root) / "results.json", json.dumps(doc, indent=1))


def load_rows(run_dir: Path) -> list[Result]:
    path = Path(run_dir) / "results.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no results here (is this a run directory?)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    rows = doc.get("rows", []) if isinstance(doc, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{path}: not a medbench results file (expected a list of rows)")
    known = {c["name"] for c in Result.columns()}
    return [Result(**{k: v for k, v in row.items() if k in known}) for row in rows]


def load_predictions(run_dir: Path, model: str, backend: str, precision: str) -> dict | None:
    """A row's saved predictions {y_true, y_score, logits}, or None if absent or unreadable."""
    path = Path(run_dir) / "predictions" / f"{row_stem(model, backend, precision)}.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # missing or unreadable
        return None


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
