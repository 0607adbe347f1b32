"""The report's tables as plain data: column heads from the columns' metadata in
bench.results.row (name, unit, direction arrow, tooltip), the best value of each column
marked by its declared direction among ok rows, and a row's status as badges with the
reason behind it.

How a table is laid out, apart from which tables the page has (reports.sections: the
summary and the results build theirs here) and from the markup (the template, which calls
`status` for each row's status cell).
"""

from __future__ import annotations

from dataclasses import fields

from bench.results.row import STATUS_FAILED, STATUS_NA, STATUS_OK, Result
from reports.format import column, is_num
from reports.run import base_status, is_ok, qualifiers

#: columns shown as text (left-aligned, wrapping): the record's string fields
TEXT_COLUMNS = {f.name for f in fields(Result) if f.type in ("str", str)}


def header(spec: tuple, interval_note: str = "") -> dict:
    """A column head from its metadata: name, unit, direction arrow, tooltip."""
    name = spec[0]
    m = column(name)
    extra = interval_note if len(spec) == 3 and interval_note else ""
    return {"name": name, "spec": spec, "unit": m.get("unit") or "",
            "arrow": {"higher": "↑", "lower": "↓"}.get(m.get("better"), ""),
            "title": m.get("doc", "") + (f" ({extra})" if extra else ""),
            "text": name in TEXT_COLUMNS}


def best_value(rows: list[dict], name: str):
    """The best value of a column among ok rows, by its declared direction (None if none)."""
    better = column(name).get("better")
    values = [r.get(name) for r in rows if is_ok(r) and is_num(r.get(name))]
    if not values or better not in ("higher", "lower"):
        return None
    return max(values) if better == "higher" else min(values)


def table(rows: list[dict], specs, mark_best: bool, exact: bool = False, cls: str = "",
          interval_note: str = "") -> dict:
    """A table of rows: column heads, and per row its class and its best-marked columns."""
    best = {s[0]: best_value(rows, s[0]) for s in specs} if mark_best else {}
    body = [{"row": r,
             "cls": {STATUS_FAILED: "failed", STATUS_NA: "na"}.get(base_status(r), ""),
             "best": {n for n, b in best.items()
                      if b is not None and is_ok(r) and r.get(n) == b}}
            for r in rows]
    return {"cls": cls, "exact": exact, "columns": [header(s, interval_note) for s in specs],
            "rows": body}


def status(row: dict) -> dict:
    """A status as badges (base status and qualifiers) and the reason behind it."""
    base = base_status(row) or "?"
    badges = [(base, {STATUS_OK: "ok", STATUS_FAILED: "failed", STATUS_NA: "na"}.get(base, "na"))]
    badges += [(q, q if q in ("quick", "unstable") else "other") for q in qualifiers(row)]
    reason = ""
    if base != STATUS_OK and row.get("error"):
        reason = row["error"]
    elif "unstable" in qualifiers(row):
        notes = row.get("notes") or ""
        at = notes.find("unstable: ")
        reason = notes[at:].split("; latency interval")[0] if at >= 0 else "unstable latency"
    return {"badges": badges, "reason": reason}
