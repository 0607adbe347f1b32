"""The run's configuration: defaults, the --quick profile, and validation."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from bench.data import SyntheticSizes
from bench.measure.latency import LatencyPlan


def physical_cores() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


@dataclass
class RunConfig:
    methods: str = "kd,prune,quant"
    dataset: str = "synthetic"
    data_root: str | None = None
    uncertainty: str = "u-ones"  # CheXpert-style uncertain labels: u-ones, u-zeros, u-ignore
    frontal_only: bool = False
    labels: list[str] | None = None  # findings / classes to keep, in order
    task: str = "binary"
    num_classes: int = 2
    image_size: int = 64
    teacher: str = "densenet121"
    teacher_checkpoint: str | None = None
    student: str = "mobilenet_v2"
    teacher_epochs: float = 1.25
    student_epochs: float = 1.25
    finetune_epochs: float = 0.2
    backends: list[str] = field(default_factory=lambda: ["torch"])
    threads: int = field(default_factory=physical_cores)
    device: str = "cpu"
    seed: int = 0
    quick: bool = False
    out: str | None = None
    use_cache: bool = True
    sizes: SyntheticSizes = field(default_factory=SyntheticSizes)
    latency: LatencyPlan = field(default_factory=LatencyPlan)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def quick_profile(cfg: RunConfig, image_size_given: bool) -> RunConfig:
    """Smaller data, fewer epochs and iterations: a smoke test, not a measurement."""
    cfg.quick = True
    if not image_size_given:
        cfg.image_size = 32
    cfg.sizes = SyntheticSizes(train=256, val=64, test=128, calibration=32)
    cfg.teacher_epochs = 1.0
    cfg.student_epochs = min(cfg.student_epochs, 1.0)
    cfg.finetune_epochs = min(cfg.finetune_epochs, 0.1)
    cfg.latency = LatencyPlan(warmup_n=3, warmup_s=0.05, min_n=20, min_s=0.1, max_s=2.0)
    return cfg
