"""A search's outputs: `trials.csv` (every trial, failed and infeasible ones included),
`search.html` (self-contained: the finalists' validation and test figures side by side,
the validation front, Optuna's history and importance plots as PNG data URIs) and the
console table. Reads the study and the finalists' run directory; computes nothing the
trials or the run did not measure."""

from __future__ import annotations

import base64
import csv
import io
import os
import warnings
from pathlib import Path

import numpy as np

from reports.plots import png, pyplot, style

VAL_COLUMNS = ("latency_ms", "latency_processes", "latency_ms_process", "file_mib", "macs", "params", "val_auc", "val_delta_auc",
               "val_delta_ci_low", "val_delta_ci_high", "val_verdict")
TEST_COLUMNS = ("latency_ms_p50", "speedup", "file_mib", "auc_roc", "delta_auc",
                "delta_auc_ci_low", "delta_auc_ci_high", "verdict", "status")


def trial_rows(study) -> list[dict]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        feasible = a.get("constraint", np.inf) <= 0
        rows.append({"trial": t.number, "state": t.state.name, "model": a.get("model", ""),
                     **{c: a.get(c) for c in VAL_COLUMNS},
                     "feasible": feasible if t.state.name == "COMPLETE" else "",
                     "seconds": (round((t.datetime_complete - t.datetime_start).total_seconds(), 1)
                                 if t.datetime_complete and t.datetime_start else None),
                     "error": a.get("error", "")})
    return rows


def trials_csv(study) -> str:
    rows = trial_rows(study)
    buf = io.StringIO()
    fields = ["trial", "state", "model", *VAL_COLUMNS, "feasible", "seconds", "error"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def finalist_table(study, state: dict, run_dir: Path | None, backend: str) -> list[dict]:
    """One row per finalist (validation, then test on the search's backend), then the
    reference chain, the student and the teacher (test only)."""
    tested = {}
    if run_dir is not None and (run_dir / "results.csv").exists():
        import pandas as pd

        df = pd.read_csv(run_dir / "results.csv")
        for _, r in df[df["backend"] == backend].iterrows():
            tested[r["model"]] = {c: _cell(r.get(c)) for c in TEST_COLUMNS}
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    rows = []
    for number in state.get("finalists") or []:
        a = trials[number].user_attrs
        rows.append({"role": "finalist", "trial": number, "model": a["model"],
                     "val": {c: a.get(c) for c in VAL_COLUMNS}, "test": tested.get(a["model"])})
    for role, model in (("reference", state["options"].get("reference")),
                        ("baseline", "student"), ("teacher", "teacher")):
        if model and model in tested and model not in [r["model"] for r in rows]:
            rows.append({"role": role, "trial": None, "model": model, "val": None,
                         "test": tested[model]})
    return rows


def _cell(v):
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else v


def console(root: Path, study, objectives, state: dict, run_dir: Path | None) -> str:
    lines = [f"search: {len(study.trials)} trials (all in trials.csv), finalists chosen on "
             f"validation, tested once on test ({objectives.backend}):"]
    head = (f"{'role':<10} {'model':<60} {'val ms':>7} {'val dAUC [95% CI]':>24} "
            f"{'test ms':>8} {'speedup':>8} {'test AUC':>8} {'test dAUC [95% CI]':>24} verdict")
    lines.append(head)
    for r in finalist_table(study, state, run_dir, objectives.backend):
        v, t = r["val"] or {}, r["test"] or {}
        lines.append(
            f"{r['role']:<10} {r['model'][:60]:<60} {_n(v.get('latency_ms')):>7} "
            f"{_ci(v, 'val_delta_auc', 'val_delta_ci_low', 'val_delta_ci_high'):>24} "
            f"{_n(t.get('latency_ms_p50')):>8} {_n(t.get('speedup')):>8} "
            f"{_n(t.get('auc_roc'), 3):>8} "
            f"{_ci(t, 'delta_auc', 'delta_auc_ci_low', 'delta_auc_ci_high'):>24} "
            f"{t.get('verdict') or '-'}")
    return "\n".join(lines)


def _n(v, digits: int = 2) -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{digits}f}"


def _ci(row: dict, mid: str, low: str, high: str) -> str:
    if row.get(mid) is None:
        return "-"
    return f"{row[mid]:+.3f} [{_n(row.get(low), 3)}, {_n(row.get(high), 3)}]"


def write(root: Path, study, objectives, state: dict, run_dir: Path | None, margin: float) -> Path:
    from reports.html import environment

    page = environment().get_template("search.html.j2").render(
        title=f"medbench search: {root.name}", objectives=[objectives.label(n) for n in objectives.names],
        backend=objectives.backend, margin=margin, state=state,
        finalists=finalist_table(study, state, run_dir, objectives.backend),
        trials=trial_rows(study), plots=_plots(study, objectives, margin, state),
        run_report=(os.path.relpath(run_dir / "report.html", root) if run_dir else None))
    out = root / "search.html"
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out


def _plots(study, objectives, margin: float, state: dict) -> list[dict]:
    """(title, PNG as base64, or why there is none) per figure."""
    plots = []

    def add(title, make):
        try:
            with style(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                fig = make()
            plots.append({"title": title, "png": base64.b64encode(png(fig)).decode("ascii"),
                          "why": None})
        except Exception as exc:  # noqa: BLE001 - a figure that cannot be drawn says why
            plots.append({"title": title, "png": None, "why": str(exc).splitlines()[0]})

    rows = [r for r in trial_rows(study) if r["state"] == "COMPLETE"]
    first = objectives.columns[0]

    def front():
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6.5, 4))
        chosen = set(state.get("finalists") or [])
        for label, pick, marker in (("infeasible", lambda r: not r["feasible"], "x"),
                                    ("non-inferior", lambda r: r["feasible"], "o"),
                                    ("finalist", lambda r: r["trial"] in chosen, "*")):
            pts = [r for r in rows if pick(r)]
            if pts:
                ax.scatter([r[first] for r in pts], [r["val_delta_auc"] for r in pts],
                           marker=marker, s=80 if marker == "*" else 30, label=label)
        ax.axhline(-margin, color="grey", linestyle="--", linewidth=1, label="-margin")
        ax.set_xlabel(objectives.label(objectives.names[0]))
        ax.set_ylabel("validation ΔAUC vs teacher")
        ax.legend(fontsize=7)
        fig.tight_layout()
        return fig

    if not rows:
        plots.append({"title": "validation front", "png": None, "why": "no trial completed"})
    else:
        add("Trials on validation: first objective against ΔAUC", front)
    from optuna.visualization import matplotlib as ov

    target = None if len(objectives.names) == 1 else (lambda t: t.values[0])
    name = objectives.label(objectives.names[0])
    add("Optuna: optimization history",
        lambda: _figure_of(ov.plot_optimization_history(study, target=target, target_name=name)))
    add("Optuna: parameter importances",
        lambda: _figure_of(ov.plot_param_importances(study, target=target, target_name=name)))
    return plots


def _figure_of(ax):
    return ax.figure if hasattr(ax, "figure") else ax[0].figure
