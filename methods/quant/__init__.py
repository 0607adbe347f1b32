"""int8 post-training quantization, dynamic and static, with one realisation per backend.

int8 means something different on each runtime, so the method keeps those meanings
beside itself, as NNCF's algorithms keep their per-backend adapters:

  torch_fx.py      PyTorch (TorchScript): FX graph-mode static PTQ (x86 qconfig) / quantize_dynamic
  torch_pt2e.py    PyTorch on torch.export (.pt2, AOTInductor): pt2e, X86InductorQuantizer
  onnxruntime.py   ONNX Runtime's own quantizers on the fp32 ONNX export
  openvino.py      NNCF on the OpenVINO model
  executorch.py    ExecuTorch: the XNNPACK quantizer (pt2e) on the torch.export graph
  litert.py        LiteRT: litert-torch's PT2EQuantizer, handed to its converter

`apply` makes the PyTorch realisation (the reference the bench measures parameters and
weights on) and names the others; each backend's adapter runs when the model is deployed
there (bench.backends.deploy). A backend without an adapter gets an `n/a` row saying so.
"""

from __future__ import annotations

import time
from dataclasses import replace

from torch import nn

from methods import register
from methods.base import Artifact, Context, Method, Param
from methods.quant import accuracy, executorch, litert, onnxruntime, openvino, torch_fx, torch_pt2e


@register
class DynamicQuant(Method):
    name = "quant.dynamic"
    summary = ("int8 dynamic quantization of the layers the backend supports (PyTorch: Linear "
               "only, so a conv net keeps its convolutions in fp32)")
    terminal = True

    def apply(self, parent: Artifact, ctx: Context) -> Artifact:
        start = time.perf_counter()
        q = torch_fx.dynamic(parent.float_module)
        n_linear = sum(isinstance(m, nn.Linear) for m in parent.float_module.modules())
        n_conv = sum(isinstance(m, nn.Conv2d) for m in parent.float_module.modules())
        return Artifact(
            name=self.name, arch=parent.arch, module=q, float_module=parent.float_module,
            precision="int8",
            realisations={"torch": torch_fx.as_made, "onnxruntime": onnxruntime.dynamic,
                          "openvino": openvino.NO_DYNAMIC, "executorch": executorch.dynamic,
                          "litert": litert.dynamic, "torch-export": torch_pt2e.dynamic,
                          "torch-aoti": torch_pt2e.dynamic},
            notes=(f"torch dynamic int8 quantizes Linear layers only: {n_linear} Linear quantized, "
                   f"{n_conv} Conv2d left in fp32",),
            seconds=parent.seconds + time.perf_counter() - start,
        )


@register
class StaticQuant(Method):
    name = "quant.static"
    summary = ("int8 static post-training quantization calibrated on a training subset "
               "(PyTorch: FX graph mode, x86 qconfig; ONNX Runtime: QDQ; OpenVINO: NNCF; "
               "ExecuTorch and LiteRT: their pt2e quantizers)")
    params = (Param("calibration_size", int, 128, "training images used for calibration",
                    bounds="[1, inf)"),
              Param("per_channel", bool, True, "one int8 scale per output channel of a weight "
                    "(false: one per tensor)"),
              accuracy.DropParam("max_drop", float, accuracy.OFF,
                                 "accuracy control: the largest validation AUC drop (absolute, "
                                 "in [0, 1)) against the float parent; the most sensitive layers "
                                 "return to float until it holds (torch, onnxruntime, openvino; "
                                 "OpenVINO by NNCF's quantize_with_accuracy_control). -1: off"))
    terminal = True
    #: its PyTorch realisation (FX int8, fused ConvReLU2d) fails to unpickle in torch
    #: 2.14 ("'ConvReLU2d' object has no attribute '_modules'", seen through Ray); the
    #: calibration is seconds, so a cluster run makes it in the bench process
    travels = False

    def apply(self, parent: Artifact, ctx: Context, calibration_size: int,
              per_channel: bool = True, max_drop: float = accuracy.OFF) -> Artifact:
        start = time.perf_counter()
        control = accuracy.Control.of(ctx, max_drop)  # None when off; checks max_drop
        images = ctx.calibration_images[:calibration_size]
        notes = (f"FX post-training int8 (x86 qconfig, "
                 f"{'per-channel' if per_channel else 'per-tensor'} weights), calibrated on "
                 f"{len(images)} training images",)
        if control is None:
            q = torch_fx.static(parent.float_module, images, ctx.image_size, per_channel)
        else:
            outcome = torch_fx.controlled(parent.float_module, images, ctx.image_size,
                                          per_channel, control)
            q, notes = outcome.model, (*notes, "PyTorch FX " + outcome.note())
        adapters = {"onnxruntime": onnxruntime.static, "openvino": openvino.static,
                    "executorch": executorch.static, "litert": litert.static,
                    "torch-export": torch_pt2e.static, "torch-aoti": torch_pt2e.static}
        return Artifact(
            name=self.name, arch=parent.arch, module=q, float_module=parent.float_module,
            precision="int8",
            realisations={"torch": torch_fx.as_made,
                          **{b: _Calibrated(a, calibration_size, per_channel, control)
                             if control is None or b in _CONTROLLED else accuracy.unsupported(b)
                             for b, a in adapters.items()}},
            notes=notes,
            seconds=parent.seconds + time.perf_counter() - start,
        )


#: the backends whose static adapter takes `control` (accuracy control)
_CONTROLLED = ("onnxruntime", "openvino")


class _Calibrated:
    """A backend's static int8 adapter with the step's settings: its calibration images
    are the first `size` of the run's calibration subset (as the torch row's), its
    weights per channel or per tensor, and, where max_drop is set, its accuracy control
    (`control`: the validation split travels here, from the Context, not in ExportEnv)."""

    def __init__(self, adapter, size: int, per_channel: bool, control=None):
        self.adapter, self.size, self.per_channel = adapter, size, per_channel
        self.control = control

    def __call__(self, artifact, float_graph, env, out_dir):
        env = replace(env, calibration=env.calibration[:self.size])
        extra = {} if self.control is None else {"control": self.control}
        return self.adapter(artifact, float_graph, env, out_dir, per_channel=self.per_channel,
                            **extra)
