"""Knowledge distillation (Hinton et al., 2015) into a smaller torchvision student."""

from __future__ import annotations

import time

import torch

from bench.models import build
from bench.training import TrainSettings, predict_logits, train
from methods import register
from methods.base import Artifact, Context, Method, Param


@register
class Distill(Method):
    name = "kd"
    summary = ("Hinton distillation from the parent (the teacher unless chained) into a fresh "
               "student (--student, default mobilenet_v2); loss = alpha*KD + (1-alpha)*hard loss")
    params = (
        Param("temperature", float, 4.0, "softening temperature T (the KD term is scaled by T^2)"),
        Param("alpha", float, 0.7, "weight of the distillation term; 1-alpha weighs the hard labels"),
        Param("epochs", float, 0.0, "training epochs (0: the run's student budget)"),
        Param("lr", float, 0.05, "peak SGD learning rate (one-cycle)"),
    )

    def apply(self, parent: Artifact, ctx: Context, temperature: float, alpha: float,
              epochs: float, lr: float) -> Artifact:
        start = time.perf_counter()
        if parent.module is ctx.teacher:
            soft = ctx.soft_targets(temperature)
        else:
            soft = predict_logits(parent.module, ctx.train_images)
        student = train_student(ctx, epochs, lr, soft, alpha, temperature, "kd")
        return Artifact(
            name="kd", arch=ctx.student_arch, module=student, float_module=student,
            notes=(f"distilled from {parent.name} ({parent.arch}), T={temperature}, alpha={alpha}",),
            seconds=parent.seconds + time.perf_counter() - start,
        )


def train_student(ctx: Context, epochs: float, lr: float, soft_targets, alpha: float,
                  temperature: float, label: str):
    """The student recipe shared by `kd` and the no-distillation `student` baseline.

    Same architecture, data, seed, schedule and budget, so the only difference between
    the two rows is the distillation term.
    """
    torch.manual_seed(ctx.seed)  # the initial weights too: not whatever ran before
    model = build(ctx.student_arch, ctx.task.num_outputs)
    settings = TrainSettings(epochs=epochs or ctx.student_epochs, lr=lr, seed=ctx.seed)
    return train(model, ctx.train_images, ctx.train_labels, ctx.task, settings, label,
                 teacher_logits=soft_targets if alpha > 0 else None, alpha=alpha,
                 temperature=temperature)
