"""Energy per inference, from codecarbon with a fresh tracker per measurement window.

A reused tracker accumulates energy while its duration resets (STACK-NOTES), so every
window gets its own. The window is the timed latency loop itself, so energy costs no
extra run time. Offline mode: no geolocation or cloud-metadata lookups. Without RAPL or
NVML counters codecarbon estimates power from CPU load and a fixed RAM figure; the
source string then starts with 'estimate:' and carries the power it assumed.
"""

from __future__ import annotations

import glob
import logging
import os
import threading


def has_rapl() -> bool:
    return any(os.access(p, os.R_OK) for p in glob.glob("/sys/class/powercap/intel-rapl:*/energy_uj"))


def prepare_in_background() -> threading.Thread:
    """Run codecarbon's one-off hardware probe (about 1.4 s here) on a thread.

    codecarbon caches the probe per process, so a throwaway tracker started while the
    worker loads the model and predicts the test split (both untimed) makes the real
    window start at once. Join the thread before timing anything.
    """

    def probe():
        window = EnergyWindow()
        with window:
            pass

    thread = threading.Thread(target=probe, name="codecarbon-probe", daemon=True)
    thread.start()
    return thread


class EnergyWindow:
    """`with EnergyWindow() as w: ...work...; w.result(n)` gives mJ per inference."""

    def __init__(self, expected_s: float = 1.0):
        from codecarbon import OfflineEmissionsTracker

        logging.getLogger("codecarbon").disabled = True  # it logs INFO/WARNING per tracker
        # One power reading at stop() rather than periodic ones that would wake a thread
        # inside the timed loop.
        self._tracker = OfflineEmissionsTracker(
            country_iso_code="USA", save_to_file=False, log_level="critical",
            measure_power_secs=max(10.0, 4 * expected_s), tracking_mode="process")

    def __enter__(self):
        self._tracker.start()
        return self

    def __exit__(self, *exc):
        self._tracker.stop()
        return False

    def joules(self) -> float:
        return self._tracker.final_emissions_data.energy_consumed * 3.6e6  # kWh -> J

    def duration_s(self) -> float:
        return float(self._tracker.final_emissions_data.duration)

    def result(self, n: int, idle_w: float | None = None) -> dict:
        """mJ per inference over the window, less `idle_w` watts over its duration."""
        data = self._tracker.final_emissions_data
        joules = self.joules()
        if idle_w is not None:
            joules = max(joules - idle_w * self.duration_s(), 0.0)
        mj = joules * 1e3 / max(n, 1)
        if has_rapl():
            source = "rapl"
        else:
            source = (f"estimate:codecarbon cpu_load, cpu {data.cpu_power:.1f} W + ram "
                      f"{data.ram_power:.1f} W over {data.duration:.2f} s")
        if idle_w is not None:
            source += f", idle {idle_w:.1f} W subtracted"
        return {"energy_mj_per_inference": mj, "energy_source": source,
                "energy_window_j": self.joules(), "energy_window_s": self.duration_s()}
