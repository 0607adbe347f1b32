"""How the suite shares this machine's cores among pytest-xdist's workers (issue 29: CI
within 25 minutes on 2 cores).

Two rules. A module's tests run on one worker (its module- and session-scoped fixtures,
such as a `--quick` run, are made once), and modules that share a fixture or a resource
share a group: the local `--quick` run is compared with the cluster's, and the Ray tests
stop Ray nodes. And a test whose verdict depends on time (a latency compared with another
tool's, a hang detected after a few seconds, a refusal within 30 s) is marked `alone`: it
runs with no other test running, as it would in a serial run.

`alone` is a pair of flock(2) locks in a folder this test session's workers share: every
test holds the room shared; an `alone` test takes the turnstile, then the room exclusive,
so tests that arrive meanwhile wait at the turnstile instead of starving it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path

#: modules that must share a worker, and the group they share
SHARED = {
    # the local --quick run (conftest's local_quick_run) is compared with the cluster's
    "tests.end_to_end.test_end_to_end": "quick-run-and-ray",
    "tests.cluster.test_cluster": "quick-run-and-ray",
    "tests.cluster.test_cluster_security": "quick-run-and-ray",
}


def worker_group(item) -> str:
    """The xdist group of a test: its module's, or the group its module shares."""
    module = item.module.__name__
    return SHARED.get(module, module)


@contextlib.contextmanager
def one_at_a_time_where_marked(item):
    """Hold the room for the test's whole protocol: exclusive if it is marked `alone`,
    shared otherwise; nothing outside a pytest-xdist session."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:
        yield
        return
    folder = Path(tempfile.gettempdir()) / f"medbench-pytest-{run}"
    folder.mkdir(exist_ok=True)
    alone = item.get_closest_marker("alone") is not None
    with open(folder / "turnstile", "a") as gate, open(folder / "room", "a") as room:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            if not alone:
                fcntl.flock(gate, fcntl.LOCK_UN)
            fcntl.flock(room, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            if alone:
                fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(room, fcntl.LOCK_UN)
