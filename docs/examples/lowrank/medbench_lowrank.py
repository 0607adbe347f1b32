"""A medbench method from outside the project: each Linear layer and 1x1 convolution
replaced by two thinner ones (truncated SVD keeping `rank_ratio` of its singular values),
then the bench's distil-from-parent fine-tune (docs/architecture.md, "Adding things")."""

import time

import torch
from torch import nn

from bench.modelling.architectures import clone
from methods import register
from methods.base import Artifact, Method, Param
from methods.finetune import PARAMS, FineTune


def _factorised(layer: nn.Module, ratio: float) -> nn.Sequential | None:
    """`layer` as two layers of its kind through `rank` channels, or None where that is
    not smaller."""
    weight = layer.weight.detach().flatten(1)  # (out, in), a 1x1 kernel's too
    out_f, in_f = weight.shape
    rank = max(1, round(ratio * min(out_f, in_f)))
    if rank * (out_f + in_f) >= out_f * in_f:
        return None
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    root = s[:rank].sqrt()
    bias = layer.bias is not None
    if isinstance(layer, nn.Linear):
        first, second = nn.Linear(in_f, rank, bias=False), nn.Linear(rank, out_f, bias=bias)
    else:
        first = nn.Conv2d(in_f, rank, 1, stride=layer.stride, bias=False)
        second = nn.Conv2d(rank, out_f, 1, bias=bias)
    with torch.no_grad():
        first.weight.copy_((root[:, None] * vh[:rank]).reshape(first.weight.shape))
        second.weight.copy_((u[:, :rank] * root).reshape(second.weight.shape))
        if bias:
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second)


def factorise(model: nn.Module, ratio: float) -> int:
    """Factorise `model`'s Linear layers and ungrouped 1x1 convolutions in place; how many."""
    count = 0
    for owner in list(model.modules()):
        for name, child in list(owner.named_children()):
            pointwise = (isinstance(child, nn.Conv2d) and child.kernel_size == (1, 1)
                         and child.groups == 1 and child.padding == (0, 0))
            new = _factorised(child, ratio) if pointwise or isinstance(child, nn.Linear) else None
            if new is not None:
                setattr(owner, name, new)
                count += 1
    return count


@register
class LowRank(Method):
    name = "lowrank"
    summary = ("truncated SVD of Linear layers and 1x1 convolutions keeping rank_ratio of "
               "their singular values, then fine-tuned by distilling its parent")
    params = (Param("rank_ratio", float, 0.5, "share of each layer's singular values kept",
                    bounds="(0, 1]"),) + PARAMS

    def apply(self, parent, ctx, rank_ratio, **tune):
        start = time.perf_counter()
        model = clone(parent.module)
        count = factorise(model, rank_ratio)
        model, note = FineTune(**tune).run(model, parent, ctx)
        return Artifact(name=self.name, arch=parent.arch, module=model, float_module=model,
                        notes=(f"{count} layers factorised at rank ratio {rank_ratio}", note),
                        seconds=parent.seconds + time.perf_counter() - start)

    def restore(self, parent, ctx, state, rank_ratio, **tune):
        model = clone(parent.module)  # the parent's structure, factorised as `apply` did
        factorise(model, rank_ratio)
        model.load_state_dict(state)
        return model
