"""The bench's cache directory (trained teachers, generated data, the machine probe).

Nothing else is written outside a run. A cache is only ever a shortcut: a file that
cannot be read (cut by a kill, a full disk, another version's format) is reported in
one line, deleted and rebuilt, never allowed to stop a run; and files are written
atomically, so a reader never sees half of one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bench.inputs import damage, reason

T = TypeVar("T")


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


def read_or_rebuild(path: Path, read: Callable[[Path], T], label: str) -> T | None:
    """`read(path)`, or None when there is no such file or reading it fails in any way.

    A failure prints `warning: <path>: corrupt <label> cache (<reason>); rebuilding` on
    stderr and deletes the file, so the caller rebuilds it; `read` should also raise on
    content that does not fit (a missing key, a wrong shape) so that counts as corrupt.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return read(path)
    except Exception as exc:  # any failure to read a shortcut means: make it again
        why = damage(path) or reason(exc, 120)  # empty, an LFS pointer, a cut zip: say so
        print(f"warning: {path}: corrupt {label} cache ({why}); rebuilding",
              file=sys.stderr, flush=True)
        with contextlib.suppress(OSError):
            path.unlink()
        return None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` all at once: a temporary file in the same directory (so the
    rename stays on one file system), flushed and fsynced, then renamed over `path`.
    Any failure removes the temporary file; a full disk is an OSError naming the path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"{path}: disk full, could not write {len(data)} "
                          "bytes (no space left on device)") from exc
        raise
