"""Keep a runtime's native start-up chatter out of the user's terminal.

ExecuTorch's C++ runtime prints cpuinfo probing and threadpool lines, and LiteRT's
interpreter an INFO line per delegate, straight to file descriptor 2 (Python's
sys.stderr redirection cannot catch them); the measuring processes pass their stderr on
to the user. Errors still surface: they are raised as Python exceptions.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def quiet_stderr():
    """Send fd 2 to /dev/null for the duration (the runtime's load, not its inference)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
