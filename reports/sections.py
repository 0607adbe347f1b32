"""The page's sections as plain data, from a loaded run (reports.run): the facts at the top,
the summary per backend, the warnings, a preset's published figures, and the results.

Everything these sections show is decided here (which rows, which roles, which warnings,
which published figures), from the run directory alone and from the columns' metadata in
bench.results.row; nothing here knows HTML, so the template is the only place markup lives
and autoescaping covers every string that came from the run. The figures (reports.figures)
and the provenance and manifest (reports.provenance) are the page's other sections;
reports.html assembles them all into the page.
"""

from __future__ import annotations

from bench.results.machines import machine_line
from bench.results.row import (
    STATUS_FAILED,
    STATUS_NA,
    STATUS_OK,
    Result,
    nothing_to_transfer,
    row_label,
    view,
    with_intervals,
)
from reports.format import as_dict, column, fmt, is_num
from reports.provenance import by_machine
from reports.run import RunView, base_status, is_ok, qualifiers
from reports.tables import header, table


def facts(run: RunView) -> list[tuple[str, str]]:
    m, cfg = run.manifest, run.config
    data, teacher = as_dict(m.get("data")), as_dict(m.get("teacher"))
    counts = {s: sum(base_status(r) == s for r in run.rows)
              for s in (STATUS_OK, STATUS_FAILED, STATUS_NA)}
    out = [
        ("run", run.root.name), ("created", m.get("created", "unknown")),
        ("dataset", f"{data.get('generator', cfg.get('dataset', '?'))}, "
                    f"{data.get('task', cfg.get('task', '?'))} "
                    f"{list(data.get('classes', []))}, {m.get('image_size', '?')} px"),
        ("teacher", f"{cfg.get('teacher', teacher.get('arch', '?'))} "
                    f"({teacher.get('source', '?')})"),
        ("rows", f"{len(run.rows)}: {counts[STATUS_OK]} ok, {counts[STATUS_FAILED]} failed, "
                 f"{counts[STATUS_NA]} n/a; backends {', '.join(run.backends()) or '–'}"),
        ("margin", f"non-inferiority margin on AUC {cfg.get('margin', '?')}"),
        ("commit", m.get("git_commit") or "unknown"),
    ]
    if cfg.get("preset"):
        out.append(("preset", cfg["preset"]))
    return [(k, str(v)) for k, v in out]


def summary(run: RunView) -> dict:
    """Per backend: the teacher, the smallest and the fastest non-inferior row (or why
    there is none), and a tally of the other rows' verdicts."""
    roles, tallies = [], []
    for b in run.backends():
        rows = [r for r in run.rows if r["backend"] == b and is_ok(r)]
        teacher = next((r for r in rows if r["model"] == "teacher" and r["precision"] == "fp32"),
                       next((r for r in rows if r["model"] == "teacher"), None))
        others = [r for r in rows if r["model"] != "teacher"]
        good = [r for r in others if r.get("verdict") == "non-inferior"]
        tally = {v: sum(r.get("verdict") == v for r in others)
                 for v in ("non-inferior", "inconclusive", "inferior")}
        tally["no verdict"] = len(others) - sum(tally.values())
        smallest = min((r for r in good if is_num(r.get("file_mib"))), default=None,
                       key=lambda r: r["file_mib"])
        fastest = min((r for r in good if is_num(r.get("latency_ms_p50"))), default=None,
                      key=lambda r: r["latency_ms_p50"])
        note = "; ".join(f"{n} {v}" for v, n in tally.items() if n) or "no other ok rows"
        floor = teacher.get("noise_floor") if teacher else None
        note += ("; noise floor " + (f"{floor:.1%} (the teacher's {teacher.get('latency_repeats')} "
                                     "processes disagree by this much: a speedup closer to 1 is no "
                                     "measurable difference)" if is_num(floor)
                                     else "unknown (the teacher ran in one process)"))
        for role, r in (("teacher", teacher), ("smallest non-inferior", smallest),
                        ("fastest non-inferior", fastest)):
            why = "" if r is not None else (
                "no ok teacher row on this backend: no verdicts" if role == "teacher"
                else "none (" + note + ")")
            roles.append({"backend": b, "role": role, "row": r, "why": why})
        tallies.append((b, note))
    columns = [header(s, "with its 95% interval") for s in with_intervals(view("summary"))]
    for c in columns:
        c["text"] = c["name"] == "model"  # one row per role: only the name wraps
    return {"margin": run.config.get("margin"), "roles": roles, "tallies": tallies,
            "columns": columns, "teacher_cost": teacher_cost(run.manifest),
            "nothing_to_transfer": nothing_to_transfer(run.rows)}


def teacher_cost(manifest: dict) -> str | None:
    """The teacher's own training, said once (rows carry their cost from the teacher on)."""
    t = as_dict(manifest.get("teacher"))
    if t.get("source") not in ("trained", "cache"):
        return None
    steps, seconds, rule = t.get("train_steps"), t.get("train_seconds"), t.get("rule")
    return (f"{t.get('arch', 'teacher')}: "
            + (f"{steps} optimiser steps" if steps else "optimiser steps not recorded")
            + (f" in {seconds:g} s" if is_num(seconds) else "")
            + (" (read from the cache)" if t.get("source") == "cache" else "")
            + (f"; {rule}" if rule else ""))


def warnings(run: RunView) -> list[dict]:
    """What a reader must know before trusting a figure, each as {kind, ...}."""
    rows = run.rows
    items = [{"kind": "problem", "text": p} for p in run.problems]
    estimated = [r for r in rows if (r.get("energy_source") or "").startswith("estimate")]
    if estimated:
        items.append({"kind": "estimated", "n": len(estimated),
                      "example": estimated[0]["energy_source"]})
    quick = [r for r in rows if "quick" in qualifiers(r)]
    if quick:
        items.append({"kind": "quick", "n": len(quick)})
    unstable = [r for r in rows if "unstable" in qualifiers(r)]
    if unstable:
        items.append({"kind": "unstable", "n": len(unstable), "rows": ", ".join(
            f"{row_label(r)} (cv {fmt('latency_cv', r.get('latency_cv'))})" for r in unstable)})
    items += [{"kind": "failed", "id": row_label(r), "reason": r.get("error") or "no reason given"}
              for r in rows if base_status(r) == STATUS_FAILED]
    na = [r for r in rows if base_status(r) == STATUS_NA]
    if na:
        items.append({"kind": "na", "n": len(na), "rows": "; ".join(
            f"{row_label(r)}: {r.get('error') or '?'}" for r in na)})
    ok = [r for r in rows if is_ok(r)]
    no_pred = [r for r in ok if run.predictions(r) is None]
    if no_pred:
        items.append({"kind": "no_predictions", "rows": ", ".join(map(row_label, no_pred))})
    no_lat = [r for r in ok if not run.samples(r)]
    if no_lat:
        items.append({"kind": "no_samples", "rows": ", ".join(map(row_label, no_lat))})
    single = [r for r in ok if r.get("latency_repeats") == 1]
    if single:
        items.append({"kind": "single_process", "n": len(single)})
    for b in run.backends():
        if not any(r["backend"] == b and r["model"] == "teacher" and is_ok(r) for r in rows):
            items.append({"kind": "no_teacher", "backend": b})
    if str(run.manifest.get("git_commit") or "").endswith("-dirty"):
        items.append({"kind": "dirty"})
    return items


def published(run: RunView) -> dict:
    """A preset's published figures beside this run's, per backend; or why there are none
    (state: none, unknown, empty, table)."""
    name = run.config.get("preset")
    if not name:
        return {"state": "none"}
    from bench.config import presets

    try:
        preset = presets.get(str(name))
    except ValueError:
        return {"state": "unknown", "name": str(name)}
    if not preset.published:
        return {"state": "empty", "name": str(name)}
    backends = run.backends()
    known = {c["name"] for c in Result.columns()}
    lines = []
    for model, figures in preset.published.items():
        if not isinstance(figures, dict):
            continue
        for col, value in figures.items():
            if col == "note":
                continue
            ours = []
            for b in backends:
                r = next((r for r in run.rows if r["model"] == model and r["backend"] == b
                          and is_ok(r)), None)
                state = "missing" if r is None else "value" if col in known else "unknown"
                ours.append({"state": state, "row": r,
                             "spec": with_intervals([col])[0] if col in known else (col,)})
            lines.append({"model": model, "column": col, "unit": column(col).get("unit", ""),
                          "paper": fmt(col, value) if is_num(value) else str(value),
                          "ours": ours, "note": figures.get("note", "")})
    return {"state": "table", "name": preset.name, "summary": preset.summary,
            "citation": preset.citation, "backends": backends, "lines": lines}


def results(run: RunView) -> dict:
    """The main table (the 'main' view's columns), the notes, and every column unrounded."""
    specs = with_intervals(view("main"))
    if len({r.get("seed") for r in run.rows if r.get("seed") is not None}) > 1:
        specs.insert(3, ("seed",))
    every = [(c["name"],) for c in Result.columns()]
    groups = [{"machine": key, "about": machine_line(as_dict(run.manifest.get("machines")).get(key)),
               "table": table(rows, specs, mark_best=True, cls="results",
                              interval_note="with its bootstrap 95% interval")}
              for key, rows in by_machine(run.rows).items()]
    return {"main": table(run.rows, specs, mark_best=True, cls="results",
                          interval_note="with its bootstrap 95% interval"),
            "groups": groups,
            "notes": [(row_label(r), r["notes"]) for r in run.rows if r.get("notes")],
            "full": table(run.rows, every, mark_best=False, exact=True, cls="full")}
