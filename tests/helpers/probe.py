"""A fresh bench cache that already holds this machine's probe (issue 29: CI time).

The machine probe (idle power, GEMM peaks; bench.measuring.launch.measure_machine) is
keyed by the machine, the threads and torch, never by the cache folder, yet every test
run with a cache of its own probed again: seconds on an AMX Xeon, most of a minute where
int8 has no fast kernel. It is made once in the suite's shared cache and copied into the
new ones; one test keeps a truly empty cache (two runs sharing it) and so still probes.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


def fresh_cache(path: Path, threads: tuple[int, ...] = ()) -> Path:
    """`path` as a new bench cache holding the probes of the default measuring threads (and
    `threads`), probed into the suite's shared cache first where it has none."""
    from bench import cache
    from bench.config.sections import default_threads
    from bench.measuring import launch

    path = Path(path)
    shared = cache.cache_dir()  # the suite's (tests/conftest.py sets MEDBENCH_CACHE)
    for n in sorted({default_threads(), *threads}):
        with tempfile.TemporaryDirectory() as work:
            launch.measure_machine(n, "cpu", True, Path(work))  # from the cache if there
    (path / "machine").mkdir(parents=True, exist_ok=True)
    for probe in (shared / "machine").glob("probe-*.json"):
        shutil.copy2(probe, path / "machine" / probe.name)
    return path
