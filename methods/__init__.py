"""Compression methods, one module per family, behind one registry (bench.registry).

Built-in modules are imported on first use; third-party methods come from the
`medbench.methods` entry point group. A method registers itself with `@register`.

`expand("kd,prune,kd+quant.static:calibration_size=128")` turns the command line into
chains of Steps: family names expand to their members (`prune` -> magnitude and
structured), `+` chains steps left to right, `name:key=value,key=value` sets parameters.
"""

from __future__ import annotations

import itertools
import re

from bench.registry import Registry
from methods.base import Artifact, Context, Method, Param, Step

METHODS: Registry = Registry("method", builtins=(
    "methods.student", "methods.kd", "methods.prune", "methods.quant", "methods.quant.qat"))
register = METHODS.register

__all__ = ["Artifact", "Context", "Method", "Param", "Step", "METHODS", "register", "get",
           "all_methods", "baselines", "families", "expand", "chain_name", "student_budget"]


def all_methods() -> dict[str, type[Method]]:
    return dict(sorted(METHODS.items().items()))


def get(name: str) -> type[Method]:
    methods = all_methods()
    if name not in methods:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(methods)} "
                         f"(families: {', '.join(families())})")
    return methods[name]


def baselines() -> list[tuple[Step, ...]]:
    """The chains every run measures besides --methods (the `student`): methods declared
    `baseline`, with their default parameters."""
    return [(Step(name, tuple((p.name, p.default) for p in cls.params)),)
            for name, cls in all_methods().items() if cls.baseline]


def families() -> dict[str, list[str]]:
    fam: dict[str, list[str]] = {}
    for name, cls in all_methods().items():
        if "." in name and cls.in_family:
            fam.setdefault(name.split(".")[0], []).append(name)
    return fam


_KEY_VALUE = re.compile(r"^[A-Za-z_]\w*=")


def split_items(spec: str) -> list[str]:
    """Split on commas, except those that separate key=value pairs of one method."""
    items: list[str] = []
    for token in spec.split(","):
        token = token.strip()
        if not token:
            continue
        if _KEY_VALUE.match(token) and items:
            items[-1] += "," + token
        else:
            items.append(token)
    return items


def _parse_step(text: str) -> list[Step]:
    """`name:key=value,...` as one Step per member (a family gives several). Every
    problem is a one-line ValueError quoting `text`: a parameter without `=` or a name,
    one given twice, an unknown name, a value its Param refuses."""
    name, _, arg_text = text.partition(":")
    name = name.strip()
    given: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in arg_text.split(","))):
        key, eq, value = pair.partition("=")
        key = key.strip()
        if not eq:
            raise ValueError(f"{text!r}: parameters are written key=value, got {pair!r}")
        if not key:  # `kd:=3`: say so, rather than "kd has no parameter ''"
            raise ValueError(f"{text!r}: parameter {pair!r} has no name (write key=value)")
        if key in given:  # `kd:alpha=1,alpha=2` kept the last one silently
            raise ValueError(f"{text!r}: parameter {key!r} is given twice")
        given[key] = value.strip()
    members = families().get(name, [name])
    steps = []
    for member in members:
        cls = get(member)
        known = {p.name for p in cls.params}
        unknown = set(given) - known
        if unknown and (len(members) == 1 or not set(given) & known):
            cls.param(sorted(unknown)[0])  # raises with the list of known parameters
        values = {p.name: p.default for p in cls.params}
        for key in set(given) & known:
            values[key] = cls.param(key).parse(given[key])
        overrides = tuple(sorted(k for k in set(given) & known if values[k] != cls.param(k).default))
        steps.append(Step(member, tuple(values.items()), overrides))
    return steps


def expand(spec: str) -> list[tuple[Step, ...]]:
    """Every chain a --methods value names, in order, without duplicates."""
    chains: list[tuple[Step, ...]] = []
    for item in split_items(spec):
        options = [_parse_step(part) for part in item.split("+")]
        for chain in itertools.product(*options):
            for step in chain[:-1]:
                if get(step.method).terminal:
                    raise ValueError(f"{item!r}: {step.method} must be the last step of a chain "
                                     f"(an int8 model is not trained further)")
            if chain not in chains:
                chains.append(chain)
    if not chains:
        raise ValueError("--methods is empty")
    return chains


def chain_name(steps: tuple[Step, ...]) -> str:
    return "+".join(s.label for s in steps)


def student_budget(chains, run_epochs: float) -> float:
    """The most epochs any step of `chains`, or a baseline, trains a new model of the
    student architecture for (Method.student_epochs): `--student-epochs`, or a
    `kd:epochs=N` above it. The teacher trains at least as many steps."""
    steps = [step for chain in [*baselines(), *chains] for step in chain]
    budgets = [get(s.method).student_epochs(dict(s.params), run_epochs) for s in steps]
    return max([run_epochs, *(b for b in budgets if b is not None)])
