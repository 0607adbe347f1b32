"""The checks of bad input `bench.config.settings.validate` runs, in its order, each a
one-line ValueError naming the option: profiles, ranges, seeds, output, measurement,
execution, chains, models.

They live apart from the layering (bench.config.settings) because the two change for
different reasons: a new option's bounds or a runtime's refusal is a check, and where a
value comes from is a layer. settings.validate holds the order (cheap checks first, the
data and the model lists last); each function here checks one section of the finished
RunConfig, so a preset or a profile can never set a value these did not see.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import methods
from bench import backends
from bench.config.profiles import PROFILES, RIGOROUS_REPEATS
from bench.config.sections import RunConfig
from bench.inputs import check_checkpoint_file

#: seeds reach numpy, torch.manual_seed and scikit-learn's random_state (plus small
#: offsets per split): numpy refuses a negative one, scikit-learn one of 2**32 or more,
#: torch one past 2**64, each after minutes of work; this range fits all three with room
#: for the offsets
MAX_SEED = 2**31 - 1
#: where a run's work can go (bench.config.sections.ExecutionConfig)
EXECUTORS = ("local", "ray")
#: thread counts reach torch.set_num_threads (a C int) in every worker; a larger value
#: than any CPU this bench measures on is a typo, caught before the teacher trains
MAX_THREADS = 1024


def profile(cfg: RunConfig) -> None:
    if cfg.profile is None or cfg.profile in PROFILES:
        return
    if set(cfg.profile.split("+")) == {"quick", "rigorous"}:
        raise ValueError("--rigorous and --quick contradict each other: choose one")
    raise ValueError(f"profile {cfg.profile!r}: unknown; choose from {', '.join(PROFILES)}")


def _at_least(flag: str, value, low, high=None) -> None:
    if value < low:
        raise ValueError(f"{flag} {value}: must be at least {low}")
    if high is not None and value > high:
        raise ValueError(f"{flag} {value}: must be at most {high}")


def ranges(cfg: RunConfig) -> None:
    """Counts and budgets. argparse's float() takes `nan` and `inf` (and `1e999` is inf):
    NaN passes every `< 0` test and an infinite epoch count never ends, so float options
    must be finite as well as in range."""
    m, t = cfg.measurement, cfg.training
    _at_least("--threads", m.threads, 1, MAX_THREADS)
    _at_least("--train-threads", t.train_threads, 0 if cfg.execution.executor == "ray" else 1,
              MAX_THREADS)  # 0 with ray: from the cluster
    _at_least("--repeats", m.repeats, RIGOROUS_REPEATS if cfg.rigorous else 1)
    _at_least("measurement.max_repeats", m.max_repeats, 1)
    for flag, value in (("--teacher-epochs", t.teacher_epochs),
                        ("--student-epochs", t.student_epochs),
                        ("--finetune-epochs", t.finetune_epochs)):
        if not math.isfinite(value):
            raise ValueError(f"{flag} {value}: must be a finite number")
        if value < 0:
            raise ValueError(f"{flag} {value}: must be 0 or more")
    if m.n_boot < 0:
        raise ValueError(f"--bootstrap {m.n_boot}: must be 0 (no intervals) or more")
    if not 0 <= m.margin < 1:  # NaN fails this too
        raise ValueError(f"--margin {m.margin}: must be in [0, 1)")
    if not math.isfinite(m.retime_budget_s):
        raise ValueError(f"--retime-budget {m.retime_budget_s}: must be a finite number of "
                         "seconds")
    if m.retime_budget_s < 0:
        raise ValueError(f"--retime-budget {m.retime_budget_s}: must be 0 (off) or more")


def seeds(cfg: RunConfig) -> None:
    text = ",".join(map(str, cfg.seeds))
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in cfg.seeds):
        raise ValueError(f"--seeds {text!r}: expected comma-separated integers")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise ValueError(f"--seeds {text!r}: a seed is repeated")
    for flag, seed in [("--seed", cfg.seed), *(("--seeds", s) for s in cfg.seeds)]:
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"{flag} {seed}: must be in [0, {MAX_SEED}], a seed numpy, torch "
                             "and scikit-learn all accept")


def output(cfg: RunConfig) -> None:
    """--out names a folder, new or existing: a file there (or above it) would end in the
    run directory's mkdir, a traceback after the data was loaded."""
    if not cfg.output.out:
        return
    out = Path(cfg.output.out).expanduser()
    for path in (out, *out.parents):
        if path.exists():
            if not path.is_dir():
                raise ValueError(f"--out {cfg.output.out}: {path} is a file, not a folder")
            return


def measurement(cfg: RunConfig) -> None:
    from bench.stats.threshold import parse_operating_point

    m = cfg.measurement
    parse_operating_point(m.operating_point)
    known, installed = backends.names(), backends.installed()
    if not m.backends:
        raise ValueError("--backends: no backend is installed (pip install torch)")
    for b in m.backends:
        if b not in known:
            raise ValueError(f"--backends: unknown backend {b!r}; known: {', '.join(known)}")
        if b not in installed:
            raise ValueError(f"--backends: backend {b!r} is not installed here; installed: "
                             f"{', '.join(installed) or 'none'}")
    for p in m.precisions:
        if p not in backends.LOWER_PRECISIONS:
            raise ValueError(f"--precision: unknown precision {p!r}; choose from "
                             f"{', '.join(backends.LOWER_PRECISIONS)} (fp32 rows are always there)")
    if cfg.device == "cuda" and cfg.execution.executor == "local":  # a cluster is asked later
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda: torch sees no CUDA device on this machine")


def execution(cfg: RunConfig) -> None:
    e = cfg.execution
    if e.executor not in EXECUTORS:
        raise ValueError(f"--executor: unknown executor {e.executor!r}; choose from "
                         f"{', '.join(EXECUTORS)}")
    if e.executor == "local":
        for flag, value in (("--ray-address", e.ray_address), ("--measure-on", e.measure_on),
                            ("--allow-unauthenticated-ray", e.allow_unauthenticated or None)):
            if value is not None:
                raise ValueError(f"{flag} needs --executor ray")
        return
    if importlib.util.find_spec("ray") is None:
        raise ValueError("--executor ray: Ray is not installed here; install the cluster extra: "
                         "pip install -e '.[cluster]'")
    if e.measure_on is not None and (not e.measure_on.strip() or "," in e.measure_on
                                     or e.measure_on != e.measure_on.strip()):
        raise ValueError(f"--measure-on: {e.measure_on!r} is not a resource name (one name, as "
                         "given to `ray start --resources`)")


def chains(cfg: RunConfig) -> None:
    """--methods: every method known (plugins included), every parameter one it declares,
    of its type and within its declared bounds or choices (methods.base.Param), every
    chain with its int8 step last: `lowrank:rank_ratio=1.5` exits 2 here, not after the
    teacher trained."""
    methods.expand(cfg.methods.spec)


def models(cfg: RunConfig) -> None:
    from bench.modelling.architectures import check_architecture

    t = cfg.training
    if t.teachers and t.teacher_checkpoint:
        raise ValueError("--teachers and --teacher-checkpoint: choose one")
    check_architecture(t.teacher, "--teacher")
    for arch in t.teachers:
        check_architecture(arch, "--teachers")
    check_architecture(t.student, "--student")
    if t.teacher_checkpoint:
        try:
            found = Path(t.teacher_checkpoint).is_file()
        except OSError as exc:  # a name too long for the OS, a folder we may not read
            raise ValueError(f"{t.teacher_checkpoint!r}: teacher checkpoint cannot be read "
                             f"({exc.strerror or exc})") from None
        if not found:
            raise ValueError(f"{t.teacher_checkpoint}: teacher checkpoint not found")
        check_checkpoint_file(t.teacher_checkpoint)  # empty, cut, an LFS pointer: now
