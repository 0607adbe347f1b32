"""A run directory as the report reads it: its rows, its manifest, and each row's files.

The report's one way into a run directory: every section (reports.sections,
reports.provenance) and every figure (reports.figures) reads the same rows and manifest
through a `RunView`, whose predictions and latency samples are loaded once per row; and
how a row's status reads (base status, qualifiers). Apart from the sections so that what
the page shows is decided in one place and how the run is read in another, and so that the
figures and the provenance read the run without importing the page's sections.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from bench.config.sections import flat_config
from bench.results.row import STATUS_OK, row_key
from bench.results.store import load_predictions, load_rows, load_samples


@dataclass
class RunView:
    """What the report reads: the rows, the manifest, and the files of each row."""

    root: Path
    rows: list[dict]
    manifest: dict
    problems: list[str] = field(default_factory=list)
    _cache: dict = field(default_factory=dict)

    @property
    def config(self) -> dict:
        """The manifest's config, flat whichever layout wrote it (schema 2-3 or 4)."""
        cfg = self.manifest.get("config")
        return flat_config(cfg if isinstance(cfg, dict) else None)

    def files(self, row: dict) -> Path:
        """The directory holding a row's predictions and samples (a --seeds run keeps
        them in its seed-<s> directories)."""
        seeds = self.manifest.get("seed_runs")
        if isinstance(seeds, dict) and row.get("seed") is not None:
            sub = seeds.get(str(row["seed"]))
            if sub:
                return self.root / Path(str(sub)).name
        return self.root

    def _load(self, kind: str, row: dict):
        key = (kind, *row_key(row), row.get("seed"))
        if key not in self._cache:
            loader = load_predictions if kind == "pred" else load_samples
            self._cache[key] = loader(self.files(row), row["model"], row["backend"],
                                      row["precision"])
        return self._cache[key]

    def predictions(self, row: dict) -> dict | None:
        """{y_true, y_score, task, ...} of a row, or None if absent or unreadable."""
        pred = self._load("pred", row)
        return pred if pred and "y_true" in pred and "y_score" in pred else None

    def samples(self, row: dict) -> list | None:
        return self._load("lat", row)

    def backends(self) -> list[str]:
        return list(dict.fromkeys(r["backend"] for r in self.rows))


def load_run(run_dir: Path) -> RunView:
    """The run directory's rows and manifest; ValueError (one line) if it is not a run."""
    root = Path(run_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: no such run directory")
    rows = [r.to_dict() for r in load_rows(root)]
    problems = []
    try:
        manifest = json.loads((root / "manifest.json").read_text())
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        manifest = {}
        problems.append("no manifest.json: provenance, versions and machine are unknown")
    except ValueError as exc:
        manifest = {}
        problems.append(f"manifest.json is unreadable ({exc}): provenance is unknown")
    return RunView(root, rows, manifest, problems)


def base_status(row: dict) -> str:
    return (row.get("status") or "").split(";")[0]


def qualifiers(row: dict) -> list[str]:
    return [q for q in (row.get("status") or "").split(";")[1:] if q]


def is_ok(row: dict) -> bool:
    return base_status(row) == STATUS_OK
