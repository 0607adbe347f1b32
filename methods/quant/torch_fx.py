"""int8 on PyTorch: FX graph-mode static PTQ and `quantize_dynamic`.

Dynamic quantization only quantizes Linear layers: on a conv net that is the classifier
alone, and the row says so. Both APIs are deprecated upstream in favour of torchao,
whose pt2e path needs torch.compile to be fast (STACK-NOTES: slower than fp32 here),
so we keep them; their deprecation warnings, and only those, are silenced
(bench.deprecated).
"""

from __future__ import annotations

import copy
from collections import defaultdict

import numpy as np
import torch
from torch import nn

from bench import deprecated
from bench.backends import Realised
from bench.modelling.architectures import clone
from bench.modelling.training import batches


def dynamic(float_module: nn.Module) -> nn.Module:
    model = clone(float_module).eval()
    with deprecated.silenced("fx-quantization"):
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def static(float_module: nn.Module, images: np.ndarray, image_size: int,
           per_channel: bool = True) -> nn.Module:
    """FX PTQ with the x86 qconfig (per-channel weights; per_channel=False: the same
    activations, one weight scale per tensor), calibrated on `images`."""
    return _Prepared(float_module, images, image_size, per_channel).convert((), last=True)


def controlled(float_module: nn.Module, images: np.ndarray, image_size: int, per_channel: bool,
               control):
    """`static`, then its most sensitive quantized operations back in float until the
    validation AUC drop is at most control.max_drop (methods.quant.accuracy.restore): an
    Outcome whose `model` is the int8 module."""
    from bench.modelling.training import predict_logits
    from methods.quant.accuracy import restore

    fx = _Prepared(float_module, images, image_size, per_channel)
    float_logits = predict_logits(clone(float_module), control.inputs()).numpy()
    return restore(control, list(fx.operations), fx.convert,
                   lambda model, x: predict_logits(model, x).numpy(), float_logits)


class _Prepared:
    """The float module prepared and calibrated, every operation quantized; `convert(kept)`
    makes the int8 module with the operations named in `kept` (`operations`) in float,
    prepared and calibrated again with their qconfig None. (convert_fx's own None override
    is not the same: an activation between quantized neighbours stays quantized.)"""

    def __init__(self, float_module: nn.Module, images: np.ndarray, image_size: int,
                 per_channel: bool):
        from torch.ao.quantization import QConfig, QConfigMapping, get_default_qconfig_mapping
        from torch.ao.quantization.observer import default_weight_observer

        self.float_module, self.images = float_module, images
        self.example = (torch.zeros(1, 3, image_size, image_size),)
        with deprecated.silenced("fx-quantization"):
            self.mapping = get_default_qconfig_mapping("x86")
            if not per_channel:
                x86 = self.mapping.global_qconfig
                self.mapping = QConfigMapping().set_global(
                    QConfig(activation=x86.activation, weight=default_weight_observer))
        self.prepared = self._prepare(self.mapping)
        self.operations = _operations(self.prepared)  # read before the last convert

    def _prepare(self, mapping):
        from torch.ao.quantization.quantize_fx import prepare_fx

        with deprecated.silenced("fx-quantization"):
            torch.backends.quantized.engine = "x86"
            prepared = prepare_fx(clone(self.float_module).eval(), mapping, self.example)
            with torch.no_grad():
                for x, _, _ in batches(self.images, None, 32, None):
                    prepared(x)
        return prepared

    def convert(self, kept: tuple[str, ...] = (), last: bool = False) -> nn.Module:
        """`last`: every operation int8, converting the prepared module itself (no copy),
        after which only `kept` conversions can follow."""
        from torch.ao.quantization.quantize_fx import convert_fx

        if kept:
            mapping = copy.deepcopy(self.mapping)
            for name in kept:
                self.operations[name](mapping)
            prepared = self._prepare(mapping)
        else:
            prepared = self.prepared if last else copy.deepcopy(self.prepared)
        with deprecated.silenced("fx-quantization"):
            return convert_fx(prepared)


def _operations(prepared) -> dict:
    """name -> how to keep it in float (a QConfigMapping edit), for every operation whose
    output is observed, i.e. quantized: a module by its name (set_module_name), a function
    (the add of a residual, the multiply of a squeeze-excitation: on MobileNetV3 these
    and its activations cost more AUC than its convolutions) by its module, kind and
    place in that module's forward (set_module_name_object_type_order), named
    `module/kind#place`."""
    from torch.ao.quantization import FakeQuantizeBase, ObserverBase

    scope = prepared.meta["_observed_graph_module_attrs"].node_name_to_scope

    def observer(node):
        return (node.op == "call_module"
                and isinstance(prepared.get_submodule(node.target), (ObserverBase, FakeQuantizeBase)))

    seen: dict = defaultdict(int)  # (module, function) -> calls so far, as FX counts them
    out: dict = {}
    for node in prepared.graph.nodes:
        if node.op == "call_function":
            path = scope[node.name][0]
            place = seen[path, node.target]
            seen[path, node.target] += 1
            if any(observer(u) for u in node.users):
                kind = getattr(node.target, "__name__", str(node.target))
                out[f"{path or 'model'}/{kind}#{place}"] = (
                    lambda m, p=path, t=node.target, i=place:
                    m.set_module_name_object_type_order(p, t, i, None))
        elif node.op == "call_module" and not observer(node) and any(observer(u) for u in node.users):
            out[node.target] = lambda m, name=node.target: m.set_module_name(name, None)
    return out


def as_made(artifact, float_graph, env, out_dir) -> Realised:
    """The torch realisation is the int8 module `apply` made (the run's reference)."""
    return Realised(artifact.module, artifact.precision)
