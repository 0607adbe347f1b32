"""Loading saved weights into a model whose layers they no longer fit: a channel-pruned
model's weights into its parent's structure, as a resumed run rebuilds it
(methods.base.Method.restore's default).

Only tensors are read: a model is never unpickled from a run directory, so nothing
there is executed."""

from __future__ import annotations

import torch
from torch import nn


def load_resized(model: nn.Module, state: dict) -> nn.Module:
    """`model` (changed in place) with the weights of `state`, whose layers may have fewer
    channels than the model's: each Conv2d, BatchNorm2d and Linear is resized to the saved
    shapes first, as torch-pruning resized it, then the state is loaded (strictly: a
    layer renamed or replaced is a RuntimeError naming it)."""
    for name, module in model.named_modules():
        w = state.get(f"{name}.weight" if name else "weight")
        if w is None or tuple(w.shape) == tuple(getattr(module, "weight", w).shape):
            continue
        if isinstance(module, nn.Conv2d):
            depthwise = module.groups > 1 and module.groups == module.in_channels
            module.out_channels = w.shape[0]
            module.groups = w.shape[0] if depthwise else module.groups
            module.in_channels = w.shape[1] * module.groups
        elif isinstance(module, nn.BatchNorm2d):
            module.num_features = w.shape[0]
            module.running_mean = torch.zeros(w.shape[0])
            module.running_var = torch.ones(w.shape[0])
        elif isinstance(module, nn.Linear):
            module.out_features, module.in_features = w.shape
        else:
            continue
        module.weight = nn.Parameter(torch.empty_like(w))
        if getattr(module, "bias", None) is not None:
            module.bias = nn.Parameter(torch.empty(w.shape[0]))
    model.load_state_dict(state)
    return model.eval()
