"""Pruning: global unstructured magnitude (L1) and dependency-graph channel pruning.

Unstructured pruning zeroes weights but keeps dense shapes: parameter count, file size
and latency stay as they were; only nonzero parameters and the gzipped file shrink, and
the rows say so. Structured pruning (torch-pruning's DepGraph) removes whole channels
and their dependants, so the model really gets smaller and faster.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from bench.modelling.architectures import clone, count_params
from bench.modelling.training import EarlyStop, auc_of, predict_logits, train
from bench.modelling.training_rule import FINETUNE_LR, finetune_settings
from methods import register
from methods.base import Artifact, Context, Method, Param
from methods.student import distillation_set

_FINETUNE = (
    Param("finetune_epochs", float, -1.0, "fine-tuning epochs after pruning (-1: the run's budget)"),
    Param("alpha", float, 0.5, "weight of distillation while fine-tuning (1-alpha: the hard labels)"),
    Param("temperature", float, 4.0, "KD temperature while fine-tuning"),
    Param("lr", float, FINETUNE_LR, "peak AdamW learning rate while fine-tuning (the training "
                                    "rule's for fine-tuning)"),
    Param("distil_from", str, "parent", "whose logits the fine-tune distils: the model before "
          "pruning (parent) or the run's teacher", choices=("parent", "teacher")),
    Param("unlabelled", int, 0, "1: also distil on the dataset's unlabelled images (labelled by "
                                "distil_from), as kd does; 0: the labelled images only (better "
                                "on validation here at the same steps)"),
)


#: validation scores in a row without a gain before a fine-tune stops (half an epoch apart)
FINETUNE_PATIENCE = 2


def classifier_layer(model: nn.Module) -> nn.Module:
    """The final Linear layer: never pruned, its outputs are the classes."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model has no Linear classifier layer")
    return linears[-1]


def distillation(parent: Artifact, ctx: Context, distil_from: str, temperature: float,
                 unlabelled: int) -> tuple:
    """(images, labels, logits) a fine-tune distils: its parent's logits (the model before
    this step: what the pruned model should go on computing) or the run's teacher's
    (cached), on the labelled images and, with `unlabelled`, the transfer images too."""
    use_transfer = bool(unlabelled) and ctx.transfer_images is not None
    if distil_from == "teacher" or parent.module is ctx.teacher:
        soft = ctx.soft_targets(temperature)
        soft_u = ctx.transfer_soft_targets(temperature) if use_transfer else None
    else:
        soft = predict_logits(parent.module, ctx.train_images)
        soft_u = predict_logits(parent.module, ctx.transfer_images) if use_transfer else None
    return distillation_set(ctx, soft, soft_u)


def _finetune(model, ctx: Context, label: str, epochs: float, distilled: tuple, alpha,
              temperature, lr):
    """The fine-tuning rule (bench.modelling.training_rule.finetune_settings) with distillation; the budget
    counts epochs of the labelled images, whatever unlabelled ones are added."""
    if epochs <= 0:
        return model.eval()
    images, labels, soft = distilled
    settings = finetune_settings(epochs, ctx.seed, lr)
    settings = replace(settings, steps=settings.total_steps(len(ctx.train_images)))
    return train(model, images, labels, ctx.task, settings, label, teacher_logits=soft,
                 alpha=alpha, temperature=temperature, early_stop=validation_stop(ctx))


def validation_stop(ctx: Context) -> EarlyStop | None:
    """The fine-tune's stop (the training rule): its budget is the most it trains; it
    stops once the validation AUC has not improved for two half-epochs, scored from the
    pruned model on, and keeps the best weights. None where the run has no validation split."""
    if ctx.val_images is None or ctx.val_labels is None:
        return None
    def score(model):
        return auc_of(model, ctx.task, ctx.val_images, ctx.val_labels)

    half_epoch = max(1, finetune_settings(1, 0).steps_per_epoch(len(ctx.train_images)) // 2)
    return EarlyStop(score=score, every=half_epoch, patience=FINETUNE_PATIENCE, min_steps=0,
                     score_start=True)


def _budget(ctx: Context, finetune_epochs: float) -> float:
    return ctx.finetune_epochs if finetune_epochs < 0 else finetune_epochs


@register
class MagnitudePrune(Method):
    name = "prune.magnitude"
    summary = ("global unstructured L1 pruning of conv and linear weights, fine-tuned with the "
               "mask held, then made permanent (dense file: only its gzip and nonzero params shrink)")
    params = (Param("sparsity", float, 0.5, "fraction of conv/linear weights set to zero"),) + _FINETUNE

    def apply(self, parent: Artifact, ctx: Context, sparsity: float, finetune_epochs: float,
              alpha: float, temperature: float, lr: float, distil_from: str,
              unlabelled: int) -> Artifact:
        if not 0.0 < sparsity < 1.0:
            raise ValueError(f"prune.magnitude: sparsity must lie in (0, 1), got {sparsity}")
        start = time.perf_counter()
        soft = distillation(parent, ctx, distil_from, temperature, unlabelled)
        model = clone(parent.module).eval()
        targets = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured,
                                        amount=sparsity)
        # The forward pre-hooks re-apply the masks, so fine-tuning keeps pruned weights at 0.
        epochs = _budget(ctx, finetune_epochs)
        model = _finetune(model, ctx, self.name, epochs, soft, alpha, temperature, lr)
        for module, attr in targets:
            torch_prune.remove(module, attr)
        zeros = sum(int((m.weight == 0).sum()) for m, _ in targets)
        total = sum(m.weight.numel() for m, _ in targets)
        return Artifact(
            name=self.name, arch=parent.arch, module=model, float_module=model,
            notes=(f"{zeros / total:.1%} of conv/linear weights are zero; shapes unchanged, so "
                   "dense size and latency do not change",
                   _finetune_note(parent, ctx, epochs, distil_from, alpha, temperature, lr, soft)),
            seconds=parent.seconds + time.perf_counter() - start,
        )


@register
class StructuredPrune(Method):
    name = "prune.structured"
    summary = ("torch-pruning dependency-graph channel pruning (L1 group importance), then "
               "fine-tuned by distilling its parent (the model before pruning); "
               "iterative_steps>1 prunes in that many rounds with a fine-tune after each")
    params = (
        Param("ratio", float, 0.5, "fraction of channels removed per layer (params fall ~ with its square)"),
        Param("round_to", int, 8, "keep channel counts multiples of this (efficient kernels)"),
        Param("iterative_steps", int, 1, "prune in this many rounds (torch-pruning's "
              "iterative_steps), the fine-tuning budget split evenly after each round"),
    ) + _FINETUNE

    def apply(self, parent: Artifact, ctx: Context, ratio: float, round_to: int,
              iterative_steps: int, finetune_epochs: float, alpha: float, temperature: float,
              lr: float, distil_from: str, unlabelled: int) -> Artifact:
        import torch_pruning as tp

        if not 0.0 < ratio < 1.0:
            raise ValueError(f"prune.structured: ratio must lie in (0, 1), got {ratio}")
        if not 1 <= iterative_steps <= 100:
            raise ValueError(f"prune.structured: iterative_steps must lie in 1..100, "
                             f"got {iterative_steps}")
        start = time.perf_counter()
        soft = distillation(parent, ctx, distil_from, temperature, unlabelled)
        model = clone(parent.module).eval()
        before, _ = count_params(model)
        example = torch.zeros(1, 3, ctx.image_size, ctx.image_size)
        pruner = tp.pruner.MetaPruner(
            model, example,
            importance=tp.importance.GroupMagnitudeImportance(p=1),
            pruning_ratio=ratio,
            iterative_steps=iterative_steps,
            ignored_layers=[classifier_layer(model)],
            round_to=round_to,
        )
        epochs = _budget(ctx, finetune_epochs)
        for round_ in range(iterative_steps):
            pruner.step()
            label = self.name + (f" round {round_ + 1}/{iterative_steps}" if iterative_steps > 1
                                 else "")
            model = _finetune(model, ctx, label, epochs / iterative_steps, soft, alpha,
                              temperature, lr)
        after, _ = count_params(model)
        rounds = f" in {iterative_steps} rounds" if iterative_steps > 1 else ""
        return Artifact(
            name=self.name, arch=parent.arch, module=model, float_module=model,
            notes=(f"channels pruned at ratio {ratio}{rounds}: {before:,} -> {after:,} parameters",
                   _finetune_note(parent, ctx, epochs, distil_from, alpha, temperature, lr, soft)),
            seconds=parent.seconds + time.perf_counter() - start,
        )


def _finetune_note(parent: Artifact, ctx: Context, epochs: float, distil_from: str,
                   alpha: float, temperature: float, lr: float, distilled: tuple) -> str:
    if epochs <= 0:
        return "not fine-tuned"
    source = "the teacher" if distil_from == "teacher" or parent.module is ctx.teacher \
        else f"its parent {parent.name}"
    extra = len(distilled[0]) - len(ctx.train_images)
    return (f"fine-tuned {epochs:g} epochs (AdamW, peak lr {lr:g}) distilling {source} "
            f"(alpha {alpha}, T {temperature})"
            + (f", also on {extra} unlabelled images it labels" if extra else ""))
