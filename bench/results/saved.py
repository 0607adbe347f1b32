"""Each stage's output saved once, keyed, by one mechanism: what lets a killed run continue.

A stage keeps each output as files in the run directory and one record beside them,
RUN/.resume/<stage>/<name>.json: the key of what made it, the files' paths (relative to
the run) and their sha256. Resuming is this mechanism finding the record again: it
counts only when its key is the one asked for and every file still hashes as recorded,
so a half-written or changed output is made again, never read. Records and files are
written atomically (bench.cache.atomic_write_bytes); the record last, so a kill leaves
no record of files that are not whole.

The stages: the method steps and the exports see it as a mapping of what was already
made (bench.pipeline.saved_stages), so the code that makes a step or deploys a cell knows
nothing of saving; the measurements keep each row's processes with it
(bench.measuring.kept_rows). The run removes RUN/.resume once it is whole.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from bench.cache import atomic_write_bytes
from bench.progress import log
from bench.results.store import safe_name


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class SavedOutputs:
    """The saved outputs of one run directory, per stage."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.folder = self.root / ".resume"

    def _record_path(self, stage: str, name: str) -> Path:
        return self.folder / stage / f"{safe_name(name)}.json"

    def file_path(self, stage: str, name: str, suffix: str) -> Path:
        """Where a stage keeps a file of its own (not already in the run's layout)."""
        path = self.folder / stage / f"{safe_name(name)}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def find(self, stage: str, name: str, key: str) -> dict | None:
        """The record of `name`'s output, where its key is `key` and every file hashes as
        recorded; else None (and a line saying why, where a record was there)."""
        try:
            record = json.loads(self._record_path(stage, name).read_text())
        except (OSError, ValueError):
            return None
        if record.get("key") != key:
            log(f"{name}: the saved {stage} output was made from other inputs; making it again")
            return None
        for rel, digest in zip(record["files"], record["sha256"], strict=True):
            try:
                whole = file_sha256(self.root / rel) == digest
            except OSError:
                whole = False
            if not whole:
                log(f"{name}: the saved {stage} output changed or is half-written; making it again")
                return None
        return record

    def keep(self, stage: str, name: str, key: str, files, **meta) -> dict:
        """Record `files` (already whole on disk) as `name`'s output, made from `key`."""
        rels = [str(Path(f).resolve().relative_to(self.root.resolve())) for f in files]
        record = {"name": name, "key": key, "files": rels,
                  "sha256": [file_sha256(self.root / r) for r in rels], **meta}
        path = self._record_path(stage, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(record, indent=1).encode())
        return record

    def records(self, stage: str) -> dict[str, dict]:
        """name -> record, for every output of `stage` saved so far."""
        out = {}
        for path in sorted((self.folder / stage).glob("*.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            out[record["name"]] = record
        return out

    def clear(self) -> None:
        """The run is whole: its saved state is no longer needed."""
        shutil.rmtree(self.folder, ignore_errors=True)
