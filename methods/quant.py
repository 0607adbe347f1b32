"""int8 post-training quantization, dynamic and static.

On PyTorch, static is FX graph-mode PTQ (x86 qconfig) calibrated on the run's
calibration subset of the training split; dynamic is `quantize_dynamic`, which only
quantizes Linear layers: on a conv net that is the classifier alone, and the row says so.
Both APIs are deprecated upstream in favour of torchao, whose pt2e path needs
torch.compile to be fast (STACK-NOTES: slower than fp32 here), so we keep them.
"""

from __future__ import annotations

import time
import warnings

import torch
from torch import nn

from bench.models import clone
from bench.training import batches
from methods import register
from methods.base import Artifact, Context, Method, Param


@register
class DynamicQuant(Method):
    name = "quant.dynamic"
    summary = ("int8 dynamic quantization of the layers the backend supports (PyTorch: Linear "
               "only, so a conv net keeps its convolutions in fp32)")
    terminal = True

    def apply(self, parent: Artifact, ctx: Context) -> Artifact:
        start = time.perf_counter()
        model = clone(parent.float_module).eval()
        n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
        n_conv = sum(isinstance(m, nn.Conv2d) for m in model.modules())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao deprecation notices
            q = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
        return Artifact(
            name=self.name, arch=parent.arch, module=q, float_module=parent.float_module,
            precision="int8", quantization="dynamic",
            notes=(f"torch dynamic int8 quantizes Linear layers only: {n_linear} Linear quantized, "
                   f"{n_conv} Conv2d left in fp32",),
            seconds=parent.seconds + time.perf_counter() - start,
        )


@register
class StaticQuant(Method):
    name = "quant.static"
    summary = ("int8 static post-training quantization calibrated on a training subset "
               "(PyTorch: FX graph mode, x86 qconfig)")
    params = (Param("calibration_size", int, 128, "training images used for calibration"),)
    terminal = True

    def apply(self, parent: Artifact, ctx: Context, calibration_size: int) -> Artifact:
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        start = time.perf_counter()
        model = clone(parent.float_module).eval()
        example = (torch.zeros(1, 3, ctx.image_size, ctx.image_size),)
        images = ctx.calibration_images[:calibration_size]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao deprecation notices
            torch.backends.quantized.engine = "x86"
            prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), example)
            with torch.no_grad():
                for x, _, _ in batches(images, None, 32, None):
                    prepared(x)
            q = convert_fx(prepared)
        return Artifact(
            name=self.name, arch=parent.arch, module=q, float_module=parent.float_module,
            precision="int8", quantization="static",
            notes=(f"FX post-training int8 (x86 qconfig, per-channel weights), calibrated on "
                   f"{len(images)} training images",),
            seconds=parent.seconds + time.perf_counter() - start,
        )
