"""The method plugin interface: typed parameters, an Artifact, and one entry point.

A method takes a parent Artifact (the teacher, or the output of the previous step of a
chain) and returns a new Artifact. It never mutates the parent: it works on a clone.
"""

from __future__ import annotations

import math
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
    """A typed method parameter, shown by `bench list` and parsed from `name:key=value`."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple | None = None

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
                raise ValueError(f"parameter {self.name}: {text!r} is not a bool "
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
        return value


_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


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
    """

    name: str
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
    """Everything a method may use besides its parent: data, the teacher, budgets."""

    task: Task
    train_images: np.ndarray
    train_labels: np.ndarray
    calibration_images: np.ndarray
    teacher: nn.Module
    teacher_logits: torch.Tensor  # teacher's logits on train_images, for offline KD
    student_arch: str
    image_size: int
    student_epochs: float
    finetune_epochs: float
    seed: int = 0
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
    """Base class. Subclasses set name/summary/params and implement `apply`."""

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
    def param(cls, name: str) -> Param:
        for p in cls.params:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in cls.params) or "none"
        raise ValueError(f"{cls.name} has no parameter {name!r} (it takes: {known})")
