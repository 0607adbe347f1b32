"""Building classifiers from torchvision (or timm) and describing them (params, bytes, MACs).

Architectures are torchvision's own builders, so `--teacher` / `--student` accept any
torchvision classification model name; `timm:NAME` takes a timm model when timm is
installed; `a+b` joins several backbones' pooled features under one head (the COVID-19
ensemble paper's teacher). Never downloads weights: `pretrained=True` reads ImageNet
weights from the local torch hub cache, or fails saying where to put them.
"""

from __future__ import annotations

import copy
import os
import re

import torch
from torch import nn

from bench.inputs import check_checkpoint_file, one_line, plural, reason, sniff


def available_architectures() -> list[str]:
    """torchvision's classification models (`a+b` joins several; `timm:NAME` with timm)."""
    from torchvision import models

    return sorted(models.list_models(module=models))


def check_architecture(arch: str, role: str = "architecture") -> None:
    for part in arch.split("+"):
        if part.startswith("timm:"):
            try:
                import timm
            except ImportError:
                raise ValueError(f"{role} {arch!r}: {part} needs timm, which is not installed "
                                 "(pip install timm)") from None
            if not timm.is_model(part[5:]):
                raise ValueError(f"unknown {role} {part!r}: not a timm model")
        elif part not in available_architectures():
            raise ValueError(f"unknown {role} {part!r}: not a torchvision classification model "
                             f"(e.g. densenet121, mobilenet_v2, resnet18; `python -m bench list --archs`)")


def build(arch: str, num_outputs: int, pretrained: bool = False) -> nn.Module:
    """A classifier with `num_outputs` logits, randomly initialised unless `pretrained`."""
    check_architecture(arch)
    if "+" in arch:
        return ConcatNet([pooled_backbone(a, pretrained) for a in arch.split("+")], num_outputs)
    if arch.startswith("timm:"):
        import timm

        if pretrained:
            raise ValueError(f"--pretrained with {arch}: timm weights are not looked up locally "
                             "by the bench; pass --teacher-checkpoint instead")
        return timm.create_model(arch[5:], pretrained=False, num_classes=num_outputs)
    from torchvision import models

    if pretrained:
        model = models.get_model(arch, weights=_local_imagenet_weights(arch))
        head, _ = _last_linear(model)
        _replace(model, head, nn.Linear(_get(model, head).in_features, num_outputs))
        return model
    kwargs = {"weights": None, "num_classes": num_outputs}
    if arch.startswith(("inception", "googlenet")):
        kwargs["aux_logits"] = False
        kwargs["init_weights"] = True
    return models.get_model(arch, **kwargs)


def _local_imagenet_weights(arch: str):
    """torchvision's DEFAULT weights for `arch` if their file is in the torch hub cache."""
    from torchvision import models

    weights = models.get_model_weights(arch).DEFAULT
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    if not os.path.isfile(path):
        raise ValueError(f"--pretrained: ImageNet weights for {arch} not found at {path}; "
                         f"the bench downloads nothing: fetch {weights.url} and put it there")
    return weights  # torchvision loads it from that cache file, without a download


def pooled_backbone(arch: str, pretrained: bool = False) -> tuple[nn.Module, int]:
    """`arch` without its classifier: (module giving pooled features, feature width).

    VGG's own head is 4096-wide fully connected layers on 7x7 features; as in the
    reference ensemble (Keras VGG19 with global average pooling) its convolutional
    features are average-pooled instead: 512 wide.
    """
    model = build(arch, 1, pretrained)
    if arch.startswith("vgg"):
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        model.classifier = nn.Identity()
        return model, 512  # every VGG ends in 512 channels
    head, linear = _last_linear(model)
    _replace(model, head, nn.Identity())
    return model, linear.in_features


class ConcatNet(nn.Module):
    """Several backbones' pooled features, concatenated, under one linear head."""

    def __init__(self, backbones: list[tuple[nn.Module, int]], num_outputs: int):
        super().__init__()
        self.backbones = nn.ModuleList(m for m, _ in backbones)
        self.classifier = nn.Linear(sum(d for _, d in backbones), num_outputs)

    def forward(self, x):
        return self.classifier(torch.cat([torch.flatten(b(x), 1) for b in self.backbones], 1))


class EnsembleTeacher(nn.Module):
    """Separately trained teachers, their predictions averaged.

    Outputs log(mean softmax) (multilabel: logit(mean sigmoid)), so the task's usual
    probabilities of this output are exactly the members' averaged probabilities.
    """

    def __init__(self, members: list[nn.Module], multilabel: bool):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.multilabel = multilabel

    def forward(self, x):
        # A plain sum of probabilities: OpenVINO mis-shaped stack + logsumexp (a scalar output).
        squash = torch.sigmoid if self.multilabel else (lambda z: torch.softmax(z, dim=1))
        p = sum(squash(m(x)) for m in self.members) / len(self.members)
        if self.multilabel:
            p = p.clamp(1e-7, 1 - 1e-7)
            return torch.log(p) - torch.log1p(-p)
        return torch.log(p.clamp_min(1e-12))


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    name, linear = None, None
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            name, linear = n, m
    if linear is None:
        raise ValueError(f"{type(model).__name__}: no linear classifier to replace")
    return name, linear


def _get(model: nn.Module, dotted: str) -> nn.Module:
    return model.get_submodule(dotted)


def _replace(model: nn.Module, dotted: str, new: nn.Module) -> None:
    parent, _, leaf = dotted.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def load_checkpoint(arch: str, num_outputs: int, path: str) -> nn.Module:
    """The user's own weights for `arch`. weights_only=True: loading runs no code.

    The file is sniffed first (`bench.inputs.check_checkpoint_file`), so an empty file,
    an LFS pointer or a cut copy is named as such rather than as torch's unpickling
    internals; a state_dict that does not fit names its first differing tensor.
    """
    check_checkpoint_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: teacher checkpoint not found") from None
    except Exception as exc:  # pickle errors, non-weights content, cut legacy files
        if "weights only load failed" in str(exc).lower():
            found = re.search(r"WeightsUnpickler error:\s*(.+?)(?: was not an allowed|\n\n|$)",
                              str(exc), re.S)
            detail = one_line(found.group(1) if found else "", 100) or "Python objects"
            raise ValueError(f"{path}: not a weights-only PyTorch checkpoint: it holds Python "
                             f"objects, not only tensors ({detail}); save model.state_dict() "
                             "instead") from None
        kind = "zip archive" if sniff(path) == "zip" else "legacy pickle"
        raise ValueError(f"{path}: truncated or corrupt checkpoint ({kind}; {reason(exc, 120)})"
                         ) from None
    state = _unwrap_state(state)
    if not isinstance(state, dict) or not state:
        found = "an empty mapping" if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path}: expected a state_dict (a mapping of tensor names to "
                         f"tensors), found {found}")
    if not any(isinstance(v, torch.Tensor) for v in state.values()):
        keys = ", ".join(map(str, list(state)[:5])) + (", ..." if len(state) > 5 else "")
        raise ValueError(f"{path}: no tensors at its top level (keys: {keys}); expected a "
                         "state_dict, or a training checkpoint holding one under 'state_dict' "
                         "or 'model'")
    model = build(arch, num_outputs)
    problem = state_dict_mismatch(model.state_dict(), state)
    if problem:
        raise ValueError(f"{path}: does not fit {arch} with {num_outputs} outputs: {problem}")
    model.load_state_dict(state)
    return model


def _unwrap_state(state):
    """A training checkpoint's weights ({'state_dict': ...} or {'model': ...}), without
    DataParallel's 'module.' prefix: the two shapes of state_dict users most often have."""
    for k in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(k), dict):
            state = state[k]
            break
    if isinstance(state, dict) and state and all(isinstance(k, str) and k.startswith("module.")
                                                 for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def state_dict_mismatch(expected: dict, given: dict, show: int = 3) -> str | None:
    """Why `given` does not load into a model whose state_dict is `expected`, in one line:
    the first tensor of another shape (both shapes), then missing and unexpected keys
    (the first few and their counts); None when it fits."""
    def shape(v):
        return list(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__

    def few(keys):
        more = f", ... {len(keys) - show} more" if len(keys) > show else ""
        return ", ".join(keys[:show]) + more

    parts = []
    differ = [k for k in expected if k in given and shape(given[k]) != shape(expected[k])]
    if differ:
        k = differ[0]
        n = len(differ) - 1
        more = f" (and {n} more tensor{'s' * (n > 1)} of another shape)" if n else ""
        parts.append(f"{k}: checkpoint {shape(given[k])}, model {shape(expected[k])}{more}")
    missing = [k for k in expected if k not in given]
    unexpected = [str(k) for k in given if k not in expected]
    if missing:
        parts.append(f"{plural(len(missing), 'missing key')} ({few(missing)})")
    if unexpected:
        parts.append(f"{plural(len(unexpected), 'unexpected key')} ({few(unexpected)})")
    if missing and unexpected and len(missing) == len(expected):
        parts.append("no key in common: a checkpoint of another architecture?")
    return "; ".join(parts) or None


def clone(model: nn.Module) -> nn.Module:
    """A deep copy: methods work on this so they never mutate what they were given."""
    return copy.deepcopy(model)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(total, nonzero) trainable parameters (`nn.Parameter`s), what papers count.

    Batch-norm running statistics are buffers, not parameters: see `count_buffers`. A
    quantized model holds packed weights instead of parameters, so count its float parent.
    """
    total = nonzero = 0
    for p in model.parameters():
        total += p.numel()
        nonzero += int(torch.count_nonzero(p.detach()))
    return total, nonzero


def count_buffers(model: nn.Module) -> int:
    """Floating-point buffer elements (batch-norm running means and variances)."""
    return sum(b.numel() for b in model.buffers() if b.is_floating_point())


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
    macs, _ = tp.utils.count_ops_and_params(model.eval(), example)
    return int(macs)

