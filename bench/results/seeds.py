"""--seeds: the summary across whole-pipeline repeats, beside each run's own intervals.

Each seed is a complete run in RUN/seed-<s>/. RUN/results.csv holds every row of every
seed (the `seed` column tells them apart); RUN/summary.csv gives, per (model, backend,
precision), the mean and sample sd across seeds of each figure, and the mean of the
within-run AUC interval, which is how the CheXpert KD paper reports its AUCs
(mean +- sd over 3 seeds).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.cache import atomic_write_bytes
from bench.results.row import Result, view
from bench.results.store import load_rows, write_tables

#: the columns in the "seeds" view of bench.results.row, in declaration order
SUMMARIZED = tuple(view("seeds"))
KEY = ["model", "backend", "precision"]


def write_summary(root: Path, runs: dict[int, Path]) -> Path:
    rows = [r for run in runs.values() for r in load_rows(run)]
    write_tables(root, rows)  # every seed's rows, in the run directory's own format
    frame = pd.DataFrame([r.to_dict() for r in rows], columns=[c["name"] for c in Result.columns()])
    summary = summarize(frame)
    path = root / "summary.csv"
    atomic_write_bytes(path, summary.to_csv(index=False).encode())
    return path


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd (ddof=1) across seeds of the rows that measured (status ok...)."""
    ok = frame[frame["status"].astype(str).str.startswith("ok")]
    values = ok[KEY + list(SUMMARIZED)].copy()
    for c in SUMMARIZED:
        values[c] = pd.to_numeric(values[c], errors="coerce")
    grouped = values.groupby(KEY, sort=False)
    out = grouped.size().rename("n_seeds").to_frame()
    for c in SUMMARIZED:
        out[f"{c}_mean"] = grouped[c].mean()
        out[f"{c}_sd"] = grouped[c].std(ddof=1)
    return out.reset_index()
