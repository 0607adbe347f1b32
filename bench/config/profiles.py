"""The two profiles, --quick (a smoke test) and --rigorous (for publication): each a layer
of settings over the defaults and a preset, under the command line (bench.config.settings
applies them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.child.timed_loop import LatencyPlan
from bench.config.sections import RunConfig
from bench.data import SyntheticSizes

# --quick: a smoke test, not a measurement. The `ci` preset sets the same data and
# training values (bench.config.presets).
QUICK_IMAGE_SIZE = 32
QUICK_SIZES = SyntheticSizes(train=256, val=64, test=128, calibration=32, transfer=512)
QUICK_TEACHER_EPOCHS = 1.0
QUICK_STUDENT_EPOCHS = 1.0  # at most
QUICK_FINETUNE_EPOCHS = 0.1  # at most
QUICK_LATENCY = LatencyPlan(warmup_n=3, warmup_s=0.05, min_n=20, min_s=0.1, max_s=2.0)
QUICK_N_BOOT = 200  # at most

# --rigorous, for publication: at least 5 fresh processes of at least 10 s each
RIGOROUS_REPEATS = 5
RIGOROUS_PLAN = LatencyPlan(warmup_n=10, warmup_s=2.0, min_n=200, min_s=10.0, max_s=60.0)
RIGOROUS_RETIME_S = 600.0


def quick_profile(below: RunConfig) -> dict[str, Any]:
    """Smaller data and images, at most one epoch, short latency loops, one process per
    backend, and a preset's first seed only (the command line beats all of it)."""
    layer: dict[str, Any] = {
        "measurement.shared_process": True,
        "data.image_size": QUICK_IMAGE_SIZE,
        "data.sizes": QUICK_SIZES,
        "training.teacher_epochs": QUICK_TEACHER_EPOCHS,
        "training.student_epochs": min(below.training.student_epochs, QUICK_STUDENT_EPOCHS),
        "training.finetune_epochs": min(below.training.finetune_epochs, QUICK_FINETUNE_EPOCHS),
        "measurement.latency": QUICK_LATENCY,
        "measurement.retime_budget_s": 0.0,  # one shared process per backend: nothing to re-time
        "measurement.n_boot": min(below.measurement.n_boot, QUICK_N_BOOT),
    }
    if below.seeds:
        layer.update(seed=below.seeds[0], seeds=[])
    return layer


def rigorous_profile(below: RunConfig) -> dict[str, Any]:
    """At least 5 fresh processes of at least 10 s per row, and a 600 s re-timing budget."""
    m = below.measurement
    return {"measurement.repeats": max(m.repeats, RIGOROUS_REPEATS),
            "measurement.latency": RIGOROUS_PLAN,
            "measurement.max_repeats": max(m.max_repeats, 2 * RIGOROUS_REPEATS),
            "measurement.retime_budget_s": max(m.retime_budget_s, RIGOROUS_RETIME_S)}


PROFILES: dict[str, Callable[[RunConfig], dict[str, Any]]] = {
    "quick": quick_profile, "rigorous": rigorous_profile}
