"""The report's figures, as PNG bytes: seaborn on matplotlib (Agg); the points they draw
(Pareto fronts, ROC and reliability curves) are reports.curves'.

Pure functions of rows, samples and predictions: nothing here reads files or computes a
figure the rows already hold (curves are labelled with the row's stored auc_roc and ece).
`pyplot()` imports matplotlib with the Agg backend and its config/font cache inside the
bench cache (else matplotlib writes one under $HOME); `seaborn()` imports seaborn after it.
Styles are applied per figure (a context), never globally, so a process that renders a
report keeps its own matplotlib settings.
"""

from __future__ import annotations

import io
import os
from contextlib import contextmanager

import numpy as np

from bench.cache import cache_dir
from reports.curves import N_BINS, pareto_front, reliability_bins, roc_points

MARKERS = {"fp32": "o", "bf16": "s", "fp16": "D", "int8": "^"}


def pyplot():
    os.environ.setdefault("MPLCONFIGDIR", str(cache_dir() / "matplotlib"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def seaborn():
    pyplot()  # matplotlib first: its backend and config directory
    import seaborn as sns

    return sns


@contextmanager
def style():
    """seaborn's whitegrid style and a compact context, for one figure only."""
    sns = seaborn()
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.8):
        yield sns


def colors(backends) -> dict:
    """A fixed colour per backend, in order of appearance."""
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
    return {b: palette[i % len(palette)] for i, b in enumerate(dict.fromkeys(backends))}


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    pyplot().close(fig)
    return buf.getvalue()


def plain_log_axis(axis) -> None:
    """Log-scale tick labels as plain numbers (2, 5, 10, 20), not 2x10^0."""
    from matplotlib.ticker import FuncFormatter

    def label(v, _pos, minor=False):
        if v <= 0:
            return ""
        lead = round(v / 10 ** np.floor(np.log10(v) + 1e-9), 6)
        return f"{v:g}" if not minor or lead in (2.0, 5.0) else ""

    axis.set_major_formatter(FuncFormatter(label))
    axis.set_minor_formatter(FuncFormatter(lambda v, pos: label(v, pos, minor=True)))


def _frame(points: list[dict], keys):
    """A pandas DataFrame of those keys of the points, for seaborn."""
    import pandas as pd

    return pd.DataFrame([{k: p.get(k) for k in keys} for p in points], columns=list(keys))


def tradeoff(points: list[dict], x: str, xlabel: str, palette: dict, x_ci=None,
             facet: bool = False) -> bytes:
    """AUC against `x` (log scale): a seaborn scatter with one colour per backend and a
    marker per precision, 95% intervals as bars, the Pareto front per backend as a step
    line; facet=True: one panel per backend (for figures that hardly differ between
    backends, such as file size). points: dicts with model, backend, precision, auc_roc,
    auc_ci_low/high and x (and x_ci's keys if given)."""
    plt = pyplot()  # first: matplotlib's config directory (see pyplot)
    from matplotlib.lines import Line2D

    present = [b for b in palette if any(p["backend"] == b for p in points)]
    precisions = list(dict.fromkeys(p["precision"] for p in points))
    markers = {p: MARKERS.get(p, "o") for p in precisions}
    panels = present if facet else [None]
    with style() as sns:
        fig, axes = plt.subplots(1, len(panels), sharey=True, squeeze=False,
                                 figsize=(8.5 if not facet else 4.2 * len(panels), 5))
        for ax, panel in zip(axes[0], panels, strict=True):
            for backend in (present if panel is None else [panel]):
                pts = [p for p in points if p["backend"] == backend]
                _tradeoff_panel(sns, ax, pts, x, x_ci, palette, markers)
            ax.set_xscale("log")
            plain_log_axis(ax.xaxis)
            ax.set_xlabel(xlabel, fontsize=9)
            ax.set_ylabel("test AUC-ROC (95% interval)")
            ax.grid(alpha=0.3, which="both")
            if panel is not None:
                ax.set_title(panel, fontsize=10)
        handles = [Line2D([], [], color=palette[b], lw=1.5, label=f"{b}: Pareto front")
                   for b in present]
        handles += [Line2D([], [], ls="", marker=markers[p], color="#555", label=p)
                    for p in precisions]
        axes[0][0].legend(handles=handles, fontsize=8, loc="best")
        fig.tight_layout()
        return png(fig)


def _tradeoff_panel(sns, ax, pts, x, x_ci, palette, markers) -> None:
    xs = np.array([p[x] for p in pts], dtype=float)
    ys = np.array([p["auc_roc"] for p in pts], dtype=float)
    color = palette[pts[0]["backend"]]
    for p, xv, yv in zip(pts, xs, ys, strict=True):
        yerr = _err(yv, p.get("auc_ci_low"), p.get("auc_ci_high"))
        xerr = _err(xv, p.get(x_ci[0]), p.get(x_ci[1])) if x_ci else None
        if xerr is not None or yerr is not None:
            ax.errorbar(xv, yv, xerr=xerr, yerr=yerr, fmt="none", ecolor=color,
                        elinewidth=0.7, alpha=0.85, capsize=2)
    sns.scatterplot(data=_frame(pts, (x, "auc_roc", "backend", "precision")), x=x,
                    y="auc_roc", hue="backend", palette=palette, style="precision",
                    markers=markers, s=55, alpha=0.9, legend=False, ax=ax)
    front = pareto_front(list(xs), list(ys))
    sns.lineplot(x=xs[front], y=ys[front], color=color, lw=1.5, alpha=0.7,
                 drawstyle="steps-post", estimator=None, sort=False, ax=ax)
    for i, (p, xv, yv) in enumerate(zip(pts, xs, ys, strict=True)):
        ax.annotate(p["model"], (xv, yv), fontsize=7, xytext=(4, 3), textcoords="offset points",
                    color=color, fontweight="bold" if i in front else "normal")


def _err(v, lo, hi):
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    return [[max(v - lo, 0.0)], [max(hi - v, 0.0)]]


def grouped_bars(labels: list[str], values: dict, palette: dict) -> bytes:
    """Speedup and compression per model (x) and backend (bars, seaborn barplot).
    values: {metric: {(label, backend): value}} for metric in ('speedup',
    'compression_ratio')."""
    plt = pyplot()
    backends = [b for b in palette if any(b == k[1] for t in values.values() for k in t)]
    wide = max(8.0, 1.0 + 0.9 * len(labels) * len(values))
    with style() as sns:
        fig, axes = plt.subplots(1, len(values), figsize=(wide, 4.2), squeeze=False)
        for k, (ax, (metric, table)) in enumerate(zip(axes[0], values.items(), strict=True)):
            rows = [{"label": lb, "backend": b, "value": v} for (lb, b), v in table.items()]
            if rows:
                sns.barplot(data=_frame(rows, ("label", "backend", "value")), x="label",
                            y="value", hue="backend", order=labels, hue_order=backends,
                            palette=palette, errorbar=None, legend=k == 0, ax=ax)
            ax.axhline(1.0, color="#444", lw=0.8, ls="--")
            ax.set_xticks(range(len(labels)), labels)
            plt.setp(ax.get_xticklabels(), rotation=30, ha="right", fontsize=8)
            ax.set_xlabel("")
            ax.set_ylabel({"speedup": "speedup (x, teacher = 1)",
                           "compression_ratio": "compression (x, teacher's file_mib = 1)"
                           }.get(metric, metric))
            if k == 0 and ax.get_legend() is not None:
                ax.legend(fontsize=8)
        fig.tight_layout()
        return png(fig)


def latency_boxes(samples: dict, palette: dict) -> bytes:
    """Box plots (seaborn) of raw latency samples, all processes pooled, log scale.
    samples: {(label, backend): 1-D array in ms}."""
    import pandas as pd

    plt = pyplot()
    samples = {k: np.asarray(v, dtype=float) for k, v in samples.items() if len(v)}
    labels = list(dict.fromkeys(label for label, _ in samples))
    backends = [b for b in palette if any(b == k[1] for k in samples)]
    frame = pd.DataFrame({
        "ms": np.concatenate(list(samples.values())),
        "label": np.repeat([k[0] for k in samples], [len(v) for v in samples.values()]),
        "backend": np.repeat([k[1] for k in samples], [len(v) for v in samples.values()])})
    nb = max(1, len(backends))
    with style() as sns:
        fig, ax = plt.subplots(figsize=(8.5, 1.0 + 0.22 * len(labels) * nb + 0.3))
        sns.boxplot(data=frame, x="ms", y="label", hue="backend", order=labels,
                    hue_order=backends, palette=palette, orient="h", log_scale=True,
                    width=0.8, linewidth=0.8, boxprops={"alpha": 0.6},
                    medianprops={"color": "black"},
                    flierprops={"marker": ".", "markersize": 2, "alpha": 0.4}, ax=ax)
        plain_log_axis(ax.xaxis)
        ax.set_ylabel("")
        ax.tick_params(axis="y", labelsize=8)
        ax.set_xlabel("latency per batch-1 inference (ms, log scale; every sample of every "
                      "process)")
        ax.grid(alpha=0.3, axis="x", which="both")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return png(fig)


def _stored(row: dict, name: str) -> str:
    v = row.get(name)
    return f"{v:.3f}" if isinstance(v, (int, float)) and np.isfinite(v) else "–"


def roc_and_reliability(curves: list[tuple[str, dict, dict]]) -> bytes:
    """ROC curves (left) and a 15-bin reliability diagram (right) for each (label,
    predictions, row): predictions hold y_true, y_score and task (bench.task_kinds.Task); the
    legend gives the row's stored auc_roc and ece."""
    plt = pyplot()
    with style() as sns:
        fig, (roc_ax, rel_ax) = plt.subplots(1, 2, figsize=(10, 4.6))
        roc_ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls="--")
        rel_ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls="--", label="perfectly calibrated")
        hist = rel_ax.twinx()
        hist.grid(False)
        width = 1.0 / N_BINS / max(1, len(curves))
        how = ""
        for k, (label, pred, row) in enumerate(curves):
            color, kind = f"C{k}", pred["task"].kind
            try:
                fpr, tpr, how = roc_points(kind, pred["y_true"], pred["y_score"])
                sns.lineplot(x=fpr, y=tpr, color=color, lw=1.6, estimator=None, sort=False,
                             label=f"{label} (AUC-ROC {_stored(row, 'auc_roc')})", ax=roc_ax)
            except ValueError as exc:
                roc_ax.plot([], [], color=color, label=f"{label}: {exc}")
            conf, freq, count, _ = reliability_bins(kind, pred["y_true"], pred["y_score"])
            ok = count > 0
            sns.lineplot(x=conf[ok], y=freq[ok], color=color, marker="o", markersize=4,
                         estimator=None, sort=False, ax=rel_ax,
                         label=f"{label} (ECE {_stored(row, 'ece')})")
            edges = np.arange(N_BINS) / N_BINS
            hist.bar(edges + k * width, count, width, align="edge", color=color, alpha=0.18)
        roc_ax.set_xlabel("false-positive rate")
        roc_ax.set_ylabel("true-positive rate")
        roc_ax.set_title(f"ROC ({how})" if how else "ROC", fontsize=9)
        roc_ax.legend(fontsize=8, loc="lower right")
        rel_ax.set_xlabel("predicted probability (bin mean)")
        rel_ax.set_ylabel("observed frequency")
        rel_ax.set_title(f"reliability, {N_BINS} equal-width bins (bars: cases per bin)",
                         fontsize=9)
        rel_ax.set_xlim(0, 1)
        rel_ax.set_ylim(0, 1)
        hist.set_ylabel("cases per bin", fontsize=8, color="#888")
        hist.tick_params(labelsize=7, colors="#888")
        rel_ax.set_zorder(hist.get_zorder() + 1)
        rel_ax.patch.set_visible(False)
        rel_ax.legend(fontsize=8, loc="upper left")
        fig.tight_layout()
        return png(fig)
