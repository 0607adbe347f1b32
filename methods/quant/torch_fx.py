"""int8 on PyTorch: FX graph-mode static PTQ and `quantize_dynamic`.

Dynamic quantization only quantizes Linear layers: on a conv net that is the classifier
alone, and the row says so. Both APIs are deprecated upstream in favour of torchao,
whose pt2e path needs torch.compile to be fast (STACK-NOTES: slower than fp32 here),
so we keep them; their warnings are silenced.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from bench.backends import Realised
from bench.models import clone
from bench.training import batches


def dynamic(float_module: nn.Module) -> nn.Module:
    model = clone(float_module).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao deprecation notices
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def static(float_module: nn.Module, images: np.ndarray, image_size: int,
           per_channel: bool = True) -> nn.Module:
    """FX PTQ with the x86 qconfig (per-channel weights; per_channel=False: the same
    activations, one weight scale per tensor), calibrated on `images`."""
    from torch.ao.quantization import QConfig, QConfigMapping, get_default_qconfig_mapping
    from torch.ao.quantization.observer import default_weight_observer
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    model = clone(float_module).eval()
    example = (torch.zeros(1, 3, image_size, image_size),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao deprecation notices
        torch.backends.quantized.engine = "x86"
        mapping = get_default_qconfig_mapping("x86")
        if not per_channel:
            x86 = mapping.global_qconfig
            mapping = QConfigMapping().set_global(QConfig(activation=x86.activation,
                                                          weight=default_weight_observer))
        prepared = prepare_fx(model, mapping, example)
        with torch.no_grad():
            for x, _, _ in batches(images, None, 32, None):
                prepared(x)
        return convert_fx(prepared)


def as_made(artifact, float_graph, env, out_dir) -> Realised:
    """The torch realisation is the int8 module `apply` made (the run's reference)."""
    return Realised(artifact.module, artifact.precision)
