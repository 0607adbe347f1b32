"""Where a run's configuration comes from, and whether it makes sense, each in one place.

`build(args)` layers, lowest first: the defaults (the dataclasses of bench.config.sections, and
the installed backends), the preset (`--preset`), the profile (`--quick` or
`--rigorous`), the command line. Each layer is a mapping of dotted keys
(`"data.image_size"`, `"measurement.latency"`, `"seed"`) applied over the ones below, so
which value wins is the order of the layers and nothing else. A profile is computed from
the configuration below it (quick keeps at most one epoch of a preset's budget and only
its first seed; rigorous keeps at least 5 processes) and the command line still beats it.

`validate(cfg)` runs every check of bad input (bench.config.checks, and the data
section's own), each a one-line ValueError, in one order, before anything is trained: a
typo must cost seconds, not the minutes of a teacher.
The layering itself checks nothing but its keys, so a preset or a profile can never set
a value that the checks did not see.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

import methods
from bench import backends
from bench.config import checks, presets
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
             "uncertainty": "data.uncertainty",
             "augment": "data.augment", "class_weights": "data.class_weights",
             "frontal_only": "data.frontal_only",
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
             "train_precision": "training.precision",
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
    budget = student_budget(cfg)
    if budget > cfg.training.student_epochs:  # else 0: student_epochs, the dataclass default
        cfg.training.student_epochs_max = max(cfg.training.student_epochs_max, budget)
    return cfg


def student_budget(cfg: RunConfig) -> float:
    """The most epochs a step of --methods (or a baseline) trains the student architecture
    for (methods.student_budget), the teacher's floor; 0 for a --methods that does not
    parse (validate says what is wrong with it, in its order)."""
    try:
        chains = methods.expand(cfg.methods.spec)
    except ValueError:
        return 0.0
    return methods.student_budget(chains, cfg.training.student_epochs)


# ---------------------------------------------------------------------------- validation

def validate(cfg: RunConfig) -> None:
    """Raise a one-line ValueError for the first bad input; None when the run may start.

    Cheap checks come first; the costliest (torchvision's model list, the data paths)
    last. Nothing is read from a dataset and nothing is trained.
    """
    checks.profile(cfg)
    checks.ranges(cfg)
    checks.seeds(cfg)
    checks.output(cfg)
    from bench import data

    data.check(cfg.data)  # the data section: spec, paths, task, labels, options
    checks.measurement(cfg)
    checks.execution(cfg)
    checks.chains(cfg)
    checks.models(cfg)
