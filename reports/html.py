"""report.html: one self-contained page per run directory.

`write_report(run_dir)` reads only the run directory (results.json, manifest.json,
predictions/*.npz, latency/*.npz), so any run, old schemas included, can be re-rendered
(`python -m bench report RUN`). The run is read through reports.run; what the page shows
is decided in reports.sections (with reports.tables), reports.figures and
reports.provenance, how numbers read in reports.format, and the markup lives in
reports/templates, rendered by Jinja2 with autoescaping: every string that comes from the
run (model names, parameters, paths, errors, notes, class names) is escaped there, never
by hand. The page has no script and no external style, font or image (plots are PNG data
URIs), so it opens offline.

Layout, top to bottom:
  1. Summary: per backend the teacher with its figures, and the smallest (file_mib) and the
     fastest (latency_ms_p50) model whose verdict against the teacher is non-inferior.
  2. Warnings: estimated energy, quick and unstable rows, failed and n/a rows, missing
     files, single-process latency intervals, a dirty git tree.
  3. Published figures (runs made with a --preset that has them) beside ours.
  4. Results: the columns of the "main" view with units, 95% intervals as
     "0.87 [0.84, 0.90]", the best value per column marked by the column's declared
     direction among ok rows, statuses as badges with their reasons; every column in a
     collapsed table below.
  5. Plots: AUC against latency and against file size (Pareto front per backend), speedup
     and compression per model and backend, latency distributions from the raw samples,
     ROC curves and a 15-bin reliability diagram (teacher against the best compressed row).
  6. Provenance: each model's chain and parameters.
  7. Manifest: versions, machine, commit, machine probe, data, teacher, backends, config.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from reports.figures import figures
from reports.format import FILTERS
from reports.provenance import manifest, provenance
from reports.run import RunView, load_run
from reports.sections import facts, published, results, summary, warnings
from reports.tables import status

__all__ = ["render", "write_report"]


@cache
def environment():
    """The Jinja2 environment of reports/templates: autoescaping on, the number filters of
    reports.format, and undefined names as errors (a template typo fails the render)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=True, trim_blocks=True, lstrip_blocks=True,
        undefined=jinja2.StrictUndefined)
    env.filters.update(FILTERS)
    env.globals["status"] = status
    return env


def render(run: RunView) -> str:
    """The page of a loaded run, as HTML text."""
    return environment().get_template("report.html.j2").render(**build(run))


def write_report(run_dir: Path) -> Path:
    """Render RUN/report.html from the run directory; ValueError if it is not a run."""
    run = load_run(run_dir)
    out = run.root / "report.html"
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.write_text(render(run), encoding="utf-8")
    os.replace(tmp, out)
    return out


def build(run: RunView) -> dict:
    """Everything the template renders, section by section, in page order."""
    return {"title": f"medbench report: {run.root.name}", "facts": facts(run),
            "summary": summary(run), "warnings": warnings(run), "published": published(run),
            "results": results(run), "figures": figures(run), "provenance": provenance(run),
            "manifest": manifest(run), "has_manifest": bool(run.manifest)}
