"""The report's figures: which rows go into each plot (the ROC and reliability pair among
them: the teacher and the best compressed row), drawn by reports.plots.

Each figure comes back as plain data (a base64 PNG, or why there is none, or the error
that stopped it), so one figure that cannot be drawn never stops the page.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field

import numpy as np

from reports import plots
from reports.format import is_num
from reports.run import RunView, is_ok


@dataclass
class Figure:
    key: str  # which caption the template writes
    heading: str
    alt: str
    empty: str  # shown when there is nothing to draw
    png: str | None = None  # base64
    error: str | None = None
    extra: dict = field(default_factory=dict)  # what the caption names


def labels(rows: list[dict]) -> dict:
    """A plot label per row: the model, with its precision where the model has several."""
    precisions: dict[str, set] = {}
    for r in rows:
        precisions.setdefault(r["model"], set()).add(r["precision"])
    return {id(r): r["model"] + (f" [{r['precision']}]" if len(precisions[r["model"]]) > 1 else "")
            for r in rows}


def draw(fig: Figure, make) -> Figure:
    try:
        png = make()
    except Exception as exc:  # a report renders even when one figure cannot
        fig.error = f"{type(exc).__name__}: {exc}"
        return fig
    if png:
        fig.png = base64.b64encode(png).decode("ascii")
    return fig


def best_compressed(run: RunView) -> tuple[dict | None, dict | None, str]:
    """(teacher row, best compressed row, why): the ok non-teacher row with predictions and
    the highest AUC, preferring rows with a teacher on their backend and compression
    methods over the student baseline; ties go to the faster row."""
    ok = [r for r in run.rows if is_ok(r) and run.predictions(r) is not None]
    teachers = {r["backend"]: r for r in ok if r["model"] == "teacher"}
    cands = [r for r in ok if r["model"] != "teacher" and is_num(r.get("auc_roc"))]
    if not cands:
        return (next(iter(teachers.values()), None), None,
                "no ok compressed row with predictions and an AUC")

    def rank(r):
        return (r["backend"] in teachers, r.get("method") != "baseline", r["auc_roc"],
                -(r.get("latency_ms_p50") or math.inf))

    best = max(cands, key=rank)
    why = ("the highest AUC-ROC among ok compressed rows with predictions"
           + (" (compression methods first, then the student baseline)"
              if best.get("method") != "baseline" else " (the student baseline: no compression "
                                                       "method row qualified)")
           + (f"; the teacher on the same backend ({best['backend']})"
              if best["backend"] in teachers
              else "; no teacher row with predictions on its backend"))
    return teachers.get(best["backend"]), best, why


def figures(run: RunView) -> list[Figure]:
    ok = [r for r in run.rows if is_ok(r)]
    palette = plots.colors(r["backend"] for r in ok)
    out = []

    lat_pts = [r for r in ok if is_num(r.get("auc_roc")) and is_num(r.get("latency_ms_p50"))
               and r["latency_ms_p50"] > 0]
    out.append(draw(Figure("latency", "AUC-ROC against latency", "AUC-ROC against latency",
                           "no ok row has both an AUC and a latency"),
                    lambda: lat_pts and plots.tradeoff(
                        lat_pts, "latency_ms_p50",
                        "median latency, batch 1 (ms, log scale; bars: 95% interval)", palette,
                        ("latency_ms_ci_low", "latency_ms_ci_high"))))

    size_pts = [r for r in ok if is_num(r.get("auc_roc")) and is_num(r.get("file_mib"))
                and r["file_mib"] > 0]
    out.append(draw(Figure("size", "AUC-ROC against size", "AUC-ROC against file size",
                           "no ok row has both an AUC and a file size"),
                    lambda: size_pts and plots.tradeoff(
                        size_pts, "file_mib", "deployed file size (MiB, log scale)", palette,
                        facet=True)))

    bars = [r for r in ok if r["model"] != "teacher"
            and (is_num(r.get("speedup")) or is_num(r.get("compression_ratio")))]
    names = labels(bars)
    values = {m: {(names[id(r)], r["backend"]): r[m] for r in bars if is_num(r.get(m))}
              for m in ("speedup", "compression_ratio")}
    out.append(draw(Figure("bars", "Speedup and compression",
                           "speedup and compression per model and backend",
                           "no ok compressed row has a speedup or compression ratio"),
                    lambda: bars and plots.grouped_bars(list(dict.fromkeys(names.values())),
                                                        values, palette)))

    timed = [r for r in ok if run.samples(r)]
    names = labels(timed)
    samples = {(names[id(r)], r["backend"]): np.concatenate(run.samples(r)) for r in timed}
    out.append(draw(Figure("latency_boxes", "Latency distributions",
                           "latency distributions per model and backend",
                           "no latency samples in this run directory"),
                    lambda: samples and plots.latency_boxes(samples, palette)))

    teacher, best, why = best_compressed(run)
    curves = []
    if teacher is not None:
        curves.append((f"teacher ({teacher['backend']})", run.predictions(teacher), teacher))
    if best is not None:
        curves.append((f"{best['model']} ({best['backend']}, {best['precision']})",
                       run.predictions(best), best))
    out.append(draw(Figure("roc", "ROC and calibration", "ROC curves and reliability diagram",
                           "no predictions in this run directory"
                           + (f" ({why})" if best is None else ""),
                           extra={"best": best, "why": why}),
                    lambda: curves and plots.roc_and_reliability(curves)))
    return out
