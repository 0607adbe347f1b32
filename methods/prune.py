"""Pruning: global unstructured magnitude (L1) and dependency-graph channel pruning.

Unstructured pruning zeroes weights but keeps dense shapes: parameter count, file size
and latency stay as they were; only nonzero parameters and the gzipped file shrink, and
the rows say so. Structured pruning (torch-pruning's DepGraph) removes whole channels
and their dependants, so the model really gets smaller and faster.
"""

from __future__ import annotations

import time
from importlib.metadata import version

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from bench.modelling.architectures import clone, count_params
from methods import finetune, register
from methods.base import Artifact, Context, Method, Param
from methods.finetune import FineTune


def classifier_layer(model: nn.Module) -> nn.Module:
    """The final Linear layer: never pruned, its outputs are the classes."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model has no Linear classifier layer")
    return linears[-1]


@register
class MagnitudePrune(Method):
    name = "prune.magnitude"
    summary = ("global unstructured L1 pruning of conv and linear weights, fine-tuned with the "
               "mask held, then made permanent (dense file: only its gzip and nonzero params shrink)")
    params = (Param("sparsity", float, 0.5, "fraction of conv/linear weights set to zero",
                    bounds="(0, 1)"),) + finetune.PARAMS

    def apply(self, parent: Artifact, ctx: Context, sparsity: float, **tune) -> Artifact:
        if not 0.0 < sparsity < 1.0:
            raise ValueError(f"prune.magnitude: sparsity must lie in (0, 1), got {sparsity}")
        start = time.perf_counter()
        fine = FineTune(**tune)
        soft = fine.targets(parent, ctx)
        model = clone(parent.module).eval()
        targets = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured,
                                        amount=sparsity)
        # The forward pre-hooks re-apply the masks, so fine-tuning keeps pruned weights at 0.
        model = fine.train(model, ctx, soft, label=ctx.chain or self.name)
        for module, attr in targets:
            torch_prune.remove(module, attr)
        zeros = sum(int((m.weight == 0).sum()) for m, _ in targets)
        total = sum(m.weight.numel() for m, _ in targets)
        return Artifact(
            name=self.name, arch=parent.arch, module=model, float_module=model,
            notes=(f"{zeros / total:.1%} of conv/linear weights are zero; shapes unchanged, so "
                   "dense size and latency do not change", fine.note(parent, ctx, soft)),
            seconds=parent.seconds + time.perf_counter() - start,
        )


@register
class StructuredPrune(Method):
    name = "prune.structured"
    summary = ("torch-pruning dependency-graph channel pruning (L1 group importance), then "
               "fine-tuned by distilling its parent (the model before pruning); "
               "iterative_steps>1 prunes in that many rounds with a fine-tune after each")
    params = (
        Param("ratio", float, 0.5, "fraction of channels removed per layer (params fall ~ with "
              "its square)", bounds="(0, 1)"),
        Param("round_to", int, 8, "keep channel counts multiples of this (efficient kernels)",
              bounds="[1, inf)"),
        Param("iterative_steps", int, 1, "prune in this many rounds (torch-pruning's "
              "iterative_steps), the fine-tuning budget split evenly after each round",
              bounds="[1, 100]"),
    ) + finetune.PARAMS

    def apply(self, parent: Artifact, ctx: Context, ratio: float, round_to: int,
              iterative_steps: int, **tune) -> Artifact:
        import torch_pruning as tp

        if not 0.0 < ratio < 1.0:
            raise ValueError(f"prune.structured: ratio must lie in (0, 1), got {ratio}")
        if not 1 <= iterative_steps <= 100:
            raise ValueError(f"prune.structured: iterative_steps must lie in 1..100, "
                             f"got {iterative_steps}")
        start = time.perf_counter()
        fine = FineTune(**tune)
        soft = fine.targets(parent, ctx)
        model = clone(parent.module).eval()
        before, _ = count_params(model)
        example = torch.zeros(1, 3, ctx.image_size, ctx.image_size)
        try:
            pruner = tp.pruner.BasePruner(  # MetaPruner is its deprecated alias
                model, example,
                importance=tp.importance.GroupMagnitudeImportance(p=1),
                pruning_ratio=ratio,
                iterative_steps=iterative_steps,
                ignored_layers=[classifier_layer(model)],
                round_to=round_to,
            )
        except Exception as exc:  # its graph tracing fails deep inside, with no context
            raise untraceable(parent.arch, exc) from exc
        epochs = fine.epochs(ctx)
        for round_ in range(iterative_steps):
            pruner.step()
            label = (ctx.chain or self.name) + (f" round {round_ + 1}/{iterative_steps}"
                                                if iterative_steps > 1 else "")
            model = fine.train(model, ctx, soft, epochs / iterative_steps, label)
        after, _ = count_params(model)
        rounds = f" in {iterative_steps} rounds" if iterative_steps > 1 else ""
        return Artifact(
            name=self.name, arch=parent.arch, module=model, float_module=model,
            notes=(f"channels pruned at ratio {ratio}{rounds}: {before:,} -> {after:,} parameters",
                   fine.note(parent, ctx, soft)),
            seconds=parent.seconds + time.perf_counter() - start,
        )


def untraceable(arch: str, exc: Exception) -> ValueError:
    """The one-line error for an architecture torch-pruning's dependency graph cannot
    trace: ShuffleNetV2's channel shuffle (a view and transpose of the channel axis in a
    plain function) makes it divide by zero (VainF/Torch-Pruning#14, open since 2020)."""
    return ValueError(
        f"prune.structured: torch-pruning {version('torch-pruning')}'s dependency graph cannot "
        f"trace {arch} ({type(exc).__name__}: {exc}); it does not follow reshapes of the "
        "channel axis such as ShuffleNet's channel shuffle. Prune another architecture, or "
        "use prune.magnitude")
