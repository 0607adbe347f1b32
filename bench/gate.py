"""The CI regression gate: `python -m bench check RUN_DIR --baseline FILE`.

What is gated, per (model, backend, precision) row of the baseline; which columns, is
their `gate` metadata in bench.result (so a new column is gated by declaring it there):
  * exactly ("exact"): params, params_nonzero; within 1e-4 relative (rounding, see
    ROUNDING): weights_mib, compression_ratio.
    These are deterministic given the code, so any change is a change of the method.
  * as a ratio with a tolerance ("ratio"): speedup (default +-25%). Speedup is a ratio
    measured within one run, which cancels most of a machine's speed, but not its noise:
    where the run itself flagged the row or its backend's teacher row `unstable`
    (processes disagreeing, see bench.stats.latency), or where the backend's noise floor
    (its teacher's processes' disagreement) exceeds half the tolerance, its speedup is
    noise by the bench's own account, and is reported as not gated instead of failing
    the build.
    A shift every compressed row of a backend shares (the median of their speedup /
    baseline, with three rows or more) is the teacher's latency moving, not a method
    regressing: each speedup is gated against it, and a note says so (backend_shifts).
  * as a margin ("margin"): auc_roc may not fall below the baseline's by more than 0.02.
  * a row the baseline has that the run lacks, or that failed, is a violation.
Energy is never gated: on most machines it is an estimate proportional to time.
"""

from __future__ import annotations

import json
import math
import statistics
from datetime import UTC, datetime
from pathlib import Path

from bench.result import Result, gated, meta
from bench.store import load_rows

BASELINE_VERSION = 1
EXACT = tuple(gated("exact"))
#: latency ratios (speedup): the baseline's tolerance "speedup" applies to each
RATIO = tuple(gated("ratio"))
#: quality figures (auc_roc): the baseline's "auc_margin" applies to each
MARGIN = tuple(gated("margin"))
GATED = (*EXACT, *RATIO, *MARGIN)
#: relative difference that still counts as equal. Counts are compared exactly; sizes to
#: 1e-4: a TorchScript file embeds the source paths of the installed torchvision, so the
#: same model saved from another checkout differed by 1e-5 in size (CI's clone vs here).
ROUNDING = 1e-4
DEFAULT_SPEEDUP_TOLERANCE = 0.25
DEFAULT_AUC_MARGIN = 0.02


def _key(row: dict) -> str:
    return f"{row['model']} / {row['backend']} / {row['precision']}"


def baseline_from_run(run_dir: Path, speedup_tolerance: float = DEFAULT_SPEEDUP_TOLERANCE,
                      auc_margin: float = DEFAULT_AUC_MARGIN) -> dict:
    rows = []
    for r in load_rows(run_dir):
        if not r.ok:
            continue
        rows.append({"model": r.model, "backend": r.backend, "precision": r.precision,
                     **{c: getattr(r, c) for c in GATED}})
    return {"baseline_version": BASELINE_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "source_run": str(run_dir),
            "tolerances": {"speedup": speedup_tolerance, "auc_margin": auc_margin},
            "rows": rows}


def load_baseline(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: baseline not found (write one with --update)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if (not isinstance(doc, dict) or doc.get("baseline_version") != BASELINE_VERSION
            or not isinstance(doc.get("rows"), list)):
        raise ValueError(f"{path}: not a medbench baseline (expected baseline_version "
                         f"{BASELINE_VERSION} and a list of rows)")
    for i, row in enumerate(doc["rows"]):
        missing = {"model", "backend", "precision"} - set(row)
        if missing:
            raise ValueError(f"{path}: row {i} lacks {', '.join(sorted(missing))}")
    return doc


def check(run_dir: Path, baseline: dict, speedup_tolerance: float | None = None,
          auc_margin: float | None = None, notes: list | None = None) -> list[str]:
    """One line per violation; an empty list means every gated figure holds.

    `notes`, if given, receives one line per figure left ungated and why.
    """
    tol = baseline.get("tolerances", {})
    speedup_tolerance = speedup_tolerance if speedup_tolerance is not None else tol.get(
        "speedup", DEFAULT_SPEEDUP_TOLERANCE)
    auc_margin = auc_margin if auc_margin is not None else tol.get("auc_margin", DEFAULT_AUC_MARGIN)
    rows = {_key(r.to_dict()): r for r in load_rows(run_dir)}
    notes = notes if notes is not None else []
    shifts = backend_shifts(baseline, rows)
    for backend, shift in shifts.items():
        if abs(shift - 1) > speedup_tolerance / 2:
            notes.append(f"{backend}: its speedups moved together by {shift - 1:+.0%} (the median "
                         "over its rows): its teacher's latency moved in this run; each speedup "
                         "is gated against that shift")
    violations = []
    for base in baseline["rows"]:
        key = _key(base)
        row = rows.get(key)
        if row is None:
            violations.append(f"{key}: missing from the run")
            continue
        if not row.ok:
            violations.append(f"{key}: {row.status} ({row.error or 'no reason given'})")
            continue
        teacher = rows.get(f"teacher / {row.backend} / fp32")
        unstable = [r.model for r in (row, teacher) if r is not None and "unstable" in r.status]
        floor = teacher.noise_floor if teacher is not None else None
        noisy = floor is not None and floor > speedup_tolerance / 2
        for column, line in _check_row(key, base, row, speedup_tolerance, auc_margin,
                                       1.0 if row.model == "teacher"
                                       else shifts.get(row.backend, 1.0)):
            if unstable and column in RATIO:
                notes.append(f"{line}; not gated: {' and '.join(dict.fromkeys(unstable))} "
                             "unstable in this run")
            elif noisy and column in RATIO:
                notes.append(f"{line}; not gated: {row.backend}'s noise floor in this run "
                             f"({floor:.0%}) exceeds half the tolerance")
            else:
                violations.append(line)
    return violations


def backend_shifts(baseline: dict, rows: dict) -> dict[str, float]:
    """Per backend, the median over its compressed rows of speedup / baseline speedup.

    Every speedup on a backend divides by the same teacher latency, so when the teacher's
    processes all land slow (or fast) in one run, every speedup moves by the same factor.
    Measured here: OpenVINO's teacher ran at 1.4 to 2.9 ms per process from run to run
    (the same in the code before and after issue 11, 21 processes each), while its three
    processes within a run agreed to 6%, so the noise floor cannot see it; in one CI run
    every OpenVINO speedup was 47-76% above the baseline. A shift common to a backend's
    rows is the teacher's, which the gate does not gate; a method that regresses moves
    apart from the others. Fewer than three rows: no shift (1.0)."""
    ratios: dict[str, list[float]] = {}
    for base in baseline["rows"]:
        row = rows.get(_key(base))
        for c in RATIO:
            want = base.get(c)
            got = getattr(row, c, None) if row is not None and row.ok else None
            if want and got and base["model"] != "teacher":
                ratios.setdefault(base["backend"], []).append(got / want)
    return {b: float(statistics.median(r)) for b, r in ratios.items() if len(r) >= 3}


def _check_row(key: str, base: dict, row: Result, speedup_tolerance: float,
               auc_margin: float, shift: float = 1.0) -> list[tuple[str, str]]:
    """(column, violation) pairs: check() treats the latency ratios apart, as noise may
    excuse them. `shift`: the backend's common speedup shift (backend_shifts)."""
    out = []
    for c in EXACT:
        want, got = base.get(c), getattr(row, c)
        if want is None:
            continue
        same = (got == want if isinstance(want, int) and isinstance(got, int)
                else got is not None and math.isclose(got, want, rel_tol=ROUNDING, abs_tol=1e-12))
        if not same:
            out.append((c, f"{key}: {c} {_fmt(got)} != baseline {_fmt(want)}"))
    for c in RATIO:
        want, got, unit = base.get(c), getattr(row, c), meta(c)["unit"]
        if not want:
            continue
        if got is None:
            out.append((c, f"{key}: {c} missing (baseline {want:.3g}{unit})"))
        elif abs(got / (want * shift) - 1) > speedup_tolerance:
            against = ("" if shift == 1.0 else
                       f"; {got / (want * shift) - 1:+.0%} against the backend's common shift "
                       f"of {shift - 1:+.0%}")
            out.append((c, f"{key}: {c} {got:.3g}{unit} is {got / want - 1:+.0%} from baseline "
                           f"{want:.3g}{unit}{against} (tolerance +-{speedup_tolerance:.0%})"))
    for c in MARGIN:
        want, got = base.get(c), getattr(row, c)
        if want is None:
            continue
        if got is None:
            out.append((c, f"{key}: {c} missing (baseline {want:.4f})"))
        elif got < want - auc_margin:
            out.append((c, f"{key}: {c} {got:.4f} fell below baseline {want:.4f} by more "
                           f"than {auc_margin}"))
    return out


def diff(old: dict | None, new: dict) -> list[str]:
    """What --update would change, one line per changed figure."""
    before = {_key(r): r for r in (old or {}).get("rows", [])}
    lines = []
    for row in new["rows"]:
        key = _key(row)
        prev = before.pop(key, None)
        if prev is None:
            lines.append(f"+ {key}")
            continue
        for c in GATED:
            if prev.get(c) != row.get(c):
                lines.append(f"~ {key}: {c} {_fmt(prev.get(c))} -> {_fmt(row.get(c))}")
    lines += [f"- {key}" for key in before]
    return lines


def _fmt(v) -> str:
    if v is None:
        return "none"
    return f"{v:.6g}" if isinstance(v, float) else str(v)
