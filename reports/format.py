"""How a figure reads in the report, as Jinja filters.

One place decides the text of every number (counts as 7.04 M, p-values as <0.001,
intervals as "0.87 [0.84, 0.90]", about three significant digits elsewhere), so the
results, the summary and the published figures agree. The functions return plain text;
the template wraps it in markup and autoescaping escapes it.
"""

from __future__ import annotations

import json
import math

from bench.results.row import meta
from bench.stats.latency import no_measurable_difference

P_VALUES = ("delong_p", "delong_p_vs_student")
COUNT_UNITS = ("count", "MACs")  # shown as 7.04 M in the rounded tables


def column(name: str) -> dict:
    """A column's metadata; {} for a name that is no column (e.g. 'seconds')."""
    try:
        return meta(name)
    except KeyError:
        return {}


def is_num(v) -> bool:
    """A finite number (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def sig(v: float) -> str:
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
    p-values as <0.001, other figures to about 3 significant digits; exact: unrounded."""
    if v is None or v == "":
        return "–"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    unit = column(name).get("unit", "")
    if isinstance(v, int):
        if not exact and unit in COUNT_UNITS and abs(v) >= 10_000:
            return f"{v / 1e6:.2f} M" if abs(v) >= 1e6 else f"{v / 1e3:.1f} k"
        return f"{v:,}"
    if not math.isfinite(v):
        return "–"
    if exact:
        return f"{v:.6g}"
    if name in P_VALUES:
        return "<0.001" if v < 0.001 else f"{v:.3f}"
    if name == "parity_max_abs":
        return f"{v:.1e}"
    if name == "latency_cv":
        return f"{v:.1%}"
    if unit in ("", "probability") and abs(v) <= 1.5:
        return f"{v:+.3f}" if name.startswith("delta_") else f"{v:.3f}"
    return sig(v)


def figure(v, name: str, exact: bool = False) -> str:
    """fmt as a filter: {{ row[name]|figure(name) }}."""
    return fmt(name, v, exact)


def interval(row: dict, spec: tuple) -> tuple[str, str] | None:
    """The formatted ends of a (headline, low, high) spec's interval, or None."""
    if len(spec) != 3 or not (is_num(row.get(spec[1])) and is_num(row.get(spec[2]))):
        return None
    return fmt(spec[0], row[spec[1]]), fmt(spec[0], row[spec[2]])


def no_difference(row: dict, name: str) -> str | None:
    """For a speedup whose 95% interval holds 1: the tooltip behind its wording 'no
    measurable difference' (a ratio would claim a difference the run cannot show)."""
    if name != "speedup":
        return None
    low, high = row.get("speedup_ci_low"), row.get("speedup_ci_high")
    if not no_measurable_difference(low, high):
        return None
    return (f"{fmt(name, row.get(name))}x, 95% interval [{fmt(name, low)}, "
            f"{fmt(name, high)}] holds 1")


def counted(n: int, one: str, many: str | None = None) -> str:
    """'1 row is' / '3 rows are': a count with its noun (and verb) in the right number."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def percent(v) -> str:
    return f"{v:.1%}"


def json_text(v) -> str:
    """A value of a key-value table: strings as they are, anything else as compact JSON."""
    return v if isinstance(v, str) else json.dumps(v, default=str)


def json_block(v) -> str:
    return json.dumps(v, indent=1, default=str)


FILTERS = {"figure": figure, "interval": interval, "no_difference": no_difference,
           "counted": counted, "percent": percent, "json_text": json_text,
           "json_block": json_block}


def as_dict(v) -> dict:
    """A manifest entry that should be a mapping, or {} where it is missing or not one
    (runs written by older versions)."""
    return v if isinstance(v, dict) else {}
