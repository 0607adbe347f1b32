"""The method plugin interface: typed parameters, an Artifact, and one entry point.

A method takes a parent Artifact (the teacher, or the output of the previous step of a
chain) and returns a new Artifact. It never mutates the parent: it works on a clone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from bench.backends import Realisation
    from bench.task_kinds import Task


@dataclass(frozen=True)
class Param:
    """A typed method parameter, shown by `bench list` and parsed from `name:key=value`.

    `bounds` ("(0, 1]", "[1, 100]", "(0, inf)") and `choices` declare the values it takes,
    so a bad one exits 2 with the rest of the configuration, before anything trains;
    `bench search` takes a range's missing ends from `bounds`."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple | None = None
    bounds: str | None = None

    def __post_init__(self):
        if self.bounds is not None:
            interval(self.bounds)  # a malformed one fails where the method is defined

    @property
    def domain(self) -> str:
        """The declared values, as `bench list` shows them."""
        if self.choices is not None:
            return "|".join(map(str, self.choices))
        if self.type is bool:
            return "true|false"
        return f"in {self.bounds}" if self.bounds else ""

    def closed_end(self, which: int) -> float | None:
        """The declared low (0) or high (1) end where it is finite and included, else None:
        what `bench search` may draw up to."""
        if self.bounds is None:
            return None
        low, high, low_in, high_in = interval(self.bounds)
        end, included = (low, low_in) if which == 0 else (high, high_in)
        return self.type(end) if included else None

    def parse(self, text: str):
        """The value of `key=text`, or a one-line ValueError.

        float() takes `nan`, `inf` and `1e999` (inf) without complaint; no method means
        anything by them (a NaN ratio or temperature fails minutes later, inside
        training), so a float must be finite. A bool is one of the words below, not
        "anything else is false".
        """
        if self.type is bool:
            word = text.strip().lower()
            if word not in _TRUE + _FALSE:
                raise ValueError(f"parameter {self.name}: {_short(text)} is not a bool "
                                 f"({'/'.join(_TRUE)} or {'/'.join(_FALSE)})")
            value = word in _TRUE
        else:
            try:
                value = self.type(text)
            except ValueError:  # int() of 5000 digits is a ValueError too
                raise ValueError(f"parameter {self.name}: {_short(text)} is not "
                                 f"a{'n' if self.type is int else ''} {self.type.__name__}") from None
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"parameter {self.name}: {_short(text)} is not a finite number")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"parameter {self.name}: {value!r} is not one of {self.choices}")
        if self.bounds is not None and not within(value, self.bounds):
            raise ValueError(f"parameter {self.name}: {value!r} is not in {self.bounds}")
        return value


_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")
_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^\])\s]+)\s*([\])])\s*$")


def interval(text: str) -> tuple[float, float, bool, bool]:
    """(low, high, low included, high included) of "[low, high)" and the like, or a
    ValueError; an infinite end is written inf and is never included."""
    match = _INTERVAL.match(text)
    try:
        low, high = float(match[2]), float(match[3])
    except (TypeError, ValueError):
        raise ValueError(f"bounds {text!r}: write an interval such as (0, 1] or [1, inf)") from None
    low_in, high_in = match[1] == "[", match[4] == "]"
    if math.isnan(low) or math.isnan(high) or not low < high or (low_in and math.isinf(low)) \
            or (high_in and math.isinf(high)):
        raise ValueError(f"bounds {text!r}: not an interval from low to high (inf is never "
                         "included)")
    return low, high, low_in, high_in


def within(value, bounds: str) -> bool:
    low, high, low_in, high_in = interval(bounds)
    return (low <= value if low_in else low < value) and (value <= high if high_in else value < high)


def _short(text: str, limit: int = 60) -> str:
    """repr(text), cut to `limit` characters: an error quotes a 5000-digit value in full
    otherwise."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 5] + "...'" + f" ({len(text)} characters)"


@dataclass(frozen=True)
class Step:
    """One step of a chain: a method name and its fully resolved parameters."""

    method: str
    params: tuple[tuple[str, Any], ...]
    overrides: tuple[str, ...] = ()  # which params the user set (shown in the model name)

    @property
    def label(self) -> str:
        given = [f"{k}={v}" for k, v in self.params if k in self.overrides]
        return self.method + (":" + ",".join(given) if given else "")


@dataclass
class Artifact:
    """What a method produced, with the provenance needed to reproduce it.

    `module` runs on PyTorch (float, pruned or int8); `float_module` is the fp32 model it
    derives from, used for MACs and by backends that quantize natively from fp32.
    The builder (bench.pipeline.artifacts.apply_one) overwrites `name`, `steps` and
    `train_steps`; the method sets the rest, `seconds` included (its own plus its parent's).
    """

    name: str
    #: the architecture the model derives from: the parent's for a model changed in place
    #: (pruned, factorised), the new one's for a model built afresh (kd's student); rows of
    #: the student's architecture are compared with the student baseline
    arch: str
    module: nn.Module
    float_module: nn.Module
    steps: tuple[Step, ...] = ()
    precision: str = "fp32"
    #: where the method means something different per runtime (int8): backend name -> a
    #: bench.backends.Realisation (artifact, float_graph, env, out_dir) -> Realised, or a
    #: string saying why there is none (bench.backends.deploy). Empty: the model is one
    #: float graph that every backend deploys as it is.
    realisations: Mapping[str, Realisation | str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    seconds: float = 0.0  # wall time spent producing it (this step and its parents)
    #: optimiser steps spent producing it from the teacher (this step and its parents);
    #: set by the builder (bench.pipeline.artifacts), which counts them around each step
    train_steps: int = 0

    @property
    def method(self) -> str:
        return self.steps[-1].method if self.steps else "baseline"

    def provenance(self) -> dict:
        return {
            "model": self.name,
            "arch": self.arch,
            "steps": [{"method": s.method, "params": dict(s.params)} for s in self.steps],
            "precision": self.precision,
            "realised_on": list(self.realisations),
            "notes": list(self.notes),
            "seconds": round(self.seconds, 2),
            "train_steps": self.train_steps,
        }


@dataclass
class Context:
    """Everything a method may use besides its parent: data, the teacher, budgets. Read
    it, never change it: one Context serves every step of a run."""

    task: Task  # binary, multiclass or multilabel: losses, probabilities (bench.task_kinds)
    train_images: np.ndarray  # (N, C, S, S) float32: what every step trains on
    train_labels: np.ndarray
    calibration_images: np.ndarray  # a subset of train_images, for int8 calibration
    teacher: nn.Module  # the run's teacher (never modify it; clone it)
    teacher_logits: torch.Tensor  # teacher's logits on train_images, for offline KD
    student_arch: str  # --student: the architecture a method building a new model uses
    image_size: int  # S
    student_epochs: float  # --student-epochs: the budget of a model trained from scratch
    finetune_epochs: float  # --finetune-epochs: the budget of a fine-tune (methods.finetune)
    seed: int = 0
    #: the chain name of the step being applied (`kd+lowrank:rank_ratio=0.25`), for its
    #: progress lines: set by the builder for each step; empty when applied by hand
    chain: str = ""
    #: --teachers: each member's logits on train_images; KD averages their soft targets
    teacher_member_logits: tuple | None = None
    #: unlabelled images the teacher labels for distillation (DataBundle.transfer), with
    #: the teacher's logits on them (and each member's, for --teachers)
    transfer_images: np.ndarray | None = None
    transfer_logits: torch.Tensor | None = None
    transfer_member_logits: tuple | None = None
    #: the validation split, for methods that choose on held-out data (never the test split)
    val_images: np.ndarray | None = None
    val_labels: np.ndarray | None = None
    #: the augmentation policy every training follows (bench.data.augmentation.POLICIES:
    #: the dataset's, or --augment's); pass it to the training rule's settings
    augment: str = "none"

    def soft_targets(self, temperature: float) -> torch.Tensor:
        """Teacher logits for KD at `temperature` (an ensemble's averaged soft targets)."""
        if self.teacher_member_logits:
            return self.task.ensemble_soft_logits(list(self.teacher_member_logits), temperature)
        return self.teacher_logits

    def transfer_soft_targets(self, temperature: float) -> torch.Tensor | None:
        """The same on the unlabelled transfer images (None where there are none)."""
        if self.transfer_images is None:
            return None
        if self.transfer_member_logits:
            return self.task.ensemble_soft_logits(list(self.transfer_member_logits), temperature)
        return self.transfer_logits


class Method:
    """Base class. Subclasses set name/summary/params and implement `apply` (and
    `restore` where the default cannot rebuild their model); the whole contract is in
    docs/architecture.md, "Adding things"."""

    name: ClassVar[str]
    summary: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    #: True for steps after which nothing can follow (int8 models are not re-trained).
    terminal: ClassVar[bool] = False
    #: True for a baseline every run measures whatever --methods says (the `student`);
    #: its rows' `method` column says "baseline"
    baseline: ClassVar[bool] = False
    #: False keeps a method out of its family name's expansion (`quant` is dynamic and
    #: static int8; quant.qat trains, so it is asked for by name): the default run's budget
    in_family: ClassVar[bool] = True
    #: False where the artifact cannot be pickled to another process (bench.cluster then
    #: applies the step in the bench process, on its parent sent back from the cluster)
    travels: ClassVar[bool] = True

    def apply(self, parent: Artifact, ctx: Context, **params) -> Artifact:
        raise NotImplementedError

    @classmethod
    def student_epochs(cls, params: Mapping[str, Any], run_epochs: float) -> float | None:
        """The epochs this step trains a new model of the student architecture for, with
        `params` (`run_epochs`: the run's --student-epochs); None where it trains none.
        The teacher never trains fewer steps than the most of these
        (bench.modelling.teacher.teacher_plan)."""
        return None

    def restore(self, parent: Artifact, ctx: Context, state: dict, **params) -> nn.Module:
        """The model `apply` made, for a resumed run: from its weights (`state`, read
        weights-only, so nothing from the run directory is executed), the parent it was
        made from (itself restored first) and this step's parameters. By default the
        parent's model with each Conv2d, BatchNorm2d and Linear resized to the saved
        shapes (what pruning changes); a method that builds another model (kd) or
        changes its layers' kinds or names (a factorisation) overrides it."""
        from bench.modelling.architectures import clone
        from bench.modelling.resize import load_resized

        return load_resized(clone(parent.module), state)

    @classmethod
    def param(cls, name: str) -> Param:
        for p in cls.params:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in cls.params) or "none"
        raise ValueError(f"{cls.name} has no parameter {name!r} (it takes: {known})")
