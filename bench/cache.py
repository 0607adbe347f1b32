"""The bench's cache directory (trained teachers). Nothing else is written outside a run."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def cache_dir() -> Path:
    """$MEDBENCH_CACHE, else $XDG_CACHE_HOME/medbench, else ~/.cache/medbench."""
    root = os.environ.get("MEDBENCH_CACHE")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "medbench")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def key(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
