"""report.html: one self-contained page (table + AUC-vs-latency plot, embedded PNG).

Reads only the run directory, so `write_report(run_dir)` can re-render any run. Column
units and directions come from the Result record's metadata; every string is escaped.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from bench.result import Result

TABLE_COLUMNS = ("model", "backend", "precision", "status", "params", "params_nonzero", "weights_mib",
                 "file_mib", "file_gz_mib", "compression_ratio", "macs", "latency_ms_p50",
                 "latency_ms_p90", "latency_n", "speedup", "peak_rss_mib",
                 "energy_mj_per_inference", "auc_roc", "accuracy", "error")


def write_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    doc = json.loads((run_dir / "results.json").read_text())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    rows = doc["rows"]
    meta = {c["name"]: c for c in Result.columns()}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>medbench report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Compression bench report</h1>",
        f"<p>Run {_e(manifest.get('created', ''))}; dataset {_e(manifest.get('data', {}).get('generator', manifest.get('config', {}).get('dataset', '')))}, "
        f"{_e(manifest.get('image_size', ''))}px; teacher {_e(manifest.get('config', {}).get('teacher', ''))} "
        f"({_e(manifest.get('teacher', {}).get('source', ''))}); commit {_e(manifest.get('git_commit') or 'unknown')}.</p>",
        _energy_note(rows),
        "<h2>Results</h2>", _table(rows, meta),
        "<h2>AUC-ROC against latency</h2>", _plot(rows),
        "<h2>Provenance</h2><pre>", _e(json.dumps(manifest.get("models", {}), indent=1)), "</pre>",
        "<h2>Manifest</h2><pre>",
        _e(json.dumps({k: v for k, v in manifest.items() if k != "models"}, indent=1, default=str)),
        "</pre></body></html>",
    ]
    out = run_dir / "report.html"
    out.write_text("".join(parts))
    return out


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _energy_note(rows) -> str:
    sources = {r.get("energy_source") or "" for r in rows}
    if any(s.startswith("estimate") for s in sources):
        return ("<p class='note'>Energy figures are <b>estimates</b> (no power counters on this machine): "
                "codecarbon's CPU-load model; see each row's energy_source.</p>")
    return ""


def _best(rows, name, better):
    values = [r.get(name) for r in rows if (r.get("status") or "").startswith("ok")
              and isinstance(r.get(name), (int, float))]
    if not values or better is None:
        return None
    return max(values) if better == "higher" else min(values)


def _table(rows, meta) -> str:
    head = []
    for c in TABLE_COLUMNS:
        unit = meta[c].get("unit")
        arrow = {"higher": " ↑", "lower": " ↓"}.get(meta[c].get("better"), "")
        head.append(f"<th title='{_e(meta[c].get('doc', ''))}'>{_e(c)}"
                    f"{'<br><small>' + _e(unit) + '</small>' if unit else ''}{arrow}</th>")
    best = {c: _best(rows, c, meta[c].get("better")) for c in TABLE_COLUMNS}
    body = []
    for r in rows:
        status = r.get("status") or ""
        cls = "failed" if status.startswith("failed") else "na" if status.startswith("n/a") else ""
        cells = []
        for c in TABLE_COLUMNS:
            v = r.get(c)
            text = "" if v is None else (f"{v:,.4g}" if isinstance(v, float) else
                                         f"{v:,}" if isinstance(v, int) else str(v))
            mark = " class='best'" if v is not None and best[c] is not None and v == best[c] else ""
            cells.append(f"<td{mark}>{_e(text)}</td>")
        body.append(f"<tr class='{cls}'>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _plot(rows) -> str:
    import os

    from bench.cache import cache_dir

    # matplotlib writes a font cache under $HOME unless told where: keep it in ours.
    os.environ.setdefault("MPLCONFIGDIR", str(cache_dir() / "matplotlib"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    df = pd.DataFrame([r for r in rows if r.get("auc_roc") is not None and r.get("latency_ms_p50")])
    if df.empty:
        return "<p>No row has both an AUC and a latency.</p>"
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    sns.scatterplot(data=df, x="latency_ms_p50", y="auc_roc", hue="backend", style="precision",
                    s=70, ax=ax)
    for _, r in df.iterrows():
        ax.annotate(r["model"], (r["latency_ms_p50"], r["auc_roc"]), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("median latency, batch 1 (ms, log scale)")
    ax.set_ylabel("test AUC-ROC")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f"<img alt='AUC-ROC against latency' src='data:image/png;base64,{data}'>"


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;font-size:12px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f3f3f3;vertical-align:bottom}
td:first-child{text-align:left;white-space:nowrap}
td.best{font-weight:bold;background:#e6f4ea}
tr.failed td{background:#fde8e8}
tr.na td{color:#888}
.note{background:#fff8e1;padding:6px;border-left:4px solid #f0c040}
pre{background:#f7f7f7;padding:8px;font-size:11px;overflow:auto;max-height:30em}
"""
