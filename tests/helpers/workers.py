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
    # the local --quick run (conftest's local_quick_run) is compared with the cluster's,
    # and the Ray tests stop every Ray on the machine. (The end-to-end tests as a group of
    # their own, the local run made on each worker, measured slower in CI: 1,548 s of
    # tests against 1,287 s, though one run each on a noisy machine.)
    "tests.end_to_end.test_end_to_end": "quick-run-and-ray",
    "tests.cluster.test_cluster": "quick-run-and-ray",
    "tests.cluster.test_cluster_security": "quick-run-and-ray",
}


def group_of(nodeid: str) -> str:
    """The scope pytest-xdist schedules a test in (conftest's GroupScheduling): its
    module's, or the group its module shares."""
    module = nodeid.split("::", 1)[0].removesuffix(".py").replace("/", ".")
    return SHARED.get(module, module)


def _alone(item) -> bool:
    return item is not None and item.get_closest_marker("alone") is not None


class _Room:
    """This worker's hold on the room: shared for a test, exclusive for an `alone` test,
    and kept exclusive while the next test on this worker is `alone` too, so that a run
    of them (one module's, in order) waits for the other worker once, not once each."""

    def __init__(self):
        self.file = None

    def enter(self, folder: Path, alone: bool) -> None:
        with open(folder / "turnstile", "a") as gate:
            fcntl.flock(gate, fcntl.LOCK_EX)
            if not alone:
                fcntl.flock(gate, fcntl.LOCK_UN)
            self.file = open(folder / "room", "a")  # noqa: SIM115 - held across tests
            fcntl.flock(self.file, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
            # leaving the with-block lets the gate go: the next test may queue at the room

    def leave(self) -> None:
        if self.file is not None:
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
            self.file = None


_ROOM = _Room()


@contextlib.contextmanager
def one_at_a_time_where_marked(item, nextitem):
    """Hold the room for the test's whole protocol: exclusive if it is marked `alone`
    (until the next test on this worker is not), shared otherwise; nothing outside a
    pytest-xdist session."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:
        yield
        return
    folder = Path(tempfile.gettempdir()) / f"medbench-pytest-{run}"
    folder.mkdir(exist_ok=True)
    if _ROOM.file is None:  # else: the previous `alone` test kept it for this one
        _ROOM.enter(folder, _alone(item))
    try:
        yield
    finally:
        if not (_alone(item) and _alone(nextitem)):
            _ROOM.leave()
