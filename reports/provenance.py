"""Where a run's figures came from, as the report shows it: each model's chain, the
machines the rows were measured on, and the manifest's records (sections of the page
beside reports.sections, which groups its results by machine here)."""

from __future__ import annotations

from reports.format import fmt
from reports.run import RunView


def by_machine(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows grouped by the machine they were measured on, in row order. A row never timed
    (n/a, failed before measuring) joins its backend's machine."""
    of_backend = {}
    for r in rows:
        if r.get("machine"):
            of_backend.setdefault((r.get("backend"), r.get("seed")), r["machine"])
    groups: dict[str, list[dict]] = {}
    for r in rows:
        key = r.get("machine") or of_backend.get((r.get("backend"), r.get("seed")), "")
        groups.setdefault(key, []).append(r)
    return groups


def chain(info: dict) -> str:
    """A model's compression chain as method(parameters) → …"""
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


def provenance(run: RunView) -> list[dict]:
    """Each model of the manifest: how it was built, or why it could not be."""
    models = run.manifest.get("models")
    out = []
    for name, info in (models.items() if isinstance(models, dict) else ()):
        if not isinstance(info, dict):
            info = {"error": str(info)}
        if "error" in info:
            out.append({"name": name, "error": str(info["error"])})
            continue
        notes = info.get("notes") or []
        out.append({"name": name, "error": None, "arch": info.get("arch", ""),
                    "chain": chain(info), "precision": info.get("precision", ""),
                    # schema 4: the backends with a realisation of the method of their own
                    # (int8); schema 2-3 recorded the quantization scheme instead
                    "realised_on": ", ".join(info.get("realised_on") or [])
                                   or info.get("quantization") or "–",
                    "notes": "; ".join(map(str, notes)) if isinstance(notes, list) else str(notes),
                    "seconds": fmt("seconds", info.get("seconds"))})
    return out


def manifest(run: RunView) -> dict:
    """The manifest's records as key-value groups, the config and the whole file."""
    m = run.manifest
    cmd = m.get("command")
    facts_ = {"created": m.get("created"), "command": " ".join(map(str, cmd))
              if isinstance(cmd, list) else cmd, "git_commit": m.get("git_commit"),
              "wall_seconds": m.get("wall_seconds"), "failed_rows": m.get("failed_rows")}
    groups = [("run", {k: v for k, v in facts_.items() if v is not None}),
              ("versions", m.get("versions")), ("machine", m.get("machine")),
              ("machine probe (idle power, GEMM peaks)", m.get("machine_probe")),
              ("data", m.get("data")), ("teacher", m.get("teacher"))]
    backends = m.get("backends")
    return {"groups": [(t, d if isinstance(d, dict) else None) for t, d in groups],
            "backends": backends if isinstance(backends, dict) and backends else None,
            "config": run.config, "whole": m}
