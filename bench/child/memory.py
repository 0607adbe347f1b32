"""Peak resident memory from the kernel (VmHWM), not a sampled guess.

Writing 5 to /proc/self/clear_refs resets VmHWM (Linux >= 4.0), so one worker process
can report a fresh peak per model. Where that is not possible ru_maxrss is used and the
peak covers the process's whole life; `peak_is_per_model` says which.
"""

from __future__ import annotations

import resource


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    kib = _status_kib("VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024


def rss_mib() -> float | None:
    kib = _status_kib("VmRSS")
    return None if kib is None else kib / 1024


def total_mib() -> float | None:
    """The machine's memory (MemTotal), to judge whether a killed process's peak was near
    it (the OOM killer's mark); None where /proc/meminfo is not there."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
