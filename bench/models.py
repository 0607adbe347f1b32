"""Building classifiers from torchvision and describing them (params, bytes, MACs).

Architectures are torchvision's own builders, so `--teacher` / `--student` accept any
torchvision classification model name. Never downloads weights.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn


def available_architectures() -> list[str]:
    from torchvision import models

    return sorted(models.list_models(module=models))


def check_architecture(arch: str, role: str = "architecture") -> None:
    if arch not in available_architectures():
        raise ValueError(f"unknown {role} {arch!r}: not a torchvision classification model "
                         f"(e.g. densenet121, mobilenet_v2, resnet18; `python -m bench list --archs`)")


def build(arch: str, num_outputs: int) -> nn.Module:
    """A randomly initialised torchvision classifier with `num_outputs` logits."""
    from torchvision import models

    check_architecture(arch)
    kwargs = {"weights": None, "num_classes": num_outputs}
    if arch.startswith(("inception", "googlenet")):
        kwargs["aux_logits"] = False
        kwargs["init_weights"] = True
    return models.get_model(arch, **kwargs)


def load_checkpoint(arch: str, num_outputs: int, path: str) -> nn.Module:
    """The user's own weights for `arch`. weights_only=True: loading runs no code."""
    model = build(arch, num_outputs)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: teacher checkpoint not found") from None
    except Exception as exc:  # pickle errors, non-weights content
        raise ValueError(f"{path}: not a weights-only PyTorch checkpoint ({exc.__class__.__name__}: "
                         f"{str(exc).splitlines()[0][:160]})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state_dict (a mapping of tensor names to tensors)")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "mismatch"
        raise ValueError(f"{path}: does not fit {arch} with {num_outputs} outputs: {first[:200]}") from None
    return model


def clone(model: nn.Module) -> nn.Module:
    """A deep copy: methods work on this so they never mutate what they were given."""
    return copy.deepcopy(model)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(total, nonzero) over the model's state tensors, quantized weights included."""
    total = nonzero = 0
    for t in _state_tensors(model):
        if not t.is_floating_point() and not t.is_quantized:
            continue  # integer buffers (BN's num_batches_tracked) are not parameters
        if t.numel() <= 1 and not isinstance(t, nn.Parameter):
            continue  # scales / zero points
        total += t.numel()
        values = t.int_repr() if t.is_quantized else t
        nonzero += int(torch.count_nonzero(values))
    return total, nonzero


def state_bytes(model: nn.Module) -> int:
    """Bytes of every tensor in the model's state (weights, buffers, packed int8 weights)."""
    return sum(t.numel() * t.element_size() for t in _state_tensors(model))


def _state_tensors(model: nn.Module):
    # state_dict walks nested packed params; buffers only BN stats: count once each.
    seen = set()
    stack = list(model.state_dict().values())
    while stack:
        v = stack.pop()
        if isinstance(v, torch.Tensor):
            if id(v) not in seen:
                seen.add(id(v))
                yield v
        elif isinstance(v, (tuple, list)):
            stack.extend(v)
        elif hasattr(v, "__getstate__") and type(v).__name__.endswith("PackedParamsBase"):
            stack.extend(_unpack(v))


def _unpack(packed):
    try:
        return [t for t in packed.unpack() if isinstance(t, torch.Tensor)]
    except Exception:
        return []


def count_macs(model: nn.Module, image_size: int, channels: int = 3) -> int:
    """Multiply-accumulates of one batch-1 inference, by torch-pruning's op counter."""
    import torch_pruning as tp

    example = torch.zeros(1, channels, image_size, image_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        macs, _ = tp.utils.count_ops_and_params(model.eval(), example)
    return int(macs)
