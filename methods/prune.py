"""Pruning: global unstructured magnitude (L1) and dependency-graph channel pruning.

Unstructured pruning zeroes weights but keeps dense shapes: parameter count, file size
and latency stay as they were; only nonzero parameters and the gzipped file shrink, and
the rows say so. Structured pruning (torch-pruning's DepGraph) removes whole channels
and their dependants, so the model really gets smaller and faster.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from bench.models import clone, count_params
from bench.training import TrainSettings, train
from methods import register
from methods.base import Artifact, Context, Method, Param

_FINETUNE = (
    Param("finetune_epochs", float, -1.0, "fine-tuning epochs after pruning (-1: the run's budget)"),
    Param("alpha", float, 0.5, "weight of distillation from the teacher while fine-tuning"),
    Param("temperature", float, 4.0, "KD temperature while fine-tuning"),
    Param("lr", float, 0.01, "peak SGD learning rate while fine-tuning"),
)


def classifier_layer(model: nn.Module) -> nn.Module:
    """The final Linear layer: never pruned, its outputs are the classes."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model has no Linear classifier layer")
    return linears[-1]


def _finetune(model, ctx: Context, label: str, finetune_epochs, alpha, temperature, lr, after_step=None):
    epochs = ctx.finetune_epochs if finetune_epochs < 0 else finetune_epochs
    if epochs <= 0:
        return model.eval()
    settings = TrainSettings(epochs=epochs, lr=lr, seed=ctx.seed)
    return train(model, ctx.train_images, ctx.train_labels, ctx.task, settings, label,
                 teacher_logits=ctx.soft_targets(temperature), alpha=alpha, temperature=temperature,
                 after_step=after_step)


@register
class MagnitudePrune(Method):
    name = "prune.magnitude"
    summary = ("global unstructured L1 pruning of conv and linear weights, fine-tuned with the "
               "mask held, then made permanent (dense file: only its gzip and nonzero params shrink)")
    params = (Param("sparsity", float, 0.5, "fraction of conv/linear weights set to zero"),) + _FINETUNE

    def apply(self, parent: Artifact, ctx: Context, sparsity: float, finetune_epochs: float,
              alpha: float, temperature: float, lr: float) -> Artifact:
        if not 0.0 < sparsity < 1.0:
            raise ValueError(f"prune.magnitude: sparsity must lie in (0, 1), got {sparsity}")
        start = time.perf_counter()
        model = clone(parent.module).eval()
        targets = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured,
                                        amount=sparsity)
        # The forward pre-hooks re-apply the masks, so fine-tuning keeps pruned weights at 0.
        model = _finetune(model, ctx, self.name, finetune_epochs, alpha, temperature, lr)
        for module, attr in targets:
            torch_prune.remove(module, attr)
        zeros = sum(int((m.weight == 0).sum()) for m, _ in targets)
        total = sum(m.weight.numel() for m, _ in targets)
        return Artifact(
            name=self.name, arch=parent.arch, module=model, float_module=model,
            notes=(f"{zeros / total:.1%} of conv/linear weights are zero; shapes unchanged, so "
                   "dense size and latency do not change",),
            seconds=parent.seconds + time.perf_counter() - start,
        )


@register
class StructuredPrune(Method):
    name = "prune.structured"
    summary = ("torch-pruning dependency-graph channel pruning (L1 group importance), then "
               "fine-tuned with distillation from the teacher")
    params = (
        Param("ratio", float, 0.5, "fraction of channels removed per layer (params fall ~ with its square)"),
        Param("round_to", int, 8, "keep channel counts multiples of this (efficient kernels)"),
    ) + _FINETUNE

    def apply(self, parent: Artifact, ctx: Context, ratio: float, round_to: int,
              finetune_epochs: float, alpha: float, temperature: float, lr: float) -> Artifact:
        import torch_pruning as tp

        if not 0.0 < ratio < 1.0:
            raise ValueError(f"prune.structured: ratio must lie in (0, 1), got {ratio}")
        start = time.perf_counter()
        model = clone(parent.module).eval()
        before, _ = count_params(model)
        example = torch.zeros(1, 3, ctx.image_size, ctx.image_size)
        pruner = tp.pruner.MetaPruner(
            model, example,
            importance=tp.importance.GroupMagnitudeImportance(p=1),
            pruning_ratio=ratio,
            ignored_layers=[classifier_layer(model)],
            round_to=round_to,
        )
        pruner.step()
        after, _ = count_params(model)
        model = _finetune(model, ctx, self.name, finetune_epochs, alpha, temperature, lr)
        return Artifact(
            name=self.name, arch=parent.arch, module=model, float_module=model,
            notes=(f"channels pruned at ratio {ratio}: {before:,} -> {after:,} parameters",),
            seconds=parent.seconds + time.perf_counter() - start,
        )
