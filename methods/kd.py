"""Knowledge distillation (Hinton et al., 2015) into a smaller torchvision student.

The student sees the labelled training images with the hard-label loss and the teacher's
soft targets, plus (where the dataset has them) unlabelled images that only the teacher
can label: distillation's own advantage over a student trained without a teacher, which
cannot use them. Both students get the same recipe and the same number of optimiser steps.
"""

from __future__ import annotations

import time

from methods import register
from methods.base import Artifact, Context, Method, Param
from methods.student import (
    online_parent,
    soft_targets_of,
    student_with,
    train_student,
    trained_precision,
)


@register
class Distill(Method):
    name = "kd"
    summary = ("Hinton distillation from the parent (the teacher unless chained) into a fresh "
               "student (--student, default mobilenet_v2); loss = alpha*KD + (1-alpha)*hard loss, "
               "on the labelled images plus the unlabelled ones the teacher labels")
    params = (
        Param("temperature", float, 4.0, "softening temperature T (the KD term is scaled by T^2)",
              bounds="(0, inf)"),
        Param("alpha", float, 0.7, "weight of the distillation term; 1-alpha weighs the hard labels",
              bounds="[0, 1]"),
        Param("epochs", float, 0.0, "training budget in epochs of the labelled images (0: the "
                                    "run's student budget)", bounds="[0, inf)"),
        Param("lr", float, 0.0, "peak learning rate (0: the training rule's for the student's "
                                "architecture: 5e-3 with AdamW for depthwise nets like MobileNetV2)",
              bounds="[0, inf)"),
        Param("unlabelled", bool, True, "true: also distil on the dataset's unlabelled images; "
                                        "false: not"),
    )

    @classmethod
    def student_epochs(cls, params, run_epochs: float) -> float:
        return params.get("epochs") or run_epochs  # 0: the run's, as train_student reads it

    def apply(self, parent: Artifact, ctx: Context, temperature: float, alpha: float,
              epochs: float, lr: float, unlabelled: bool) -> Artifact:
        start = time.perf_counter()
        use_transfer = bool(unlabelled) and ctx.transfer_images is not None and alpha > 0
        soft, soft_u = soft_targets_of(parent.module, ctx, temperature, use_transfer)
        student = train_student(ctx, epochs, lr, soft, alpha, temperature, ctx.chain or "kd",
                                soft_u, online_parent(parent.module, ctx, temperature))
        notes = [f"distilled from {parent.name} ({parent.arch}), T={temperature}, alpha={alpha}",
                 f"augmentation: {ctx.augment}" + ("" if ctx.augment == "none" else
                                                   f"; {parent.name} scores every augmented view")
                 + f"; trained in {trained_precision(ctx)}"]
        if soft_u is not None:
            notes.append(f"also on {len(soft_u)} unlabelled images labelled by {parent.name}, which "
                         "the student baseline cannot use")
        return Artifact(
            name="kd", arch=ctx.student_arch, module=student, float_module=student,
            notes=tuple(notes), seconds=parent.seconds + time.perf_counter() - start,
        )

    def restore(self, parent: Artifact, ctx: Context, state: dict, **params):
        return student_with(ctx, state)  # a new student, not the parent's structure
