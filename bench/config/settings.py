"""Where a run's configuration comes from, and whether it makes sense, each in one place.

`build(args)` layers, lowest first: the defaults (the dataclasses of bench.config.sections, and
the installed backends), the preset (`--preset`), the profile (`--quick` or
`--rigorous`), the command line. Each layer is a mapping of dotted keys
(`"data.image_size"`, `"measurement.latency"`, `"seed"`) applied over the ones below, so
which value wins is the order of the layers and nothing else. A profile is computed from
the configuration below it (quick keeps at most one epoch of a preset's budget and only
its first seed; rigorous keeps at least 5 processes) and the command line still beats it.

`validate(cfg)` holds every check of bad input, each a one-line ValueError, and runs
before anything is trained: a typo must cost seconds, not the minutes of a teacher.
The layering itself checks nothing but its keys, so a preset or a profile can never set
a value that the checks did not see.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.config import presets
from bench.config.profiles import (  # noqa: F401 - the profiles' figures, read through here
    PROFILES,
    QUICK_FINETUNE_EPOCHS,
    QUICK_IMAGE_SIZE,
    QUICK_LATENCY,
    QUICK_N_BOOT,
    QUICK_SIZES,
    QUICK_STUDENT_EPOCHS,
    QUICK_TEACHER_EPOCHS,
    RIGOROUS_PLAN,
    RIGOROUS_REPEATS,
    RIGOROUS_RETIME_S,
)
from bench.config.sections import SECTIONS, RunConfig
from bench.data import is_synthetic

Layer = Mapping[str, Any]

#: a synthetic task's class count when no layer gives --num-classes
DEFAULT_CLASSES = {"binary": 2, "multiclass": 4, "multilabel": 5}

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


def _keys() -> frozenset[str]:
    cfg = RunConfig()
    top = {f.name for f in dataclasses.fields(cfg)} - set(SECTIONS) - {"preset", "profile"}
    nested = {f"{s}.{f.name}" for s in SECTIONS for f in dataclasses.fields(getattr(cfg, s))}
    return frozenset(top | nested)


#: every key a layer may set: `seed`, `seeds`, `device` and `section.field`
KEYS = _keys()


def apply(cfg: RunConfig, layer: Layer, source: str = "setting") -> RunConfig:
    """Set each dotted key of `layer` on `cfg` (in place; values are copied, so a preset's
    lists never become the run's). An unknown key is a ValueError naming `source`."""
    for key, value in layer.items():
        if key not in KEYS:
            raise ValueError(f"{source}: unknown setting {key!r}; known: {', '.join(sorted(KEYS))}")
        section, _, name = key.rpartition(".")
        setattr(getattr(cfg, section) if section else cfg, name, copy.deepcopy(value))
    return cfg


def _split(text: str) -> list[str]:
    return [x.strip() for x in text.split(",")]


def _backends(names: list[str]) -> list[str]:
    """`all` stands for every installed backend, edge runtimes included."""
    if "all" not in names:
        return names
    from bench import backends

    return list(dict.fromkeys(n for name in names
                              for n in (backends.installed() if name == "all" else [name])))


def _int_or_text(token: str) -> int | str:
    try:
        return int(token)
    except ValueError:
        return token  # validate says what is wrong with it


def command_line(args) -> dict[str, Any]:
    """The options the user gave (None and False mean not given) as a layer."""
    given = {k: v for k, v in vars(args).items() if v is not None and v is not False}
    plain = {"methods": "methods.spec", "dataset": "data.dataset", "data_root": "data.data_root",
             "uncertainty": "data.uncertainty", "frontal_only": "data.frontal_only",
             "task": "data.task", "num_classes": "data.num_classes",
             "image_size": "data.image_size", "teacher": "training.teacher",
             "teacher_checkpoint": "training.teacher_checkpoint",
             "pretrained": "training.pretrained", "student": "training.student",
             "teacher_epochs": "training.teacher_epochs",
             "student_epochs": "training.student_epochs",
             "finetune_epochs": "training.finetune_epochs",
             "train_threads": "training.train_threads", "threads": "measurement.threads",
             "repeats": "measurement.repeats", "retime_budget": "measurement.retime_budget_s",
             "margin": "measurement.margin", "operating_point": "measurement.operating_point",
             "bootstrap": "measurement.n_boot", "out": "output.out", "device": "device",
             "executor": "execution.executor", "ray_address": "execution.ray_address",
             "measure_on": "execution.measure_on",
             "allow_unauthenticated_ray": "execution.allow_unauthenticated"}
    layer = {key: given[opt] for opt, key in plain.items() if opt in given}
    if "labels" in given:
        layer["data.labels"] = _split(given["labels"])
    if given.get("teachers"):
        layer["training.teachers"] = [a for a in given["teachers"].split(",") if a]
    if given.get("backends"):
        layer["measurement.backends"] = _backends(_split(given["backends"]))
    if given.get("precision"):
        layer["measurement.precisions"] = [p for p in _split(given["precision"]) if p != "fp32"]
    if given.get("no_cache"):
        layer["output.use_cache"] = False
    if "seed" in given:  # one seed asked for: a preset's seeds give way
        layer.update(seed=given["seed"], seeds=[])
    if given.get("seeds"):
        layer["seeds"] = [_int_or_text(s) for s in _split(given["seeds"])]
    return layer


def build(args) -> RunConfig:
    """The run's configuration: defaults < preset < profile < command line.

    `args` is the `run` subcommand's namespace (options not given are None or False); it
    is read, never changed. Nothing is checked here but the preset's name and the keys;
    call `validate` next.
    """
    from bench import backends

    cfg = RunConfig()
    apply(cfg, {"measurement.backends": backends.defaults()}, "defaults")
    cli = command_line(args)
    set_keys: set[str] = set()
    if args.preset is not None:  # `--preset ''` is an unknown preset, not no preset
        preset = presets.get(args.preset)
        dataset = cli.get("data.dataset", preset.settings.get("data.dataset", cfg.data.dataset))
        layer = preset.layer(synthetic=is_synthetic(dataset))
        apply(cfg, layer, f"preset {preset.name!r}")
        set_keys.update(layer)
        cfg.preset = preset.name
    profiles = [p for p in PROFILES if getattr(args, p, False)]
    if len(profiles) == 1:
        layer = PROFILES[profiles[0]](cfg)
        apply(cfg, layer, f"--{profiles[0]}")
        set_keys.update(layer)
    cfg.profile = "+".join(profiles) or None  # both: validate refuses it
    apply(cfg, cli, "command line")
    set_keys.update(cli)
    if "data.num_classes" not in set_keys:  # a default that depends on the task
        cfg.data.num_classes = DEFAULT_CLASSES.get(cfg.data.task, cfg.data.num_classes)
    if cfg.execution.executor == "ray" and "training.train_threads" not in set_keys:
        cfg.training.train_threads = 0  # the cluster's nodes decide, once joined
    return cfg


# ---------------------------------------------------------------------------- validation

def validate(cfg: RunConfig) -> None:
    """Raise a one-line ValueError for the first bad input; None when the run may start.

    Cheap checks come first; the costliest (torchvision's model list, the data paths)
    last. Nothing is read from a dataset and nothing is trained.
    """
    _check_profile(cfg)
    _check_ranges(cfg)
    _check_seeds(cfg)
    from bench import data

    data.check(cfg.data)  # the data section: spec, paths, task, labels, options
    _check_measurement(cfg)
    _check_execution(cfg)
    import methods

    methods.expand(cfg.methods.spec)
    _check_models(cfg)


def _check_profile(cfg: RunConfig) -> None:
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


def _check_ranges(cfg: RunConfig) -> None:
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


def _check_seeds(cfg: RunConfig) -> None:
    text = ",".join(map(str, cfg.seeds))
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in cfg.seeds):
        raise ValueError(f"--seeds {text!r}: expected comma-separated integers")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise ValueError(f"--seeds {text!r}: a seed is repeated")
    for flag, seed in [("--seed", cfg.seed), *(("--seeds", s) for s in cfg.seeds)]:
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"{flag} {seed}: must be in [0, {MAX_SEED}], a seed numpy, torch "
                             "and scikit-learn all accept")


def _check_measurement(cfg: RunConfig) -> None:
    from bench import backends
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


def _check_execution(cfg: RunConfig) -> None:
    import importlib.util

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


def _check_models(cfg: RunConfig) -> None:
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
        from bench.inputs import check_checkpoint_file

        check_checkpoint_file(t.teacher_checkpoint)  # empty, cut, an LFS pointer: now
