"""The `student` baseline: the kd student's architecture trained on the labels alone.

Distillation is meaningless without it, so every run measures it (`baseline = True`),
whatever --methods says. It also owns the student recipe that `kd` shares: same
architecture, seed, optimiser, schedule, batch size and number of steps, so the two rows
differ only by the distillation term and the unlabelled images it brings.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from bench.models import build
from bench.training import STUDENT_LR, STUDENT_OPTIMIZER, TrainSettings, train
from methods import register
from methods.base import Artifact, Context, Method


@register
class Student(Method):
    name = "student"
    summary = ("baseline, measured in every run: the kd student (--student) trained without a "
               "teacher, on the labelled images only, with kd's recipe and number of steps")
    baseline = True

    def apply(self, parent: Artifact, ctx: Context) -> Artifact:
        start = time.perf_counter()
        module = train_student(ctx, 0, STUDENT_LR, None, 0.0, 1.0, "student")
        return Artifact(name=self.name, arch=ctx.student_arch, module=module, float_module=module,
                        notes=("same student recipe and steps as kd, hard labels only",),
                        seconds=time.perf_counter() - start)


def train_student(ctx: Context, epochs: float, lr: float, soft_targets, alpha: float,
                  temperature: float, label: str, transfer_soft=None):
    """The student recipe shared by `kd` and the `student` baseline (module docstring).

    `epochs` 0 means the run's student budget; `transfer_soft` are the teacher's logits
    on the unlabelled transfer images, which only a distilled student can use.
    """
    torch.manual_seed(ctx.seed)  # the initial weights too: not whatever ran before
    model = build(ctx.student_arch, ctx.task.num_outputs)
    epochs = epochs or ctx.student_epochs
    batch = TrainSettings(epochs=epochs).batch_size
    steps = max(1, int(round(epochs * -(-len(ctx.train_images) // batch))))
    settings = TrainSettings(epochs=epochs, lr=lr, seed=ctx.seed, steps=steps, **STUDENT_OPTIMIZER)
    images, labels, teacher = ctx.train_images, ctx.train_labels, soft_targets
    if transfer_soft is not None:
        images = np.concatenate([images, ctx.transfer_images])
        labels = np.concatenate([np.asarray(labels),
                                 ctx.task.unlabelled(len(ctx.transfer_images)).numpy()])
        teacher = torch.cat([soft_targets, transfer_soft])
    return train(model, images, labels, ctx.task, settings, label,
                 teacher_logits=teacher if alpha > 0 else None, alpha=alpha,
                 temperature=temperature)
