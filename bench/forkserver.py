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
so a starting server never runs beside a timed process); the bench writes a job file's path as a line on the server's stdin; the forked
child runs `bench.worker.main(path)`, which writes its results to the job's results file
(anything it prints goes to the shared stdout and is passed on to the user, not parsed);
the server then writes `@@EXIT <code>` (a negative code: the child died of that signal).
Where fork is unavailable, `start` returns None and the bench starts plain processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import traceback

EXIT_PREFIX = "@@EXIT "
READY = "@@READY"


class Server:
    """A running fork server for one backend (see the module docstring)."""

    def __init__(self, backend: str, env: dict):
        self.backend = backend
        self._proc = subprocess.Popen([sys.executable, "-m", "bench.forkserver", backend],
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
        """Run one job in a forked child: (its stdout lines, its exit code)."""
        if self._proc.poll() is not None:
            raise RuntimeError(f"the {self.backend} fork server exited "
                               f"(code {self._proc.returncode})")
        self._proc.stdin.write(str(job_path) + "\n")
        self._proc.stdin.flush()
        lines = []
        for line in self._proc.stdout:
            if line.startswith(EXIT_PREFIX):
                return lines, int(line[len(EXIT_PREFIX):])
            lines.append(line.rstrip("\n"))
        raise RuntimeError(f"the {self.backend} fork server exited mid-job "
                           f"(code {self._proc.wait()})")

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
    """Import (never run) what a worker of this backend imports."""
    import importlib

    import numpy  # noqa: F401

    from bench import backends, worker  # noqa: F401
    from bench.backends import telemetry
    from bench.measure import energy, latency, memory  # noqa: F401
    from bench.measuring import records  # noqa: F401

    telemetry.switch_off()
    adapter = backends.get(backend)  # the adapter module itself
    if adapter.runtime:
        importlib.import_module(adapter.runtime)
    # codecarbon probes the hardware once per process (about 1.4 s here) and leaves no
    # thread behind: probed here, every child starts with it done.
    with energy.EnergyWindow():
        pass


def main(backend: str) -> int:
    from bench import worker

    _preload(backend)
    print(READY, flush=True)
    for line in sys.stdin:
        path = line.strip()
        if not path:
            continue
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
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        print(f"{EXIT_PREFIX}{code}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
