"""report.html: one self-contained page per run directory.

`write_report(run_dir)` reads only the run directory (results.json, manifest.json,
predictions/*.npz, latency/*.npz), so any run can be re-rendered (`python -m bench report
RUN`). The page has no script, no external style, font or image: plots are PNG (matplotlib,
Agg) embedded as base64 data URIs, and it opens offline. Every string that comes from the
run (model names, parameters, paths, errors, notes, class names) is escaped.

Layout, top to bottom:
  1. Summary: per backend the teacher with its figures, and the smallest (file_mib) and the
     fastest (latency_ms_p50) model whose verdict against the teacher is non-inferior.
  2. Warnings: estimated energy, quick and unstable rows, failed and n/a rows, missing
     files, single-process latency intervals, a dirty git tree.
  3. Published figures (runs made with a --preset that has them) beside ours.
  4. Results: the main columns with units, 95% intervals as "0.87 [0.84, 0.90]", the best
     value per column marked by the column's declared direction among ok rows, statuses as
     badges with their reasons; every column in a collapsed table below.
  5. Plots: AUC against latency and against file size (Pareto front per backend), speedup
     and compression per model and backend, latency distributions from the raw samples,
     ROC curves and a 15-bin reliability diagram (teacher against the best compressed row).
  6. Provenance: each model's chain and parameters.
  7. Manifest: versions, machine, commit, machine probe, data, teacher, backends, config.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.result import STATUS_FAILED, STATUS_NA, STATUS_OK, Result
from bench.stats.latency import no_measurable_difference
from bench.store import load_predictions, load_rows, load_samples

META = {c["name"]: c for c in Result.columns()}

#: the main table: a column, or (headline, interval low, interval high)
MAIN_COLUMNS = (
    ("model",), ("backend",), ("precision",), ("status",), ("params",), ("params_nonzero",),
    ("file_mib",), ("compression_ratio",), ("macs",),
    ("latency_ms_p50", "latency_ms_ci_low", "latency_ms_ci_high"), ("latency_cv",),
    ("speedup", "speedup_ci_low", "speedup_ci_high"), ("energy_mj_per_inference",), ("auc_roc", "auc_ci_low", "auc_ci_high"),
    ("delta_auc", "delta_auc_ci_low", "delta_auc_ci_high"), ("delong_p",), ("verdict",),
    ("delta_auc_vs_student", "delta_auc_vs_student_ci_low", "delta_auc_vs_student_ci_high"),
    ("delong_p_vs_student",), ("accuracy",), ("sensitivity",), ("specificity",), ("ece",), ("flip_rate",),
)
SUMMARY_COLUMNS = (
    ("model",), ("precision",), ("file_mib",), ("compression_ratio",),
    ("latency_ms_p50", "latency_ms_ci_low", "latency_ms_ci_high"),
    ("speedup", "speedup_ci_low", "speedup_ci_high"), ("auc_roc", "auc_ci_low", "auc_ci_high"),
    ("delta_auc", "delta_auc_ci_low", "delta_auc_ci_high"), ("verdict",),
)
COUNTS = ("params", "params_nonzero", "macs")  # shown as 7.04 M in the main table


# ---------------------------------------------------------------------------- the run

@dataclass
class RunView:
    """What the report reads: the rows, the manifest, and the files of each row."""

    root: Path
    rows: list[dict]
    manifest: dict
    problems: list[str] = field(default_factory=list)
    _cache: dict = field(default_factory=dict)

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
        key = (kind, row["model"], row["backend"], row["precision"], row.get("seed"))
        if key not in self._cache:
            loader = load_predictions if kind == "pred" else load_samples
            self._cache[key] = loader(self.files(row), row["model"], row["backend"],
                                      row["precision"])
        return self._cache[key]

    def predictions(self, row: dict) -> dict | None:
        pred = self._load("pred", row)
        return pred if pred and "y_true" in pred and "y_score" in pred else None

    def samples(self, row: dict) -> list | None:
        return self._load("lat", row)


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


def _base(row: dict) -> str:
    return (row.get("status") or "").split(";")[0]


def _quals(row: dict) -> list[str]:
    return [q for q in (row.get("status") or "").split(";")[1:] if q]


def _ok(row: dict) -> bool:
    return _base(row) == STATUS_OK


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _config(run: RunView) -> dict:
    cfg = run.manifest.get("config")
    return cfg if isinstance(cfg, dict) else {}


# ---------------------------------------------------------------------------- formatting

def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _sig(v: float) -> str:
    """About 3 significant digits, without exponents above 0.01 (0.9997 -> 1.00, 0.289)."""
    v = float(f"{v:.3g}")
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 0.01:
        return f"{v:.3f}"
    return f"{v:.2e}"


def fmt(name: str, v, exact: bool = False) -> str:
    """A cell's text: counts with separators (or 7.04 M), probabilities to 3 decimals,
    p-values as <0.001, other figures to about 3 significant digits."""
    if v is None or v == "":
        return "–"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        if not exact and name in COUNTS and abs(v) >= 10_000:
            return f"{v / 1e6:.2f} M" if abs(v) >= 1e6 else f"{v / 1e3:.1f} k"
        return f"{v:,}"
    if not math.isfinite(v):
        return "–"
    if exact:
        return f"{v:.6g}"
    if name in ("delong_p", "delong_p_vs_student"):
        return "<0.001" if v < 0.001 else f"{v:.3f}"
    if name == "parity_max_abs":
        return f"{v:.1e}"
    if name == "latency_cv":
        return f"{v:.1%}"
    unit = META.get(name, {}).get("unit", "")
    if unit in ("", "probability") and abs(v) <= 1.5:
        return f"{v:+.3f}" if name.startswith("delta_") else f"{v:.3f}"
    return _sig(v)


def _cell_text(row: dict, spec: tuple, exact: bool = False) -> str:
    """Escaped HTML of one cell: value, with its interval when the spec has one."""
    name = spec[0]
    if name == "speedup" and not exact and no_measurable_difference(
            row.get("speedup_ci_low"), row.get("speedup_ci_high")):
        # its interval holds 1: a ratio would claim a difference the run cannot show
        lo, hi = fmt(name, row["speedup_ci_low"]), fmt(name, row["speedup_ci_high"])
        return (f"<span class=\"nmd\" title=\"{_e(fmt(name, row.get(name)))}x, 95% interval "
                f"[{_e(lo)}, {_e(hi)}] holds 1\">no measurable difference</span>")
    text = _e(fmt(name, row.get(name), exact))
    if len(spec) == 3 and _num(row.get(spec[1])) and _num(row.get(spec[2])):
        lo, hi = fmt(name, row[spec[1]]), fmt(name, row[spec[2]])
        text += f" <span class=\"ci\">[{_e(lo)}, {_e(hi)}]</span>"
    return text


def _header_cell(name: str, extra: str = "") -> str:
    meta = META.get(name, {})
    unit = meta.get("unit")
    arrow = {"higher": " ↑", "lower": " ↓"}.get(meta.get("better"), "")
    title = meta.get("doc", "") + (f" ({extra})" if extra else "")
    return (f"<th title=\"{_e(title)}\">{_e(name).replace('_', '_<wbr>')}{arrow}"
            + (f"<br><small>{_e(unit)}</small>" if unit else "") + "</th>")


def _status_cell(row: dict) -> str:
    base = _base(row) or "?"
    cls = {STATUS_OK: "ok", STATUS_FAILED: "failed", STATUS_NA: "na"}.get(base, "na")
    badges = [f"<span class=\"badge {cls}\">{_e(base)}</span>"]
    for q in _quals(row):
        qcls = q if q in ("quick", "unstable") else "other"
        badges.append(f"<span class=\"badge {qcls}\">{_e(q)}</span>")
    reason = ""
    if base != STATUS_OK and row.get("error"):
        reason = row["error"]
    elif "unstable" in _quals(row):
        notes = row.get("notes") or ""
        at = notes.find("unstable: ")
        reason = notes[at:].split("; latency interval")[0] if at >= 0 else "unstable latency"
    return "".join(badges) + (f"<div class=\"reason\">{_e(reason)}</div>" if reason else "")


def _verdict_cell(v) -> str:
    if not v:
        return "–"
    cls = {"non-inferior": "good", "inferior": "bad", "inconclusive": "unsure"}.get(v, "")
    return f"<span class=\"verdict {cls}\">{_e(v)}</span>"


def _best(rows: list[dict], name: str):
    """The best value of a column among ok rows, by its declared direction (None if none)."""
    better = META.get(name, {}).get("better")
    values = [r.get(name) for r in rows if _ok(r) and _num(r.get(name))]
    if not values or better not in ("higher", "lower"):
        return None
    return max(values) if better == "higher" else min(values)


def _table(rows: list[dict], columns, mark_best: bool, exact: bool = False, cls: str = "") -> str:
    best = {spec[0]: _best(rows, spec[0]) for spec in columns} if mark_best else {}
    head = "".join(_header_cell(spec[0], "with its bootstrap 95% interval" if len(spec) == 3
                                else "") for spec in columns)
    body = []
    for r in rows:
        cells = []
        for spec in columns:
            name = spec[0]
            if name == "status":
                cells.append(f"<td class=\"status\">{_status_cell(r)}</td>")
                continue
            if name == "verdict":
                cells.append(f"<td>{_verdict_cell(r.get(name))}</td>")
                continue
            v = r.get(name)
            classes = []
            if name in ("model", "backend", "precision", "notes", "error", "energy_source",
                        "method", "arch"):
                classes.append("text")
            if mark_best and best.get(name) is not None and _ok(r) and v == best[name]:
                classes.append("best")
            attr = f" class=\"{' '.join(classes)}\"" if classes else ""
            cells.append(f"<td{attr}>{_cell_text(r, spec, exact)}</td>")
        status = {STATUS_FAILED: "failed", STATUS_NA: "na"}.get(_base(r), "")
        title = f" title=\"{_e(r.get('notes'))}\"" if r.get("notes") else ""
        body.append(f"<tr class=\"{status}\"{title}>{''.join(cells)}</tr>")
    return (f"<div class=\"scroll\"><table class=\"{cls}\"><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _kv(d: dict) -> str:
    """A two-column table of a dict; nested values as compact JSON."""
    if not isinstance(d, dict) or not d:
        return "<p>–</p>"
    cells = []
    for k, v in d.items():
        text = v if isinstance(v, str) else json.dumps(v, default=str)
        cells.append(f"<tr><th>{_e(k)}</th><td class=\"text\">{_e(text)}</td></tr>")
    return f"<table class=\"kv\">{''.join(cells)}</table>"


# ---------------------------------------------------------------------------- sections

def _header(run: RunView) -> str:
    m, cfg = run.manifest, _config(run)
    data = m.get("data") if isinstance(m.get("data"), dict) else {}
    teacher = m.get("teacher") if isinstance(m.get("teacher"), dict) else {}
    counts = {s: sum(_base(r) == s for r in run.rows)
              for s in (STATUS_OK, STATUS_FAILED, STATUS_NA)}
    backends = list(dict.fromkeys(r["backend"] for r in run.rows))
    facts = [
        ("run", run.root.name), ("created", m.get("created", "unknown")),
        ("dataset", f"{data.get('generator', cfg.get('dataset', '?'))}, "
                    f"{data.get('task', cfg.get('task', '?'))} "
                    f"{list(data.get('classes', []))}, {m.get('image_size', '?')} px"),
        ("teacher", f"{cfg.get('teacher', teacher.get('arch', '?'))} "
                    f"({teacher.get('source', '?')})"),
        ("rows", f"{len(run.rows)}: {counts[STATUS_OK]} ok, {counts[STATUS_FAILED]} failed, "
                 f"{counts[STATUS_NA]} n/a; backends {', '.join(backends) or '–'}"),
        ("margin", f"non-inferiority margin on AUC {cfg.get('margin', '?')}"),
        ("commit", m.get("git_commit") or "unknown"),
    ]
    if cfg.get("preset"):
        facts.append(("preset", cfg["preset"]))
    toc = "".join(f"<a href=\"#{a}\">{t}</a>" for a, t in (
        ("summary", "Summary"), ("warnings", "Warnings"), ("published", "Published"),
        ("results", "Results"), ("plots", "Plots"), ("provenance", "Provenance"),
        ("manifest", "Manifest")))
    return ("<h1>medbench report</h1><p class=\"facts\">"
            + " · ".join(f"<b>{_e(k)}</b> {_e(v)}" for k, v in facts)
            + f"</p><nav>{toc}</nav>")


def _summary(run: RunView) -> str:
    margin = _config(run).get("margin")
    out = ["<h2 id=\"summary\">Summary</h2>",
           "<p>Per backend: the teacher, and the smallest (<code>file_mib</code>) and the fastest "
           "(<code>latency_ms_p50</code>) model whose verdict is <b>non-inferior</b> to the "
           "teacher: the paired bootstrap 95% interval of ΔAUC lies above −margin"
           + (f" ({_e(margin)})" if margin is not None else "") + ".</p>"]
    backends = list(dict.fromkeys(r["backend"] for r in run.rows))
    if not backends:
        return "".join(out) + "<p>No rows.</p>"
    table_rows, roles = [], []
    for b in backends:
        rows = [r for r in run.rows if r["backend"] == b and _ok(r)]
        teacher = next((r for r in rows if r["model"] == "teacher" and r["precision"] == "fp32"),
                       next((r for r in rows if r["model"] == "teacher"), None))
        others = [r for r in rows if r["model"] != "teacher"]
        good = [r for r in others if r.get("verdict") == "non-inferior"]
        tally = {v: sum(r.get("verdict") == v for r in others)
                 for v in ("non-inferior", "inconclusive", "inferior")}
        tally["no verdict"] = len(others) - sum(tally.values())
        smallest = min((r for r in good if _num(r.get("file_mib"))), default=None,
                       key=lambda r: r["file_mib"])
        fastest = min((r for r in good if _num(r.get("latency_ms_p50"))), default=None,
                      key=lambda r: r["latency_ms_p50"])
        note = ("; ".join(f"{n} {v}" for v, n in tally.items() if n) or "no other ok rows")
        floor = teacher.get("noise_floor") if teacher else None
        note += ("; noise floor " + (f"{floor:.1%} (the teacher's {teacher.get('latency_repeats')} "
                                     "processes disagree by this much: a speedup closer to 1 is no "
                                     "measurable difference)" if _num(floor)
                                     else "unknown (the teacher ran in one process)"))
        for role, r in (("teacher", teacher), ("smallest non-inferior", smallest),
                        ("fastest non-inferior", fastest)):
            if r is None:
                why = ("no ok teacher row on this backend: no verdicts" if role == "teacher"
                       else "none (" + note + ")")
                roles.append((b, role, None, why))
            else:
                roles.append((b, role, r, ""))
        table_rows.append((b, note))
    head = ("<th>backend</th><th>role</th>"
            + "".join(_header_cell(s[0], "with its 95% interval" if len(s) == 3 else "")
                      for s in SUMMARY_COLUMNS))
    body = []
    for b, role, r, why in roles:
        lead = f"<td class=\"text\">{_e(b)}</td><td class=\"text\">{_e(role)}</td>"
        if r is None:
            body.append(f"<tr>{lead}<td class=\"text muted\" colspan=\"{len(SUMMARY_COLUMNS)}\">"
                        f"{_e(why)}</td></tr>")
            continue
        cells = "".join(f"<td>{_verdict_cell(r.get('verdict'))}</td>" if s[0] == "verdict"
                        else f"<td class=\"{'text' if s[0] == 'model' else ''}\">"
                             f"{_cell_text(r, s)}</td>" for s in SUMMARY_COLUMNS)
        body.append(f"<tr class=\"{'teacher' if role == 'teacher' else ''}\">{lead}{cells}</tr>")
    tallies = "".join(f"<li><b>{_e(b)}</b>: verdicts of the other ok rows: {_e(n)}</li>"
                      for b, n in table_rows)
    out.append(f"<div class=\"scroll\"><table class=\"summary\"><thead><tr>{head}</tr></thead>"
               f"<tbody>{''.join(body)}</tbody></table></div><ul>{tallies}</ul>")
    return "".join(out)


def _warnings(run: RunView) -> str:
    items = list(run.problems)
    rows = run.rows
    estimated = [r for r in rows if (r.get("energy_source") or "").startswith("estimate")]
    if estimated:
        items.append(f"Energy of {_n(estimated, 'row')} is an <b>estimate</b>, not a measurement "
                     "(energy_source starts with 'estimate:'; no power counters here), e.g. "
                     f"<code>{_e(estimated[0]['energy_source'])}</code>.")
    quick = [r for r in rows if "quick" in _quals(r)]
    if quick:
        items.append(f"{_n(quick, 'row is a', 'rows are')} <b>--quick smoke test</b> "
                     "(status ok;quick): small "
                     "data, little training and short latency loops, not measurements.")
    unstable = [r for r in rows if "unstable" in _quals(r)]
    if unstable:
        items.append(f"{_n(unstable, 'row has', 'rows have')} <b>unstable</b> latency "
                     "(see their status): "
                     + _e(", ".join(f"{_id(r)} (cv {fmt('latency_cv', r.get('latency_cv'))})"
                                    for r in unstable)) + ".")
    for r in rows:
        if _base(r) == STATUS_FAILED:
            items.append(f"<b>failed</b>: {_e(_id(r))}: {_e(r.get('error') or 'no reason given')}")
    na = [r for r in rows if _base(r) == STATUS_NA]
    if na:
        items.append(f"{_n(na, 'row is', 'rows are')} <b>n/a</b> (cannot exist on that backend): "
                     + _e("; ".join(f"{_id(r)}: {r.get('error') or '?'}" for r in na)))
    ok = [r for r in rows if _ok(r)]
    no_pred = [r for r in ok if run.predictions(r) is None]
    if no_pred:
        items.append("No readable predictions file for " + _e(", ".join(map(_id, no_pred)))
                     + ": left out of the ROC and reliability plots.")
    no_lat = [r for r in ok if not run.samples(r)]
    if no_lat:
        items.append("No latency samples for " + _e(", ".join(map(_id, no_lat)))
                     + ": left out of the latency distributions.")
    single = [r for r in ok if r.get("latency_repeats") == 1]
    if single:
        items.append(f"Latency intervals of {_n(single, 'row')} rest on one measuring process "
                     "(within-process resampling only): they leave out the between-process "
                     "noise that dominates on a shared machine.")
    backends = dict.fromkeys(r["backend"] for r in rows)
    for b in backends:
        if not any(r["backend"] == b and r["model"] == "teacher" and _ok(r) for r in rows):
            items.append(f"No ok teacher row on {_e(b)}: no speedup, compression ratio or "
                         "verdict against the teacher there.")
    commit = str(run.manifest.get("git_commit") or "")
    if commit.endswith("-dirty"):
        items.append("The git tree had uncommitted changes (commit ends in -dirty).")
    body = ("<ul class=\"warnings\">" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"
            if items else "<p>None.</p>")
    return "<h2 id=\"warnings\">Warnings</h2>" + body


def _n(items, one: str, many: str | None = None) -> str:
    """'1 row is' / '3 rows are': a count with its noun (and verb) in the right number."""
    return f"{len(items)} {one if len(items) == 1 else (many or one + 's')}"


def _id(r: dict) -> str:
    return f"{r['model']} / {r['backend']} / {r['precision']}"


def _published(run: RunView) -> str:
    name = _config(run).get("preset")
    head = "<h2 id=\"published\">Published figures</h2>"
    if not name:
        return head + "<p>No preset: no published figures to compare with.</p>"
    from bench import presets

    try:
        preset = presets.get(str(name))
    except ValueError:
        return (head + f"<p>Preset <code>{_e(name)}</code> is unknown to this version of "
                "the bench.</p>")
    if not preset.published:
        return head + f"<p>Preset <code>{_e(name)}</code> has no published figures.</p>"
    backends = list(dict.fromkeys(r["backend"] for r in run.rows))
    th = "".join(f"<th>ours: {_e(b)}</th>" for b in backends)
    body = []
    for model, figures in preset.published.items():
        if not isinstance(figures, dict):
            continue
        note = figures.get("note", "")
        for col, value in figures.items():
            if col == "note":
                continue
            ours = []
            for b in backends:
                r = next((r for r in run.rows if r["model"] == model and r["backend"] == b
                          and _ok(r)), None)
                if r is None:
                    ours.append("<td class=\"muted\">not in this run</td>")
                elif col not in META:
                    ours.append("<td class=\"muted\">not a column here</td>")
                else:
                    spec = next((s for s in MAIN_COLUMNS if s[0] == col), (col,))
                    ours.append(f"<td>{_cell_text(r, spec)}</td>")
            unit = META.get(col, {}).get("unit", "")
            paper = fmt(col, value) if _num(value) else str(value)
            body.append(f"<tr><td class=\"text\">{_e(model)}</td><td class=\"text\">{_e(col)}"
                        + (f" <small>{_e(unit)}</small>" if unit else "")
                        + f"</td><td>{_e(paper)}</td>{''.join(ours)}"
                          f"<td class=\"text\">{_e(note)}</td></tr>")
    cite = f"<p>{_e(preset.citation)}</p>" if preset.citation else ""
    return (head + f"<p>Preset <code>{_e(preset.name)}</code>: {_e(preset.summary)}</p>{cite}"
            f"<div class=\"scroll\"><table><thead><tr><th>model</th><th>figure</th><th>paper</th>"
            f"{th}<th>note</th></tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def _results(run: RunView) -> str:
    columns = list(MAIN_COLUMNS)
    if len({r.get("seed") for r in run.rows if r.get("seed") is not None}) > 1:
        columns.insert(3, ("seed",))
    legend = ("<p class=\"legend\">Units under each name; ↑ higher / ↓ lower is better; "
              "<span class=\"best-key\">bold green</span>: the best value of the column among ok "
              "rows. Intervals are bootstrap 95% intervals. Hover a header for its meaning, a "
              "row for its notes (all notes below the table). Badges: "
              "<span class=\"badge ok\">ok</span> <span class=\"badge quick\">quick</span> "
              "<span class=\"badge unstable\">unstable</span> "
              "<span class=\"badge failed\">failed</span> <span class=\"badge na\">n/a</span>"
              ", with the reason below.</p>")
    every = [(c["name"],) for c in Result.columns()]
    notes = "".join(f"<li><b>{_e(_id(r))}</b>: {_e(r['notes'])}</li>"
                    for r in run.rows if r.get("notes"))
    return ("<h2 id=\"results\">Results</h2>" + legend
            + _table(run.rows, columns, mark_best=True, cls="results")
            + (f"<details><summary>Notes per row (what each method did; why a figure is "
               f"missing)</summary><ul class=\"notes\">{notes}</ul></details>" if notes else "")
            + "<details><summary>Every column, unrounded</summary>"
            + _table(run.rows, every, mark_best=False, exact=True, cls="full") + "</details>")


def _figure(png: bytes, alt: str, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f"<figure><img alt=\"{_e(alt)}\" src=\"data:image/png;base64,{data}\">"
            f"<figcaption>{caption}</figcaption></figure>")


def _labels(rows: list[dict]) -> dict:
    """A plot label per row: the model, with its precision where the model has several."""
    precisions: dict[str, set] = {}
    for r in rows:
        precisions.setdefault(r["model"], set()).add(r["precision"])
    return {id(r): r["model"] + (f" [{r['precision']}]" if len(precisions[r["model"]]) > 1 else "")
            for r in rows}


def best_compressed(run: RunView) -> tuple[dict | None, dict | None, str]:
    """(teacher row, best compressed row, why): the ok non-teacher row with predictions and
    the highest AUC, preferring rows with a teacher on their backend and compression
    methods over the student baseline; ties go to the faster row."""
    ok = [r for r in run.rows if _ok(r) and run.predictions(r) is not None]
    teachers = {r["backend"]: r for r in ok if r["model"] == "teacher"}
    cands = [r for r in ok if r["model"] != "teacher" and _num(r.get("auc_roc"))]
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


def _plots(run: RunView) -> str:
    from reports import plots

    out = ["<h2 id=\"plots\">Plots</h2>"]
    ok = [r for r in run.rows if _ok(r)]
    palette = plots.colors(r["backend"] for r in ok)

    def attempt(make, alt, caption, empty):
        try:
            png = make()
        except Exception as exc:  # a report renders even when one figure cannot
            out.append(f"<p class=\"warn\">{_e(alt)}: could not be drawn: "
                       f"{_e(type(exc).__name__)}: {_e(exc)}</p>")
            return
        out.append(_figure(png, alt, caption) if png
                   else f"<p class=\"muted\">{_e(alt)}: {empty}</p>")

    lat_pts = [r for r in ok if _num(r.get("auc_roc")) and _num(r.get("latency_ms_p50"))
               and r["latency_ms_p50"] > 0]
    out.append("<h3>AUC-ROC against latency</h3>")
    attempt(lambda: lat_pts and plots.tradeoff(
        lat_pts, "latency_ms_p50", "median latency, batch 1 (ms, log scale; bars: 95% interval)",
        palette, ("latency_ms_ci_low", "latency_ms_ci_high")),
        "AUC-ROC against latency",
        "Ok rows; one colour per backend, a marker per precision. The step line joins each "
        "backend's Pareto front (no other row there is both faster and more accurate); names "
        "on the front are bold.", "no ok row has both an AUC and a latency")
    size_pts = [r for r in ok if _num(r.get("auc_roc")) and _num(r.get("file_mib"))
                and r["file_mib"] > 0]
    out.append("<h3>AUC-ROC against size</h3>")
    attempt(lambda: size_pts and plots.tradeoff(
        size_pts, "file_mib", "deployed file size (MiB, log scale)", palette, facet=True),
        "AUC-ROC against file size",
        "As above, against <code>file_mib</code> (the file(s) each backend deploys), one panel "
        "per backend; the step line is the Pareto front of size and AUC.",
        "no ok row has both an AUC and a file size")

    bars = [r for r in ok if r["model"] != "teacher"
            and (_num(r.get("speedup")) or _num(r.get("compression_ratio")))]
    labels = _labels(bars)
    values = {m: {(labels[id(r)], r["backend"]): r[m] for r in bars if _num(r.get(m))}
              for m in ("speedup", "compression_ratio")}
    out.append("<h3>Speedup and compression</h3>")
    attempt(lambda: bars and plots.grouped_bars(list(dict.fromkeys(labels.values())), values,
                                                palette),
            "speedup and compression per model and backend",
            "Against the teacher on the same backend (dashed line: the teacher). Speedup: "
            "teacher's latency_ms_p50 / the row's; compression: teacher's file_mib / the row's.",
            "no ok compressed row has a speedup or compression ratio")

    timed = [r for r in ok if run.samples(r)]
    tlabels = _labels(timed)
    samples = {}
    for r in timed:
        samples[(tlabels[id(r)], r["backend"])] = np.concatenate(run.samples(r))
    out.append("<h3>Latency distributions</h3>")
    attempt(lambda: samples and plots.latency_boxes(samples, palette),
            "latency distributions per model and backend",
            "Every timed batch-1 inference of every measuring process (latency/*.npz), pooled "
            "per row: box = quartiles, line = median, whiskers = 1.5 IQR, dots beyond them.",
            "no latency samples in this run directory")

    teacher, best, why = best_compressed(run)
    out.append("<h3>ROC and calibration</h3>")
    curves = []
    if teacher is not None:
        curves.append((f"teacher ({teacher['backend']})", run.predictions(teacher)))
    if best is not None:
        curves.append((f"{best['model']} ({best['backend']}, {best['precision']})",
                       run.predictions(best)))
    caption = (f"Teacher against <b>{_e(best['model'])}</b> on {_e(best['backend'])} "
               f"({_e(best['precision'])}): {_e(why)}. From predictions/*.npz of the test "
               "split. Binary: P(positive); multiclass: micro-averaged one-vs-rest ROC and "
               "top-label confidence; multilabel: labels pooled, masked (NaN) targets left out."
               if best is not None else _e(why))
    attempt(lambda: curves and plots.roc_and_reliability(curves),
            "ROC curves and reliability diagram", caption, "no predictions in this run directory"
            + (f" ({_e(why)})" if best is None else ""))
    return "".join(out)


def _chain(info: dict) -> str:
    steps = info.get("steps") or []
    if not steps:
        return "baseline (no compression step)"
    parts = []
    for s in steps:
        if not isinstance(s, dict):
            parts.append(str(s))
            continue
        params = s.get("params") or {}
        args = (", ".join(f"{k}={v}" for k, v in params.items()) if isinstance(params, dict)
                else params)
        parts.append(f"{s.get('method', '?')}({args})")
    return " → ".join(parts)


def _provenance(run: RunView) -> str:
    models = run.manifest.get("models")
    out = ["<h2 id=\"provenance\">Provenance</h2>"]
    if not isinstance(models, dict) or not models:
        return "".join(out) + "<p>The manifest lists no models.</p>"
    body = []
    for name, info in models.items():
        if not isinstance(info, dict):
            info = {"error": str(info)}
        if "error" in info:
            body.append(f"<tr class=\"failed\"><td class=\"text\">{_e(name)}</td>"
                        f"<td class=\"text\" colspan=\"6\">could not be built: {_e(info['error'])}"
                        "</td></tr>")
            continue
        notes = info.get("notes") or []
        notes = "; ".join(map(str, notes)) if isinstance(notes, list) else str(notes)
        body.append("<tr>" + "".join(f"<td class=\"text\">{_e(v)}</td>" for v in (
            name, info.get("arch", ""), _chain(info), info.get("precision", ""),
            info.get("quantization") or "–", notes))
            + f"<td>{_e(fmt('seconds', info.get('seconds')))}</td></tr>")
    out.append("<div class=\"scroll\"><table><thead><tr><th>model</th><th>arch</th>"
               "<th>chain (method(parameters) → …)</th><th>precision</th><th>quantization</th>"
               "<th>notes</th><th>build<br><small>s</small></th></tr></thead><tbody>"
               + "".join(body) + "</tbody></table></div>")
    return "".join(out)


def _manifest(run: RunView) -> str:
    m = run.manifest
    out = ["<h2 id=\"manifest\">Manifest</h2>"]
    if not m:
        return "".join(out) + "<p>No manifest.</p>"
    cmd = m.get("command")
    run_facts = {"created": m.get("created"), "command": " ".join(map(str, cmd))
                 if isinstance(cmd, list) else cmd, "git_commit": m.get("git_commit"),
                 "wall_seconds": m.get("wall_seconds"), "failed_rows": m.get("failed_rows")}
    out.append("<div class=\"grid\">")
    for title, d in (("run", {k: v for k, v in run_facts.items() if v is not None}),
                     ("versions", m.get("versions")), ("machine", m.get("machine")),
                     ("machine probe (idle power, GEMM peaks)", m.get("machine_probe")),
                     ("data", m.get("data")), ("teacher", m.get("teacher"))):
        table = _kv(d) if isinstance(d, dict) else "<p>–</p>"
        out.append(f"<div><h3>{_e(title)}</h3>{table}</div>")
    out.append("</div>")
    backends = m.get("backends")
    if isinstance(backends, dict) and backends:
        out.append("<h3>backends</h3>" + _kv(backends))
    out.append("<details><summary>config</summary><pre>"
               + _e(json.dumps(m.get("config", {}), indent=1, default=str)) + "</pre></details>")
    out.append("<details><summary>the whole manifest.json</summary><pre>"
               + _e(json.dumps(m, indent=1, default=str)) + "</pre></details>")
    return "".join(out)


# ---------------------------------------------------------------------------- the page

def render(run: RunView) -> str:
    title = f"medbench report: {run.root.name}"
    return "".join([
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        _header(run), _summary(run), _warnings(run), _published(run), _results(run),
        _plots(run), _provenance(run), _manifest(run),
        "<footer>Written by <code>reports.html.write_report</code> from this run directory "
        "alone; re-render with <code>python -m bench report RUN_DIR</code>.</footer>",
        "</body></html>",
    ])


def write_report(run_dir: Path) -> Path:
    """Render RUN/report.html from the run directory; ValueError if it is not a run."""
    run = load_run(run_dir)
    out = run.root / "report.html"
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.write_text(render(run), encoding="utf-8")
    os.replace(tmp, out)
    return out


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.2em 1.6em;color:#222;
 max-width:1700px}
h1{margin:0 0 .3em}h2{margin-top:1.6em;border-bottom:2px solid #ddd;padding-bottom:.15em}
h3{margin:1.1em 0 .4em;font-size:1.02em}
nav a{margin-right:1em}.facts{line-height:1.6}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:12px;margin:.3em 0}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right;vertical-align:top}
td{white-space:nowrap}
th{background:#f3f3f3;vertical-align:bottom;font-weight:600;text-align:center}
td.text{text-align:left;white-space:normal}
table.results td.text:first-child,table.summary td.text{white-space:nowrap}
ul.notes{font-size:12px;color:#444}
table.full{font-size:11px}
table.full td.text{min-width:10em;max-width:40em}
table.kv th{text-align:left;vertical-align:top}
table.kv td{max-width:60em;word-break:break-word}
td.best{font-weight:bold;background:#e3f4e6}
.best-key{font-weight:bold;background:#e3f4e6;padding:0 3px}
.ci{color:#666;font-size:10.5px;white-space:nowrap}
tr.failed td{background:#fde8e8}
tr.na td{color:#888;background:#f8f8f8}
tr.teacher td{background:#f2f6fc}
td.status{text-align:left;min-width:12em;white-space:normal}
.badge{display:inline-block;white-space:nowrap;border-radius:3px;padding:0 5px;margin:0 3px 1px 0;
 font-size:10.5px; font-weight:600;color:#fff}
.badge.ok{background:#2e7d32}.badge.failed{background:#c62828}.badge.na{background:#757575}
.badge.quick{background:#5c6bc0}.badge.unstable{background:#ef6c00}.badge.other{background:#546e7a}
.reason{font-size:10.5px;color:#555;max-width:22em;white-space:normal}
.verdict{font-weight:600}.verdict.good{color:#2e7d32}.verdict.bad{color:#c62828}
.verdict.unsure{color:#b26a00}
.nmd{color:#555;font-style:italic}
.muted{color:#888}.warn{color:#c62828}
ul.warnings li{margin:.25em 0;background:#fff8e1;padding:4px 8px;border-left:4px solid #f0c040;
 list-style:none}
ul.warnings{padding-left:0}
figure{margin:.4em 0 1.2em}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:12px;color:#444;max-width:70em}
.legend{font-size:12px;color:#444}
.grid{display:flex;flex-wrap:wrap;gap:0 2em}
details{margin:.6em 0}summary{cursor:pointer;color:#1a5fb4}
pre{background:#f7f7f7;padding:8px;font-size:11px;overflow:auto;max-height:30em}
footer{margin-top:2em;font-size:11px;color:#777}
"""
