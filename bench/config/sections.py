"""The run's configuration, in sections: data, training (teacher and student), methods,
measurement, output; plus what spans them (seed, device, preset, profile).

The sections are plain dataclasses with the defaults; `bench.config.settings` layers defaults <
preset < profile (--quick, --rigorous) < command line into one RunConfig and checks it,
before anything is trained. Everything downstream reads the finished RunConfig.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import psutil

from bench.child.timed_loop import LatencyPlan
from bench.data import DataConfig  # the data section lives beside its loaders


def physical_cores() -> int:
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def default_threads() -> int:
    """Measurement threads: the physical cores minus one, at least 1.

    The harness, the OS and the energy tracker keep a core. On this 2-core VM batch-1
    latency at 2 threads was bimodal from process to process (DenseNet-121 TorchScript
    17-19 ms; a pruned one 5.5 ms in one pass, 15.4 ms in the next), at 1 thread steady
    (14.5-14.9 ms over passes; STACK-NOTES).
    """
    return max(1, physical_cores() - 1)


@dataclass
class TrainingConfig:
    teacher: str = "densenet121"
    teacher_checkpoint: str | None = None
    teachers: list[str] = field(default_factory=list)  # --teachers: an averaged ensemble
    pretrained: bool = False
    student: str = "mobilenet_v2"
    #: the teacher's own budget; it never trains fewer steps than the students'
    #: (bench.modelling.teacher.teacher_plan)
    teacher_epochs: float = 2.0
    student_epochs: float = 9.0  # of the labelled images, for kd and the student alike
    #: the most epochs a step of the run trains the student architecture for (a
    #: `kd:epochs=N` above student_epochs), which the teacher's budget never falls below;
    #: set from --methods by bench.config.settings.build, from the space by `bench
    #: search` (whose finalists' run keeps it: the same teacher); 0: none above it
    student_epochs_max: float = 0.0
    #: --train-precision: `auto` trains in the precision rule's (bf16 autocast where the
    #: CPU multiplies bf16 natively and the architecture gains: bench.modelling.precision),
    #: `fp32` everywhere (what a CPU without bf16 trains in: comparable across machines)
    precision: str = "auto"
    #: pruning's fine-tune: the most it trains (it stops once validation AUC stops improving)
    finetune_epochs: float = 4.0
    #: training: every core here; with --executor ray 0 until the cluster is joined, then
    #: the fewest CPUs of a node that trains (bench.cluster.executor)
    train_threads: int = field(default_factory=lambda: physical_cores())


@dataclass
class MethodsConfig:
    spec: str = "kd,prune,quant"  # --methods: families, chains, name:key=value


@dataclass
class MeasurementConfig:
    backends: list[str] = field(default_factory=lambda: ["torch"])
    precisions: list[str] = field(default_factory=list)  # extra float rows: bf16, fp16
    threads: int = field(default_factory=default_threads)  # see default_threads
    repeats: int = 1  # fresh measuring processes per row (the teacher gets at least 2)
    #: seconds of further fresh processes for rows whose latency is not yet stable (and
    #: their backend's teacher), after the first pass; 0 turns the adaptive pass off
    retime_budget_s: float = 30.0
    max_repeats: int = 5  # the adaptive pass stops adding processes to a row here
    latency: LatencyPlan = field(default_factory=LatencyPlan)
    shared_process: bool = False  # --quick: one measuring process per backend
    margin: float = 0.02  # non-inferiority margin on AUC
    operating_point: str = "0.5"
    n_boot: int = 2000


@dataclass
class OutputConfig:
    out: str | None = None  # the run directory (default reports/runs/<UTC time>)
    use_cache: bool = True  # teachers, generated data and the machine probe


@dataclass
class ExecutionConfig:
    """Where the work runs: this machine (the default; Ray is never imported) or a Ray
    cluster (bench.cluster). Left out of the run directory's identity check: a killed run
    continues on another executor, and rows measured elsewhere are measured again."""

    executor: str = "local"  # local, or ray
    ray_address: str | None = None  # None: $RAY_ADDRESS, else a local Ray instance
    measure_on: str | None = None  # a custom Ray resource: measure only on nodes holding it
    #: join (or start) a Ray cluster without token authentication: loud, for throwaway ones
    allow_unauthenticated: bool = False


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    methods: MethodsConfig = field(default_factory=MethodsConfig)
    measurement: MeasurementConfig = field(default_factory=MeasurementConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    seed: int = 0
    seeds: list[int] = field(default_factory=list)  # --seeds: the whole pipeline per seed
    device: str = "cpu"  # where training and the backends run
    preset: str | None = None
    profile: str | None = None  # "quick" or "rigorous"

    @property
    def quick(self) -> bool:
        return self.profile == "quick"

    @property
    def rigorous(self) -> bool:
        return self.profile == "rigorous"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS = ("data", "training", "methods", "measurement", "output", "execution")


def flat_config(config: dict | None) -> dict:
    """A manifest's `config` as one flat dict, whichever layout wrote it: sections (schema
    4) or the flat dataclass of schema 2 and 3. `methods` is the --methods text in both."""
    config = dict(config or {})
    flat = {k: v for k, v in config.items() if k not in SECTIONS or not isinstance(v, dict)}
    for section in SECTIONS:
        part = config.get(section)
        if isinstance(part, dict):
            flat.update({("methods" if section == "methods" and k == "spec" else k): v
                         for k, v in part.items()})
    if "profile" in flat:
        flat.setdefault("quick", flat["profile"] == "quick")
        flat.setdefault("rigorous", flat["profile"] == "rigorous")
    return flat
