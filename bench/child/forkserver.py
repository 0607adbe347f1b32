"""Measuring processes forked from a server that has imported the runtime once.

Every row is measured in a fresh process (bench.measuring), and starting Python and
importing the runtime is most of what such a process costs here: `import torch` (a CUDA
build) takes about 3 s of the 6 s a torch worker took to start. So each backend gets one
server process, started with the measurement's pinned environment, that imports the
runtime and the worker's modules, lets codecarbon probe the hardware (1.4 s, cached per
process), and then forks one child per job. A child has never
loaded or run a model, and no runtime thread pool exists before the fork (none is created
by importing), so it is as fresh as a new interpreter without the start-up: the child
loads its model, creates its own thread pools, measures and exits. The server never runs
a model itself.

Protocol: the server writes `@@READY` once its imports are done (the bench waits for it,
so a starting server never runs beside a timed process); the bench writes one request per
job as a JSON line on the server's stdin, `{"job": PATH, "timeout_s": T, "progress":
RESULTS}` (a bare path is a request without a timeout); the forked child runs
`bench.child.worker.main(PATH)`, which writes its results to the job's results file (anything it
prints goes to the shared stdout and is passed on to the user, not parsed); the server
then writes `@@EXIT {"code": C, "peak_rss_mib": R, "hung_s": H}`: C negative where the
child died of signal -C, R the child's peak resident memory, H set where the server killed
the child because no result came within H seconds.

Why the server, not the bench, kills a hung child: only the parent can wait for a child
and read its exit status and peak memory (os.wait4), and a child the bench killed through
the server's back would leave the server blocked in its wait. `supervise` (shared with the
bench's plain-process fallback) waits on a thread until the child exits or the deadline
passes, without polling beside a timed child: the deadline is T seconds after the last
progress, the results file's modification time (the worker touches it when ready to
measure and appends a line per item), so each item of a shared process gets T seconds.
Where fork is unavailable, `start` returns None and the bench starts plain processes.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, replace

from bench import backends
from bench.backends import telemetry
from bench.child import energy, worker  # the worker's own imports: loaded once, in the server

EXIT_PREFIX = "@@EXIT "
READY = "@@READY"


@dataclass(frozen=True)
class ChildExit:
    """How a measuring process ended."""

    code: int  # its exit code; negative: it died of that signal
    peak_rss_mib: float | None = None  # its peak resident memory, where known
    hung_s: float | None = None  # killed after this many seconds without a result
    lines: tuple[str, ...] = ()  # what a forked child printed (passed on, not parsed)


class _Reaper:
    """Waits for one child on a thread (os.wait4: its status and peak memory), so that the
    parent can wait with a deadline while sleeping, not polling beside a timed child."""

    def __init__(self, pid: int):
        self.pid = pid
        self.status: int | None = None
        self.maxrss: int = 0
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._reap, name="reaper", daemon=True)
        self._thread.start()

    def _reap(self) -> None:
        try:
            _, self.status, usage = os.wait4(self.pid, 0)
            self.maxrss = usage.ru_maxrss
        except ChildProcessError:  # reaped elsewhere: its status is lost
            self.status = 0
        self.done.set()

    def result(self, hung_s: float | None) -> ChildExit:
        self._thread.join()  # no thread may be alive at the server's next fork
        scale = 1 / 2 ** 20 if sys.platform == "darwin" else 1 / 1024  # bytes there, KiB here
        return ChildExit(os.waitstatus_to_exitcode(self.status),
                         self.maxrss * scale if self.maxrss else None, hung_s)


def supervise(pid: int, progress: str | None, timeout_s: float | None,
              start_s: float = 0.0) -> ChildExit:
    """Wait for child `pid`; SIGKILL it where no progress came within `timeout_s` seconds.

    Progress is the modification time of the file `progress` (the job's results file):
    before the worker first touches it, the child gets `start_s` more (a new interpreter
    starting). Interrupted (Ctrl-C), the child is killed before the interruption goes on.
    """
    reaper = _Reaper(pid)
    started = time.time()
    try:
        while timeout_s is not None and not reaper.done.is_set():
            deadline, window, ready = _deadline(progress, started, timeout_s, start_s)
            now = time.time()
            if now >= deadline:
                _kill(reaper)
                reaper.done.wait()
                end = reaper.result(None)
                return replace(end, hung_s=window) if end.code == -signal.SIGKILL else end
            # Once the worker is ready, progress only moves the deadline later: sleep until
            # it. Before, its first touch may bring the deadline closer: look again meanwhile.
            reaper.done.wait(deadline - now if ready else
                             min(deadline - now, max(timeout_s / 4, 0.25)))
        reaper.done.wait()
    except BaseException:
        _kill(reaper)
        reaper.done.wait()
        raise
    return reaper.result(None)


def _deadline(progress: str | None, started: float, timeout_s: float,
              start_s: float) -> tuple[float, float, bool]:
    """(when the child is hung, the window it had, whether the worker is ready): T seconds
    after its last progress, or after its start allowance while it is not yet ready."""
    try:
        mtime = os.stat(progress).st_mtime if progress else None
    except OSError:
        mtime = None
    if mtime is not None and mtime >= started:
        return mtime + timeout_s, timeout_s, True
    return started + start_s + timeout_s, start_s + timeout_s, False


def _kill(reaper: _Reaper) -> None:
    if not reaper.done.is_set():
        try:
            os.kill(reaper.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Server:
    """A running fork server for one backend (see the module docstring)."""

    def __init__(self, backend: str, env: dict):
        self.backend = backend
        self._proc = subprocess.Popen([sys.executable, "-m", "bench.child.forkserver", backend],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                      env=env, bufsize=1)
        # Wait until its imports are done: nothing may run beside a timed process.
        for line in self._proc.stdout:
            if line.startswith(READY):
                return
            sys.stderr.write(line)
        raise RuntimeError(f"the {backend} fork server exited while starting "
                           f"(code {self._proc.wait()})")

    def run(self, job_path: str) -> tuple[list[str], int]:
        """Run one job in a forked child, without a timeout: (its stdout lines, exit code)."""
        end = self.run_job(job_path)
        return list(end.lines), end.code

    def run_job(self, job_path: str, timeout_s: float | None = None,
                progress: str | None = None) -> ChildExit:
        """Run one job in a forked child, killed where `progress` (the job's results file)
        goes `timeout_s` seconds without a change (see `supervise`)."""
        if self._proc.poll() is not None:
            raise RuntimeError(f"the {self.backend} fork server exited "
                               f"(code {self._proc.returncode})")
        request = {"job": str(job_path), "timeout_s": timeout_s, "progress": progress}
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        lines = []
        for line in self._proc.stdout:
            if line.startswith(EXIT_PREFIX):
                return replace(ChildExit(**json.loads(line[len(EXIT_PREFIX):])),
                               lines=tuple(lines))
            lines.append(line.rstrip("\n"))
        raise RuntimeError(f"the {self.backend} fork server exited mid-job "
                           f"(code {self._proc.wait()})")

    def alive(self) -> bool:
        return self._proc.poll() is None

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()


def start(backend: str, env: dict) -> Server | None:
    """A ready server, or None (no fork here, or it failed to start: the bench then starts
    a new interpreter per process, as it says on stderr)."""
    if not hasattr(os, "fork"):
        return None
    try:
        return Server(backend, env)
    except (RuntimeError, OSError) as exc:
        sys.stderr.write(f"{exc}; measuring {backend} in new processes instead\n")
        return None


def _preload(backend: str) -> None:
    """Import (never run) this backend's adapter and runtime, as a worker would (the
    worker's own modules are imported with this one)."""
    telemetry.switch_off()
    adapter = backends.get(backend)  # the adapter module itself
    if adapter.runtime:
        importlib.import_module(adapter.runtime)
    # codecarbon probes the hardware once per process (about 1.4 s here) and leaves no
    # thread behind: probed here, every child starts with it done.
    with energy.EnergyWindow():
        pass


def main(backend: str) -> int:
    _preload(backend)
    print(READY, flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = _request(line)
        path = request["job"]
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:  # the child: one job, then exit without running the server's cleanup
            code = 1
            try:
                code = worker.main(path)
            except BaseException:  # noqa: BLE001 - reported as the exit code
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code if isinstance(code, int) else 1)
        end = supervise(pid, request.get("progress"), request.get("timeout_s"))
        print(EXIT_PREFIX + json.dumps({k: v for k, v in asdict(end).items() if k != "lines"}),
              flush=True)
    return 0


def _request(line: str) -> dict:
    """A JSON request, or a bare job path (no timeout)."""
    text = line.strip()
    if text.startswith("{"):
        return json.loads(text)
    return {"job": text}


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1]))
    except BrokenPipeError:  # the bench is gone (killed): nobody to report to
        os._exit(0)
