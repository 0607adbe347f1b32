"""Accuracy control for static int8 (`quant.static:max_drop=D`), on the validation split.

int8 can cost more AUC than a deployment accepts, and usually a few operations cause most
of it. With `max_drop` set, each realisation quantizes everything, measures the
validation AUC drop against its own float graph, and while the drop exceeds D returns
the most sensitive operations to float. OpenVINO has this in a library (NNCF's
`quantize_with_accuracy_control`), so its adapter calls that; PyTorch FX and ONNX
Runtime have none, so `restore` below writes NNCF's rule once for both:

  1. rank: for each quantized operation (convolutions and linears, and activations,
     adds, multiplies and pools: on MobileNetV3 those cost as much), the int8 model with
     only that one in float, scored by the mean squared error of its logits against the
     float model's on the validation images the all-int8 model gets most wrong (NNCF's
     ranking: the lowest error after reverting one marks the one that costs the most);
  2. return operations to float in that order, re-measuring the AUC on the whole
     validation split after each, until the drop is at most D or a cap (half of them).

Only the validation split is read (images and labels, carried on `Control` from the
method's Context): never anything of the test split.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.stats.auc import auc_roc
from methods.base import Param

OFF = -1.0  # max_drop's default: no accuracy control (plain static int8)
RANKING_SIZE = 64  # validation images the layers are ranked on (the final drop uses all)
MAX_FLOAT_FRACTION = 0.5  # at most this share of the quantizable layers returns to float


def within(drop: float, max_drop: float) -> bool:
    """drop <= max_drop, give or take the rounding of a difference of two AUCs."""
    return drop <= max_drop + 1e-12


def check_drop(value: float) -> float:
    """`value` if it is OFF or an absolute AUC drop in [0, 1), else a one-line ValueError."""
    if value == OFF:
        return value
    if not (isinstance(value, (int, float)) and 0 <= value < 1):  # NaN fails both comparisons
        raise ValueError(f"parameter max_drop: {value!r} is not an AUC drop in [0, 1) "
                         f"(or {OFF:g}: off)")
    return float(value)


@dataclass(frozen=True)
class DropParam(Param):
    """A float Param whose value must also pass check_drop, so `max_drop=1.5` fails when
    --methods is parsed, not after training."""

    def parse(self, text: str):
        return check_drop(super().parse(text))


@dataclass(frozen=True, eq=False)
class Control:
    """What accuracy control needs: the allowed drop and the validation split."""

    max_drop: float
    task: Any  # bench.task_kinds.Task
    images: np.ndarray  # the validation split's standardised images
    labels: np.ndarray

    @classmethod
    def of(cls, ctx, max_drop: float) -> Control | None:
        """None when max_drop is OFF; the validation split of the method's Context else."""
        if check_drop(max_drop) == OFF:
            return None
        if ctx.val_images is None or ctx.val_labels is None or len(ctx.val_images) == 0:
            raise ValueError("quant.static max_drop needs the validation split, and this run "
                             "has none")
        return cls(max_drop, ctx.task, ctx.val_images, ctx.val_labels)

    def inputs(self, images: np.ndarray | None = None) -> np.ndarray:
        """Validation images as the graphs take them: float32, three channels."""
        x = self.images if images is None else images
        x = np.repeat(x, 3, axis=1) if x.shape[1] == 1 else x
        return np.ascontiguousarray(x, dtype=np.float32)

    def auc(self, logits: np.ndarray, index=None) -> float:
        """The row's AUC (bench.stats.auc.auc_roc) of validation logits: of the whole
        split, or of the images at `index`."""
        import torch

        labels = np.asarray(self.labels) if index is None else np.asarray(self.labels)[index]
        probs = self.task.probabilities(torch.as_tensor(np.asarray(logits, dtype=np.float32)))
        return float(auc_roc(self.task, labels, self.task.scores(probs.numpy()))[0])

    def cap(self, n_layers: int) -> int:
        return max(1, math.ceil(n_layers * MAX_FLOAT_FRACTION))


@dataclass(frozen=True)
class Outcome:
    """The chosen int8 model, the layers kept in float, and its validation figures."""

    model: Any
    kept: tuple[str, ...]
    float_auc: float
    int8_auc: float
    max_drop: float
    before_auc: float | None = None  # every layer in int8 (None: not measured)
    capped: bool = False  # the cap on float layers was hit with the drop still above D

    @property
    def drop(self) -> float:
        return self.float_auc - self.int8_auc

    def note(self) -> str:
        """The row's note: the figures and the layers kept in float."""
        head = (f"accuracy control: validation AUC {self.float_auc:.3f} float, "
                f"{self.int8_auc:.3f} int8 (drop {self.drop:.3f} "
                f"{'<=' if within(self.drop, self.max_drop) else '>'} {self.max_drop:g})")
        if self.before_auc is not None and self.kept:
            head += f", {self.before_auc:.3f} with every layer int8"
        if not self.kept:
            return head + "; every layer int8"
        listed = ", ".join(self.kept)
        tail = (f"; stopped at the cap of {len(self.kept)} float layers without reaching "
                f"{self.max_drop:g}" if self.capped else "")
        return (f"{head}; {len(self.kept)} layer{'s' if len(self.kept) > 1 else ''} kept in "
                f"float: {listed}{tail}")


def restore(control: Control, layers: Sequence[str], make: Callable[[tuple[str, ...]], Any],
            predict: Callable[[Any, np.ndarray], np.ndarray], float_logits: np.ndarray) -> Outcome:
    """The rule (module docstring) for a backend without a library for it.

    `make(kept)` builds the int8 model with the layers named in `kept` left in float (it
    may reuse the storage of the model it made before: only the latest is used, and the
    one returned is the last made); `predict(model, images)` returns its logits;
    `float_logits` are the float graph's on the whole validation split.
    """
    x = control.inputs()
    float_auc = control.auc(float_logits)
    model = make(())
    logits = predict(model, x)
    before = control.auc(logits)
    if within(float_auc - before, control.max_drop) or not layers:
        return Outcome(model, (), float_auc, before, control.max_drop, before)
    # rank on the images the all-int8 model gets most wrong (NNCF's subset selection)
    error = ((logits - float_logits) ** 2).reshape(len(x), -1).mean(axis=1)
    subset = np.sort(np.argsort(-error, kind="stable")[:RANKING_SIZE])
    scores = {name: float(((predict(make((name,)), x[subset]) - float_logits[subset]) ** 2).mean())
              for name in layers}
    order = sorted(layers, key=lambda name: scores[name])  # stable: graph order breaks ties
    kept: list[str] = []
    auc = before
    for name in order[:control.cap(len(layers))]:
        kept.append(name)
        model = make(tuple(kept))
        auc = control.auc(predict(model, x))
        if within(float_auc - auc, control.max_drop):
            break
    return Outcome(model, tuple(kept), float_auc, auc, control.max_drop, before,
                   capped=not within(float_auc - auc, control.max_drop))


def unsupported(backend: str) -> str:
    """The n/a reason of a backend whose realisation has no accuracy control."""
    return (f"quant.static max_drop: accuracy control is implemented for torch, onnxruntime "
            f"and openvino, not {backend}")
