"""The table printed at the end of a run: the columns whose metadata puts them in the
`console` view (bench.results.row), with their labels and widths."""

from __future__ import annotations

from bench.results.row import Result, meta, nothing_to_transfer, view
from bench.stats.latency import no_measurable_difference


def table(rows: list[Result]) -> str:
    cols = [(c, meta(c)["width"] or 8, meta(c)["label"] or c) for c in view("console")]
    lines = ["  ".join(f"{label:<{w}}" if c == "model" else f"{label:>{w}}"
                       for c, w, label in cols)]
    for r in rows:
        cells = []
        for c, w, _ in cols:
            v = getattr(r, c)
            if c == "speedup" and v is not None and r.model != "teacher":
                v = ("no difference" if no_measurable_difference(r.speedup_ci_low, r.speedup_ci_high)
                     else f"{v:.2f}" + (f" [{r.speedup_ci_low:.2f}-{r.speedup_ci_high:.2f}]"
                                        if r.speedup_ci_low is not None else ""))
            elif isinstance(v, float):
                v = f"{v:.3f}" if c == "auc_roc" else f"{v:.2f}"
            v = "-" if v is None else str(v)
            cells.append(f"{v:<{w}}" if c == "model" else f"{v:>{w}}")
        lines.append("  ".join(cells))
    for r in rows:
        if r.delta_auc_vs_student is not None and r.backend == rows[0].backend:
            p = r.delong_p_vs_student
            lines.append(
                f"{r.model} against the student (same steps, no teacher): AUC "
                f"{r.delta_auc_vs_student:+.3f}"
                + (f" [{r.delta_auc_vs_student_ci_low:+.3f}, {r.delta_auc_vs_student_ci_high:+.3f}]"
                   if r.delta_auc_vs_student_ci_low is not None else "")
                + ("" if p is None else f", p = {p:.2g}"))
    costs = _costs(rows)
    if costs:
        lines.append("cost from the teacher: " + ", ".join(costs))
    transfer = nothing_to_transfer([r.to_dict() for r in rows])
    if transfer:
        lines.append("note: " + transfer)
    floors = {r.backend: r.noise_floor for r in rows
              if r.model == "teacher" and r.noise_floor is not None}
    if floors:
        lines.append("noise floor (the teacher's processes disagree by): "
                     + ", ".join(f"{b} {f:.1%}" for b, f in floors.items())
                     + "; 'no difference': the speedup's 95% interval, widened by it, holds 1")
    return "\n".join(lines)


def _costs(rows: list[Result]) -> list[str]:
    """Each model's cost from the teacher, in words: one figure where every backend's row
    has it, else its range (a realisation's work when deployed, pt2e QAT on the edge
    backends or a calibration, is its backend's row's own)."""
    by_model: dict[str, list[tuple]] = {}
    for r in rows:
        if r.compress_seconds is not None:
            by_model.setdefault(r.model, []).append((r.compress_seconds, r.compress_steps))
    out = []
    for model, costs in by_model.items():
        seconds, steps = sorted({round(c[0]) for c in costs}), sorted({c[1] for c in costs})
        out.append(f"{model} {_span(seconds)} s, {_span(steps)} steps"
                   + (" (by backend)" if len(seconds) > 1 or len(steps) > 1 else ""))
    return out


def _span(values: list) -> str:
    return f"{values[0]}" if len(values) == 1 else f"{values[0]}-{values[-1]}"
