"""Continuing a killed run: whether a run directory may be continued, and the pieces its
saved outputs are read back with.

A run directory is resumable while its manifest has no `wall_seconds` (written last).
Running again with the same `--out` and the same configuration continues it: each stage
finds what the killed attempt saved (bench.results.saved, one mechanism for all):

  * the models each method step built (their weights, loaded weights-only into the
    structure the step's method rebuilds: methods.base.Method.restore); int8 steps are
    cheap and deterministic, so made again;
  * the deployed files of every (model, backend, variant) cell, not exported again;
  * every measuring process's figures beside its raw samples
    (RUN/latency/<stem>.processes.jsonl), so a row that finished its first pass is not
    measured again.

Every file is written atomically (a temporary file, then os.replace), so a kill leaves
either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
from pathlib import Path

#: configuration sections that do not change what a run measures
IGNORED = ("output", "execution")


class RunDirectory:
    """A run directory and its manifest (empty for a new run)."""

    def __init__(self, root: Path, manifest: dict | None):
        self.root = Path(root)
        self.manifest = manifest or {}

    @property
    def resuming(self) -> bool:
        return bool(self.manifest)


def open_run(root: Path, config: dict) -> RunDirectory:
    """The run directory for a run of `config` (its manifest's form): new, or an
    unfinished run of the same configuration to continue. One-line ValueError for a
    finished run or a different configuration."""
    path = Path(root) / "manifest.json"
    if not path.exists():
        return RunDirectory(root, None)
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); choose another --out") from None
    if "wall_seconds" in manifest:
        raise ValueError(f"{root}: holds a finished run (created {manifest.get('created')}); "
                         "choose another --out")
    old = {k: v for k, v in (manifest.get("config") or {}).items() if k not in IGNORED}
    new = {k: v for k, v in _as_json(config).items() if k not in IGNORED}
    diffs = differences(old, new)
    if diffs:
        shown = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, a, b in diffs[:3])
        more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
        raise ValueError(f"{root}: holds an unfinished run of another configuration: "
                         f"{shown}{more}; give the same options to continue it, or another --out")
    return RunDirectory(root, manifest)


def differences(old, new, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted key, old value, new value) for every leaf that differs."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += differences(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else k)
        return out
    return [] if old == new else [(prefix, old, new)]


def _as_json(config: dict) -> dict:
    return json.loads(json.dumps(config, default=str))
