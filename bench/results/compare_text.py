"""The text `python -m bench compare` prints: one block per row both runs hold (status,
latency ratio, AUC delta, sizes, cost, notes), then the rows only one run holds.

It is apart from bench.results.compare, which decides what changed and whether it is
significant, so that the wording and number formats can change without touching the
statistics, and the statistics can be tested without parsing text.
"""

from __future__ import annotations

import math

from bench.results.compare import Comparison


def _num(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.6g}"


def _pct(rel: float) -> str:
    """+11.1%, or +0.0011% for a change too small for one decimal."""
    return f"{rel:+.1%}" if abs(rel) >= 0.001 else f"{rel * 100:+.2g}%"


def _p(p: float) -> str:
    return "-" if not math.isfinite(p) else "<0.001" if p < 0.001 else f"{p:.3f}"


def _verdict(significant: bool | None) -> str:
    return {True: "SIGNIFICANT", False: "not significant", None: "untested"}[significant]


def format_comparison(c: Comparison) -> str:
    """The report `compare` prints: one block per shared row, then rows in one run only."""
    lines = [f"A: {c.run_a}", f"B: {c.run_b}",
             f"{len(c.rows)} rows in both, {sum(r.significant for r in c.rows)} with a "
             f"significant change; {len(c.only_a)} only in A, {len(c.only_b)} only in B", ""]
    for r in c.rows:
        lines.append(" / ".join(r.key) + ("   [changed]" if r.significant else ""))
        if r.status_a != r.status_b:
            lines.append(f"  status   {r.status_a} -> {r.status_b}")
        if r.latency is not None:
            lat = r.latency
            ci = ("" if not math.isfinite(lat.ci_low) else
                  f" [{lat.ci_low:.3f}, {lat.ci_high:.3f}]")
            lines.append(f"  latency  p50 {lat.p50_a:.4g} -> {lat.p50_b:.4g} ms, ratio B/A "
                         f"{lat.ratio:.3f}{ci}  {_verdict(lat.significant)}"
                         + (f" ({lat.note})" if lat.note else ""))
        if r.auc is not None:
            a = r.auc
            if a.paired:
                ci = "" if not math.isfinite(a.ci_low) else f" [{a.ci_low:+.4f}, {a.ci_high:+.4f}]"
                test = f", {a.p_method} p {_p(a.p)}" if a.p_method else ""
                lines.append(f"  AUC      {a.auc_a:.4f} -> {a.auc_b:.4f}, delta {a.delta:+.4f}{ci}"
                             f"{test}  {_verdict(a.significant)}"
                             + (f" ({a.note})" if a.note else ""))
            else:
                lines.append(f"  AUC      {a.auc_a:.4f} -> {a.auc_b:.4f}, delta {a.delta:+.4f}  "
                             f"{a.note}")
        if r.sizes:
            for col, va, vb in r.sizes:
                rel = (f" ({_pct((vb - va) / va)})" if isinstance(va, (int, float))
                       and isinstance(vb, (int, float)) and va else "")
                lines.append(f"  size     {col} {_num(va)} -> {_num(vb)}{rel}")
        else:
            lines.append("  sizes    unchanged")
        if r.cost is not None:
            (sa, na), (sb, nb) = r.cost
            lines.append(f"  cost     from the teacher {_num(sa)} -> {_num(sb)} s, "
                         f"{_num(na)} -> {_num(nb)} optimiser steps")
        lines.extend(f"  note     {n}" for n in r.notes)
    for label, keys in (("only in A", c.only_a), ("only in B", c.only_b)):
        for key in keys:
            lines.append(f"{label}: {' / '.join(key)}")
    return "\n".join(lines)
