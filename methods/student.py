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

from bench.modelling import precision
from bench.modelling.architectures import build
from bench.modelling.parent import Parent
from bench.modelling.training import predict_logits, train, trained_in
from bench.modelling.training_rule import from_scratch_settings
from bench.progress import log
from methods import register
from methods.base import Artifact, Context, Method


@register
class Student(Method):
    name = "student"
    summary = ("baseline, measured in every run: the kd student (--student) trained without a "
               "teacher, on the labelled images only, with kd's recipe and number of steps")
    baseline = True

    @classmethod
    def student_epochs(cls, params, run_epochs: float) -> float:
        return run_epochs

    def apply(self, parent: Artifact, ctx: Context) -> Artifact:
        start = time.perf_counter()
        module = train_student(ctx, 0, 0.0, None, 0.0, 1.0, "student")
        return Artifact(name=self.name, arch=ctx.student_arch, module=module, float_module=module,
                        notes=("same student recipe, steps and augmentation as kd, hard labels "
                               f"only (augmentation: {ctx.augment}; trained in "
                               f"{trained_precision(ctx)})",),
                        seconds=time.perf_counter() - start)

    def restore(self, parent: Artifact, ctx: Context, state: dict) -> torch.nn.Module:
        return student_with(ctx, state)


def student_with(ctx: Context, state: dict) -> torch.nn.Module:
    """The student's architecture holding saved weights: a resumed run's `student` or `kd`
    (their model is built afresh, not derived from their parent's)."""
    model = build(ctx.student_arch, ctx.task.num_outputs)
    model.load_state_dict(state)
    return model.eval()


def train_student(ctx: Context, epochs: float, lr: float, soft_targets, alpha: float,
                  temperature: float, label: str, transfer_soft=None,
                  parent: Parent | None = None):
    """The student recipe shared by `kd` and the `student` baseline (module docstring).

    `epochs` 0 means the run's student budget, `lr` 0 the training rule's for the
    student's architecture; `transfer_soft` are the teacher's logits
    on the unlabelled transfer images, which only a distilled student can use. Both
    train with the run's augmentation (ctx.augment), from the same seed: the same
    stream of views; with augmentation on, `parent` scores each view kd trains on.
    """
    torch.manual_seed(ctx.seed)  # the initial weights too: not whatever ran before
    model = build(ctx.student_arch, ctx.task.num_outputs)
    epochs = epochs or ctx.student_epochs
    # the budget counts the labelled images, whatever kd adds: both take the same steps
    settings = from_scratch_settings(model, epochs, ctx.seed, lr)
    settings = from_scratch_settings(model, epochs, ctx.seed, lr,
                                     steps=settings.total_steps(len(ctx.train_images)),
                                     augment=ctx.augment)
    images, labels, teacher = distillation_set(ctx, soft_targets, transfer_soft)
    log(f"{label}: training {ctx.student_arch} in {precision.name(trained_in(model, settings))}, "
        f"augmentation {ctx.augment}")
    return train(model, images, labels, ctx.task, settings, label,
                 teacher_logits=teacher if alpha > 0 else None, alpha=alpha,
                 temperature=temperature, parent=parent if alpha > 0 else None)


def online_parent(module: torch.nn.Module, ctx: Context, temperature: float) -> Parent:
    """The model a step distils, to score each augmented view online (bench.modelling.
    parent): the run's ensemble teacher as its members' averaged soft targets, exactly
    as its precomputed ones (ctx.soft_targets); any other model as itself."""
    if module is ctx.teacher and ctx.teacher_member_logits:
        members = tuple(module.members)
        return Parent(members, lambda outs: ctx.task.ensemble_soft_logits(outs, temperature))
    return Parent((module,))


def soft_targets_of(module: torch.nn.Module, ctx: Context, temperature: float,
                    use_transfer: bool) -> tuple:
    """(logits on the training images, on the unlabelled transfer images or None) of the
    model a step distils: the run's teacher's cached ones (an ensemble's averaged soft
    targets) where `module` is the teacher, else `module`'s own through the pass that
    computed the teacher's (predict_logits, `fast`)."""
    if module is ctx.teacher:
        return (ctx.soft_targets(temperature),
                ctx.transfer_soft_targets(temperature) if use_transfer else None)
    return (predict_logits(module, ctx.train_images, fast=True),
            predict_logits(module, ctx.transfer_images, fast=True) if use_transfer else None)


def trained_precision(ctx: Context) -> str:
    """What the student architecture trains in under the precision rule, in words."""
    model = build(ctx.student_arch, ctx.task.num_outputs)
    return precision.name(trained_in(model, from_scratch_settings(model, 1, ctx.seed)))


def distillation_set(ctx: Context, soft_targets, transfer_soft=None):
    """(images, labels, logits to distil): the labelled training images, plus the
    unlabelled transfer images (labels marked unknown: only the KD term sees them) where
    `transfer_soft`, their logits from the model being distilled, is given."""
    if transfer_soft is None:
        return ctx.train_images, ctx.train_labels, soft_targets
    images = np.concatenate([ctx.train_images, ctx.transfer_images])
    labels = np.concatenate([np.asarray(ctx.train_labels),
                             ctx.task.unlabelled(len(ctx.transfer_images)).numpy()])
    return images, labels, torch.cat([soft_targets, transfer_soft])
