"""The search space: `--methods` syntax where a parameter may be a range or a choice.

    kd:temperature=2|4|8,alpha=0.3..0.9/0.1+prune.structured:ratio=0.1..0.8/0.05

Each item (comma-separated, as in `--methods`) is one chain template; a parameter is
a value (fixed), `lo..hi` (a range; `lo..hi/step` samples on a grid; an end left out,
`alpha=0.3..` or `alpha=..`, is the parameter's declared one), or `a|b|c` (a choice).
Values are parsed and checked by the method's own `Param`, so a range of a parameter
the method does not have, or an end its type or declared bounds refuse, is a one-line
error before anything is trained. Optuna samples the template first (`chain`), then that
template's parameters, named `c<i>.<method>.<param>` (a define-by-run conditional
space). Grids and choices make repeated prefixes likely, and a chain prefix is built
once per search (bench.search.trials).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import methods
from methods import Step, split_items

#: the default space: distillation's two knobs, structured pruning's ratio, the static
#: quantizer's calibration size and weight granularity, alone and chained as the
#: default run chains them. The kd choices are discrete so a kd student trained for one
#: trial is reused by the next trial that draws the same settings. A pruned student gets
#: a choice of fine-tuning: with the run's 0.2 epochs, the distilled MobileNetV2 pruned at
#: ratio 0.5 fell to validation AUC 0.47 (teacher 0.89) in a default search here.
DEFAULT_SPACE = (
    "kd:temperature=2|4|8,alpha=0.5|0.7|0.9,"
    "kd:temperature=2|4|8,alpha=0.5|0.7|0.9+prune.structured:ratio=0.2..0.8/0.05,"
    "finetune_epochs=0.2|1|3,"
    "kd:temperature=2|4|8,alpha=0.5|0.7|0.9+quant.static:calibration_size=32|64|128,"
    "per_channel=true|false,"
    "kd:temperature=2|4|8,alpha=0.5|0.7|0.9+prune.structured:ratio=0.2..0.8/0.05,"
    "finetune_epochs=0.2|1|3+quant.static:calibration_size=32|64|128,per_channel=true|false,"
    "prune.structured:ratio=0.2..0.8/0.05+quant.static:calibration_size=32|64|128,"
    "per_channel=true|false"
)

_RANGE = re.compile(r"^\s*(?P<lo>[^.|/]*(?:\.\d+)?)\s*\.\.\s*(?P<hi>[^|/]*?)\s*(?:/\s*(?P<step>.+?))?\s*$")


@dataclass(frozen=True)
class Range:
    low: float | int
    high: float | int
    step: float | int | None = None

    def suggest(self, trial, name: str, kind: type):
        if kind is int:
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1))
        return round(trial.suggest_float(name, self.low, self.high, step=self.step), 6)


@dataclass(frozen=True)
class Choice:
    values: tuple

    def suggest(self, trial, name: str, kind: type):
        return trial.suggest_categorical(name, list(self.values))


@dataclass(frozen=True)
class StepTemplate:
    method: str
    fixed: tuple[tuple[str, object], ...]
    searched: tuple[tuple[str, Range | Choice], ...]


@dataclass(frozen=True)
class ChainTemplate:
    text: str
    steps: tuple[StepTemplate, ...]

    @property
    def dimensions(self) -> int:
        return sum(len(s.searched) for s in self.steps)


def parse(spec: str) -> list[ChainTemplate]:
    """Every chain template of `spec`, or a one-line ValueError quoting the bad part."""
    templates: list[ChainTemplate] = []
    for item in split_items(spec):
        steps = tuple(_parse_step(part.strip(), item) for part in item.split("+"))
        for step in steps[:-1]:
            if methods.get(step.method).terminal:
                raise ValueError(f"--space {item!r}: {step.method} must be the last step of a "
                                 "chain (an int8 model is not trained further)")
        if any(methods.get(s.method).baseline for s in steps):
            raise ValueError(f"--space {item!r}: the baselines are measured by every search; "
                             "search the methods that compress")
        if item not in [t.text for t in templates]:
            templates.append(ChainTemplate(item, steps))
    if not templates:
        raise ValueError("--space is empty")
    return templates


def _parse_step(text: str, item: str) -> StepTemplate:
    name, _, arg_text = text.partition(":")
    name = name.strip()
    if name in methods.families():
        raise ValueError(f"--space {item!r}: {name!r} is a family; name one of its methods "
                         f"({', '.join(methods.families()[name])})")
    try:
        cls = methods.get(name)
    except ValueError as exc:
        raise ValueError(f"--space {item!r}: {exc}") from None
    fixed, searched = {}, {}
    for pair in filter(None, (p.strip() for p in arg_text.split(","))):
        key, eq, value = (s.strip() for s in pair.partition("="))
        if not eq or not key:
            raise ValueError(f"--space {item!r}: parameters are written key=value, "
                             f"key=lo..hi[/step] or key=a|b, got {pair!r}")
        if key in fixed or key in searched:
            raise ValueError(f"--space {item!r}: parameter {key!r} is given twice")
        try:
            param = cls.param(key)
            dim = _dimension(param, value)
        except ValueError as exc:
            raise ValueError(f"--space {item!r}: {exc}") from None
        if dim is None:
            fixed[key] = param.parse(value)
        else:
            searched[key] = dim
    return StepTemplate(name, tuple(fixed.items()), tuple(searched.items()))


def _dimension(param, value: str) -> Range | Choice | None:
    if "|" in value:
        options = tuple(param.parse(v.strip()) for v in value.split("|"))
        if len(set(options)) < len(options):
            raise ValueError(f"parameter {param.name}: {value!r} repeats a choice")
        return Choice(options)
    match = _RANGE.match(value) if ".." in value else None
    if match is None:
        return None
    if param.type not in (int, float):
        raise ValueError(f"parameter {param.name}: a {param.type.__name__} takes choices "
                         f"(a|b), not a range")
    low, high = (_end(param, match[end], which, value) for which, end in enumerate(("lo", "hi")))
    # a step is a width, not a value: its type applies, not the bounds or choices
    step = replace(param, bounds=None, choices=None).parse(match["step"]) if match["step"] else None
    if not low < high:
        raise ValueError(f"parameter {param.name}: range {value!r} must run from low to high")
    if step is not None and not 0 < step <= high - low:
        raise ValueError(f"parameter {param.name}: step {step!r} must be above 0 and at most "
                         f"the range's width")
    return Range(low, high, step)


def _end(param, text: str, which: int, value: str):
    """A range's end as written, or, left out (`ratio=0.2..`, `alpha=..`), the parameter's
    declared end (methods.base.Param.bounds) where that end is finite and included."""
    if text:
        return param.parse(text)
    end = param.closed_end(which)
    if end is None:
        raise ValueError(f"parameter {param.name}: range {value!r} leaves out its "
                         f"{('low', 'high')[which]} end, which "
                         + (f"its bounds {param.bounds} do not include"
                            if param.bounds else "it does not declare"))
    return end


def suggest(trial, templates: list[ChainTemplate]) -> tuple[Step, ...]:
    """The chain Optuna's `trial` draws: its template, then that template's parameters."""
    if len(templates) == 1:
        index = 0
    else:
        text = trial.suggest_categorical("chain", [t.text for t in templates])
        index = [t.text for t in templates].index(text)
    chain = []
    for step in templates[index].steps:
        cls = methods.get(step.method)
        values = {p.name: p.default for p in cls.params}
        values.update(step.fixed)
        for key, dim in step.searched:
            values[key] = dim.suggest(trial, f"c{index}.{step.method}.{key}", cls.param(key).type)
        overrides = tuple(sorted(k for k, v in values.items() if v != cls.param(k).default))
        chain.append(Step(step.method, tuple(values.items()), overrides))
    return tuple(chain)
