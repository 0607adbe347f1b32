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


def default_threads() -> int:
    """Measurement threads: the physical cores minus one, at least 1.

    The harness, the OS and the energy tracker keep a core. On this 2-core VM batch-1
    latency at 2 threads was bimodal from process to process (DenseNet-121 TorchScript
    17-19 ms; a pruned one 5.5 ms in one pass, 15.4 ms in the next), at 1 thread steady
    (14.5-14.9 ms over passes; STACK-NOTES).
    """
    return max(1, physical_cores() - 1)


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
    teachers: list[str] = field(default_factory=list)  # --teachers: an averaged ensemble
    pretrained: bool = False
    student: str = "mobilenet_v2"
    teacher_epochs: float = 2.0
    student_epochs: float = 6.0  # of the labelled images, for kd and the student alike
    finetune_epochs: float = 0.2
    backends: list[str] = field(default_factory=lambda: ["torch"])
    precisions: list[str] = field(default_factory=list)  # extra float rows: bf16, fp16
    threads: int = field(default_factory=default_threads)  # measurement (see default_threads)
    train_threads: int = field(default_factory=lambda: physical_cores())  # training: every core
    device: str = "cpu"
    seed: int = 0
    seeds: list[int] = field(default_factory=list)  # --seeds: the whole pipeline once per seed
    repeats: int = 1  # fresh measuring processes per row (the teacher gets at least 2)
    #: seconds of further fresh processes for rows whose latency is not yet stable (and
    #: their backend's teacher), after the first pass; 0 turns the adaptive pass off
    retime_budget_s: float = 30.0
    max_repeats: int = 5  # the adaptive pass stops adding processes to a row here
    rigorous: bool = False
    margin: float = 0.02  # non-inferiority margin on AUC
    operating_point: str = "0.5"
    n_boot: int = 2000
    quick: bool = False
    shared_process: bool = False  # --quick: one measuring process per backend
    preset: str | None = None
    out: str | None = None
    use_cache: bool = True
    sizes: SyntheticSizes = field(default_factory=SyntheticSizes)
    latency: LatencyPlan = field(default_factory=LatencyPlan)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: --rigorous, for publication: at least 5 fresh processes of at least 10 s each
RIGOROUS_REPEATS = 5
RIGOROUS_PLAN = LatencyPlan(warmup_n=10, warmup_s=2.0, min_n=200, min_s=10.0, max_s=60.0)


def rigorous_profile(cfg: RunConfig) -> RunConfig:
    cfg.rigorous = True
    cfg.repeats = max(cfg.repeats, RIGOROUS_REPEATS)
    cfg.latency = RIGOROUS_PLAN
    cfg.max_repeats = max(cfg.max_repeats, 2 * RIGOROUS_REPEATS)
    cfg.retime_budget_s = max(cfg.retime_budget_s, 600.0)
    return cfg


def quick_profile(cfg: RunConfig, image_size_given: bool) -> RunConfig:
    """Smaller data, fewer epochs and iterations: a smoke test, not a measurement."""
    cfg.quick = True
    cfg.shared_process = True
    if not image_size_given:
        cfg.image_size = 32
    cfg.sizes = SyntheticSizes(train=256, val=64, test=128, calibration=32, transfer=512)
    cfg.teacher_epochs = 1.0
    cfg.student_epochs = min(cfg.student_epochs, 1.0)
    cfg.finetune_epochs = min(cfg.finetune_epochs, 0.1)
    cfg.latency = LatencyPlan(warmup_n=3, warmup_s=0.05, min_n=20, min_s=0.1, max_s=2.0)
    cfg.retime_budget_s = 0.0  # one shared process per backend: nothing to re-time
    cfg.n_boot = min(cfg.n_boot, 200)
    return cfg
