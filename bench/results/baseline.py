"""The gate's baseline file: what it holds, and how `check --update` writes it.

It exists apart from the gate (bench.results.gate) because writing, merging and reading
the file is bookkeeping that must never change what is gated. Speedup and AUC belong to
a machine; sizes do not. A speedup is a ratio of two latencies on one CPU, and another
CPU (its microarchitecture, its int8 instructions) gives another ratio; training's float
rounding follows the kernels the CPU's ISA selects, so the same seed trains other weights
there (measured: the `ci` preset's student on ONNX Runtime ran 11.0x on the AMD EPYC the
old baseline was recorded on, 6.7x on a CI machine and 4.0x on an Intel Xeon with AMX,
whose teacher AUC was 0.557 against 0.605; two runs on that Xeon agreed to 6%). So a
baseline (version 2) holds the sizes once, for every machine (`rows`), and the speedups
and AUCs per machine they were measured on (`machines`, each keyed by
bench.results.machines.MACHINE_FIELDS and the runtimes' versions).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

from bench.cache import atomic_write_bytes
from bench.results import model_code
from bench.results.machines import machine_class, machine_name, same_machine
from bench.results.row import Result, gated, row_label
from bench.results.store import load_rows

BASELINE_VERSION = 2
EXACT = tuple(gated("exact"))
#: latency ratios (speedup): the baseline's tolerance "speedup" applies to each
RATIO = tuple(gated("ratio"))
#: quality figures (auc_roc): the baseline's "auc_margin" applies to each
MARGIN = tuple(gated("margin"))
GATED = (*EXACT, *RATIO, *MARGIN)
#: the columns a baseline holds per machine (the rest, EXACT, once for every machine)
PER_MACHINE = (*RATIO, *MARGIN)
#: relative difference that still counts as equal. Counts are compared exactly; sizes to
#: 1e-4: a TorchScript file embeds the source paths of the installed torchvision, so the
#: same model saved from another checkout differed by 1e-5 in size (CI's clone vs here).
ROUNDING = 1e-4
DEFAULT_SPEEDUP_TOLERANCE = 0.25
DEFAULT_AUC_MARGIN = 0.02


def run_manifest(run_dir: Path) -> dict:
    """The run's manifest ({} where it is missing or unreadable)."""
    try:
        manifest = json.loads((Path(run_dir) / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def run_model_code(run_dir: Path) -> dict[str, str] | None:
    """The fingerprint of the code that made the run's models (bench.results.model_code),
    None for a run written before manifests recorded it."""
    code = run_manifest(run_dir).get("model_code")
    return code if isinstance(code, dict) else None


def row_machines(run_dir: Path, rows: dict[str, Result]) -> dict[str, dict | None]:
    """Row key -> the class of the machine it was measured on (the manifest's `machines`)."""
    manifest = run_manifest(run_dir)
    machines = manifest.get("machines")
    machines = machines if isinstance(machines, dict) else {}
    return {key: machine_class(machines.get(row.machine)) for key, row in rows.items()}


def baseline_from_run(run_dir: Path, speedup_tolerance: float = DEFAULT_SPEEDUP_TOLERANCE,
                      auc_margin: float = DEFAULT_AUC_MARGIN) -> dict:
    """The run's ok rows: sizes in `rows`, speedups and AUCs under their machine."""
    rows = {row_label(r.to_dict()): r for r in load_rows(run_dir) if r.ok}
    created = datetime.now(UTC).isoformat(timespec="seconds")
    sections: list[dict] = []
    for key, machine in row_machines(run_dir, rows).items():
        if machine is None:
            continue
        section = next((m for m in sections if m["machine"] == machine), None)
        if section is None:
            section = {"machine": machine, "created": created, "source_run": str(run_dir),
                       "rows": []}
            sections.append(section)
        r = rows[key]
        section["rows"].append({"model": r.model, "backend": r.backend, "precision": r.precision,
                                **{c: getattr(r, c) for c in PER_MACHINE}})
    return {"baseline_version": BASELINE_VERSION, "created": created,
            "source_run": str(run_dir), "model_code": run_model_code(run_dir),
            "tolerances": {"speedup": speedup_tolerance, "auc_margin": auc_margin},
            "rows": [{"model": r.model, "backend": r.backend, "precision": r.precision,
                      **{c: getattr(r, c) for c in EXACT}} for r in rows.values()],
            "machines": sections}


def merge(old: dict | None, new: dict) -> tuple[dict, list[str]]:
    """What --update writes: the run's sizes, its machines' figures in place of those
    machines' old ones, and the other machines' figures kept, unless the sizes or the
    model code changed (a method changed, so those figures are stale: dropped, one line
    each)."""
    if old is None:
        return new, []
    before = {row_label(r): r for r in old["rows"]}
    changed = before.keys() != {row_label(r) for r in new["rows"]} or any(
        not same_size(before[row_label(r)].get(c), r.get(c)) for r in new["rows"] for c in EXACT)
    why = "the sizes changed" if changed else None
    if old.get("model_code") != new.get("model_code"):
        why = why or "the model code changed"
    kept, lines = [], []
    for section in old.get("machines", []):
        if any(same_machine(section["machine"], n["machine"]) for n in new["machines"]):
            continue
        if why:
            lines.append(f"- speedups and AUCs of {machine_name(section['machine'])}: {why}, so "
                         "they are stale (record them again on that machine)")
        else:
            kept.append(section)
    return {**new, "machines": new["machines"] + kept}, lines


def update(path: Path, run_dir: Path, speedup_tolerance: float | None,
           auc_margin: float | None) -> tuple[dict, list[str]]:
    """`check --update`: the baseline to write at `path` from `run_dir`, and one line per
    change and per stale machine dropped. Tolerances not given keep the old file's, else
    the defaults."""
    path = Path(path)
    old = load_baseline(path) if path.exists() else None
    tol = (old or {}).get("tolerances", {})
    new = baseline_from_run(
        run_dir,
        speedup_tolerance if speedup_tolerance is not None else tol.get(
            "speedup", DEFAULT_SPEEDUP_TOLERANCE),
        auc_margin if auc_margin is not None else tol.get("auc_margin", DEFAULT_AUC_MARGIN))
    changes = diff(old, new)
    new, dropped = merge(old, new)
    return new, changes + dropped


def write(path: Path, baseline: dict) -> None:
    """The baseline as indented JSON, written atomically (a kill leaves the old file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(baseline, indent=1) + "\n").encode())


def load_baseline(path: Path) -> dict:
    """A baseline file as version 2; a version 1 file (figures of an unnamed machine) keeps
    its sizes, and its speedups and AUCs are not gated."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: baseline not found (write one with --update)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if (not isinstance(doc, dict) or doc.get("baseline_version") not in (1, BASELINE_VERSION)
            or not isinstance(doc.get("rows"), list)):
        raise ValueError(f"{path}: not a medbench baseline (expected baseline_version "
                         f"{BASELINE_VERSION} and a list of rows)")
    if not isinstance(doc.get("model_code"), dict | None):
        raise ValueError(f"{path}: `model_code` must be an object of file -> hash")
    if doc["baseline_version"] == 1:
        doc = {**doc, "baseline_version": BASELINE_VERSION, "machines": []}
    machines = doc.get("machines")
    if not isinstance(machines, list) or not all(
            isinstance(m, dict) and isinstance(m.get("machine"), dict)
            and isinstance(m.get("rows"), list) for m in machines):
        raise ValueError(f"{path}: `machines` must be a list of {{machine, rows}} objects")
    for where, rows in [("rows", doc["rows"])] + [(f"machines[{i}].rows", m["rows"])
                                                   for i, m in enumerate(machines)]:
        for i, row in enumerate(rows):
            missing = {"model", "backend", "precision"} - set(row if isinstance(row, dict) else ())
            if missing:
                raise ValueError(f"{path}: {where}[{i}] lacks {', '.join(sorted(missing))}")
    # sizes only: a version 1 file's speedups and AUCs were measured on an unnamed machine
    return {**doc, "rows": [{k: v for k, v in r.items() if k not in PER_MACHINE}
                            for r in doc["rows"]]}


def same_size(want, got) -> bool:
    """Counts exactly, sizes within ROUNDING: how the gate compares an EXACT column."""
    if want is None or got is None:
        return want is got
    if isinstance(want, int) and isinstance(got, int):
        return got == want
    return math.isclose(got, want, rel_tol=ROUNDING, abs_tol=1e-12)


def diff(old: dict | None, new: dict) -> list[str]:
    """What --update would change, one line per changed figure (sizes, then each of the
    run's machines' speedups and AUCs)."""
    lines = _diff_rows((old or {}).get("rows", []), new["rows"], EXACT)
    if old is not None and old.get("model_code") != new.get("model_code"):
        files = model_code.changed(old.get("model_code") or {}, new.get("model_code") or {})
        lines.append(f"~ model code: {model_code.describe(files)}" if old.get("model_code")
                     else "+ model code (the old baseline did not record it)")
    for section in new["machines"]:
        prev = next((m for m in (old or {}).get("machines", [])
                     if same_machine(m["machine"], section["machine"])), None)
        name = machine_name(section["machine"])
        if prev is None:
            lines.append(f"+ speedups and AUCs of {len(section['rows'])} rows on {name}")
            continue
        lines += [f"{line} (on {name})" for line in
                  _diff_rows(prev["rows"], section["rows"], PER_MACHINE)]
    return lines


def _diff_rows(old: list[dict], new: list[dict], columns: tuple) -> list[str]:
    before = {row_label(r): r for r in old}
    lines = []
    for row in new:
        key = row_label(row)
        prev = before.pop(key, None)
        if prev is None:
            lines.append(f"+ {key}")
            continue
        for c in columns:
            if prev.get(c) != row.get(c):
                lines.append(f"~ {key}: {c} {figure(prev.get(c))} -> {figure(row.get(c))}")
    return lines + [f"- {key}" for key in before]


def figure(v) -> str:
    """A gated figure as the gate's lines print it: `none`, 6 significant digits, or as is."""
    if v is None:
        return "none"
    return f"{v:.6g}" if isinstance(v, float) else str(v)
