"""The report's figures, as PNG bytes (matplotlib, Agg backend), and the curves behind them.

Pure functions of rows, samples and predictions: nothing here reads files. `pyplot()`
imports matplotlib with the Agg backend and its config/font cache inside the bench cache
(else matplotlib writes one under $HOME).
"""

from __future__ import annotations

import io
import os

import numpy as np

N_BINS = 15  # as bench.stats.calibration (ECE)
MARKERS = {"fp32": "o", "bf16": "s", "fp16": "D", "int8": "^"}


def pyplot():
    from bench.cache import cache_dir

    os.environ.setdefault("MPLCONFIGDIR", str(cache_dir() / "matplotlib"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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


def pareto_front(cost, value) -> list[int]:
    """Indices of the points no other point beats: lower cost and higher value (strictly
    better in one, no worse in the other), in order of increasing cost."""
    order = sorted(range(len(cost)), key=lambda i: (cost[i], -value[i]))
    front, best = [], -np.inf
    for i in order:
        if value[i] > best:
            front.append(i)
            best = value[i]
    return front


def tradeoff(points: list[dict], x: str, xlabel: str, palette: dict, x_ci=None,
             facet: bool = False) -> bytes:
    """AUC against `x` (log scale), one colour per backend, a marker per precision, the
    Pareto front per backend as a step line; facet=True: one panel per backend (for
    figures that hardly differ between backends, such as file size). points: dicts with
    model, backend, precision, auc_roc, auc_ci_low/high and x (and x_ci's keys if given)."""
    plt = pyplot()
    present = [b for b in palette if any(p["backend"] == b for p in points)]
    panels = present if facet else [None]
    fig, axes = plt.subplots(1, len(panels), figsize=(8.5 if not facet else 4.2 * len(panels), 5),
                             sharey=True, squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for backend in (present if panel is None else [panel]):
            _tradeoff_panel(ax, [p for p in points if p["backend"] == backend], x, x_ci,
                            palette[backend], backend)
        ax.set_xscale("log")
        plain_log_axis(ax.xaxis)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.grid(alpha=0.3, which="both")
        if panel is not None:
            ax.set_title(panel, fontsize=10)
    for prec, marker in MARKERS.items():
        if any(p["precision"] == prec for p in points):
            axes[0][0].plot([], [], marker, color="#555", label=prec)
    axes[0][0].set_ylabel("test AUC-ROC (95% interval)")
    axes[0][0].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return png(fig)


def _tradeoff_panel(ax, pts, x, x_ci, color, backend) -> None:
    xs = np.array([p[x] for p in pts], dtype=float)
    ys = np.array([p["auc_roc"] for p in pts], dtype=float)
    for p, xv, yv in zip(pts, xs, ys, strict=True):
        yerr = _err(yv, p.get("auc_ci_low"), p.get("auc_ci_high"))
        xerr = _err(xv, p.get(x_ci[0]), p.get(x_ci[1])) if x_ci else None
        ax.errorbar(xv, yv, xerr=xerr, yerr=yerr, fmt=MARKERS.get(p["precision"], "o"),
                    color=color, ms=7, elinewidth=0.7, alpha=0.85, capsize=2)
    front = pareto_front(list(xs), list(ys))
    ax.step(xs[front], ys[front], where="post", color=color, lw=1.5, alpha=0.7,
            label=f"{backend}: Pareto front")
    for i, (p, xv, yv) in enumerate(zip(pts, xs, ys, strict=True)):
        ax.annotate(p["model"], (xv, yv), fontsize=7, xytext=(4, 3), textcoords="offset points",
                    color=color, fontweight="bold" if i in front else "normal")


def _err(v, lo, hi):
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    return [[max(v - lo, 0.0)], [max(hi - v, 0.0)]]


def grouped_bars(labels: list[str], values: dict, palette: dict) -> bytes:
    """Speedup and compression per model (x) and backend (bars). values: {metric: {(label,
    backend): value}} for metric in ('speedup', 'compression_ratio')."""
    plt = pyplot()
    wide = max(8.0, 1.0 + 0.9 * len(labels) * len(values))
    fig, axes = plt.subplots(1, len(values), figsize=(wide, 4.2), squeeze=False)
    width = 0.8 / max(1, len(palette))
    x = np.arange(len(labels))
    for ax, (metric, table) in zip(axes[0], values.items(), strict=True):
        for j, (backend, color) in enumerate(palette.items()):
            ys = [table.get((label, backend), np.nan) for label in labels]
            ax.bar(x + (j - (len(palette) - 1) / 2) * width, ys, width, color=color, label=backend)
        ax.axhline(1.0, color="#444", lw=0.8, ls="--")
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel({"speedup": "speedup (x, teacher = 1)",
                       "compression_ratio": "compression (x, teacher's file_mib = 1)"
                       }.get(metric, metric))
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return png(fig)


def latency_boxes(samples: dict, palette: dict) -> bytes:
    """Box plots of raw latency samples (all processes pooled), log scale.
    samples: {(label, backend): 1-D array in ms}."""
    plt = pyplot()
    from matplotlib.patches import Patch

    labels = list(dict.fromkeys(label for label, _ in samples))
    nb = max(1, len(palette))
    fig, ax = plt.subplots(figsize=(8.5, 1.0 + 0.22 * len(labels) * nb + 0.3))
    height = 0.8 / nb
    for j, (backend, color) in enumerate(palette.items()):
        data, pos = [], []
        for i, label in enumerate(labels):
            s = samples.get((label, backend))
            if s is not None and len(s):
                data.append(s)
                pos.append(i + (j - (nb - 1) / 2) * height)
        if not data:
            continue
        kw = {"positions": pos, "widths": height * 0.9, "patch_artist": True,
              "manage_ticks": False, "medianprops": {"color": "black"},
              "flierprops": {"marker": ".", "markersize": 2, "alpha": 0.4,
                             "markeredgecolor": color}}
        try:
            box = ax.boxplot(data, orientation="horizontal", **kw)
        except TypeError:  # matplotlib < 3.10
            box = ax.boxplot(data, vert=False, **kw)
        for patch in box["boxes"]:
            patch.set_facecolor(color)
            patch.set_alpha(0.6)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    plain_log_axis(ax.xaxis)
    ax.set_xlabel("latency per batch-1 inference (ms, log scale; every sample of every process)")
    ax.grid(alpha=0.3, axis="x", which="both")
    ax.legend(handles=[Patch(color=c, alpha=0.6, label=b) for b, c in palette.items()], fontsize=8)
    fig.tight_layout()
    return png(fig)


def task_kind(y_true, y_score) -> str:
    if np.ndim(y_score) == 1:
        return "binary"
    return "multilabel" if np.ndim(y_true) == 2 else "multiclass"


def roc_points(y_true, y_score) -> tuple[np.ndarray, np.ndarray, float, str]:
    """(fpr, tpr, AUC of that curve, what was pooled): binary directly; multiclass and
    multilabel micro-averaged one-vs-rest (every (case, class) pair pooled; NaN targets
    of a multilabel task masked). Computed here, not with scikit-learn, whose import alone
    takes longer than the whole figure."""
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=np.float64)
    kind = task_kind(y, s)
    if kind == "binary":
        t, how = y.astype(np.float64), "binary"
    elif kind == "multiclass":
        t = (y.astype(np.int64)[:, None] == np.arange(s.shape[1])).astype(np.float64)
        how = "micro-averaged one-vs-rest"
    else:
        t, how = y.astype(np.float64), "micro-averaged over labels, masked targets left out"
    t, s = t.ravel(), s.ravel()
    keep = ~np.isnan(t)
    t, s = t[keep], s[keep]
    if not ((t == 1).any() and (t == 0).any()):
        raise ValueError("the test set has a single class: no ROC curve")
    order = np.argsort(-s, kind="mergesort")
    s, t = s[order], t[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last case of each distinct score
    tps = np.cumsum(t)[last]
    fps = (last + 1) - tps
    tpr, fpr = np.r_[0.0, tps / tps[-1]], np.r_[0.0, fps / fps[-1]]
    return fpr, tpr, float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)), how


def reliability_bins(y_true, y_score, n_bins: int = N_BINS):
    """(mean confidence, observed frequency, count) per equal-width bin, as in the ECE of
    bench.stats.calibration: binary P(positive) against the label, multiclass top-label
    confidence against 'argmax is correct', multilabel every unmasked label pooled.
    Empty bins are NaN; also returns the ECE."""
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=np.float64)
    kind = task_kind(y, s)
    if kind == "binary":
        conf, hit = s, y.astype(np.float64)
    elif kind == "multiclass":
        conf, hit = s.max(axis=1), (s.argmax(axis=1) == y).astype(np.float64)
    else:
        mask = ~np.isnan(y.astype(np.float64))
        conf, hit = s[mask], y.astype(np.float64)[mask]
    b = np.clip((conf * n_bins).astype(np.int64), 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(b, weights=conf, minlength=n_bins) / count
        freq = np.bincount(b, weights=hit, minlength=n_bins) / count
    ece = float(np.nansum(count * np.abs(freq - mean_conf)) / max(count.sum(), 1))
    return mean_conf, freq, count, ece


def roc_and_reliability(curves: list[tuple[str, dict]]) -> bytes:
    """ROC curves (left) and a 15-bin reliability diagram (right) for each (label,
    predictions) pair, predictions holding y_true and y_score."""
    plt = pyplot()
    fig, (roc_ax, rel_ax) = plt.subplots(1, 2, figsize=(10, 4.6))
    roc_ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls="--")
    rel_ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls="--", label="perfectly calibrated")
    hist = rel_ax.twinx()
    width = 1.0 / N_BINS / max(1, len(curves))
    how = ""
    for k, (label, pred) in enumerate(curves):
        color = f"C{k}"
        try:
            fpr, tpr, area, how = roc_points(pred["y_true"], pred["y_score"])
            roc_ax.plot(fpr, tpr, color=color, lw=1.6, label=f"{label} (AUC {area:.3f})")
        except ValueError as exc:
            roc_ax.plot([], [], color=color, label=f"{label}: {exc}")
        conf, freq, count, ece = reliability_bins(pred["y_true"], pred["y_score"])
        ok = count > 0
        rel_ax.plot(conf[ok], freq[ok], "o-", color=color, ms=4, label=f"{label} (ECE {ece:.3f})")
        edges = np.arange(N_BINS) / N_BINS
        hist.bar(edges + k * width, count, width, align="edge", color=color, alpha=0.18)
    roc_ax.set_xlabel("false-positive rate")
    roc_ax.set_ylabel("true-positive rate")
    roc_ax.set_title(f"ROC ({how})" if how else "ROC", fontsize=9)
    roc_ax.legend(fontsize=8, loc="lower right")
    rel_ax.set_xlabel("predicted probability (bin mean)")
    rel_ax.set_ylabel("observed frequency")
    rel_ax.set_title(f"reliability, {N_BINS} equal-width bins (bars: cases per bin)", fontsize=9)
    rel_ax.set_xlim(0, 1)
    rel_ax.set_ylim(0, 1)
    hist.set_ylabel("cases per bin", fontsize=8, color="#888")
    hist.tick_params(labelsize=7, colors="#888")
    rel_ax.set_zorder(hist.get_zorder() + 1)
    rel_ax.patch.set_visible(False)
    rel_ax.legend(fontsize=8, loc="upper left")
    for ax in (roc_ax, rel_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return png(fig)
