"""How FX QAT quantizes ReLU6 (MobileNetV2's activation), `quant.qat`'s `relu6` parameter.

FX fuses a convolution, its batch norm and a ReLU into one int8 op, which the QDQ export
turns into one QLinearConv on ONNX Runtime; it does not fuse ReLU6. Three ways:

  range  ReLU6 as ReLU fused into its convolution, the fused op's int8 output range fixed
         to [0, 6] (scale 6/255, zero point 0): the clip at 6 is the uint8 range's own
         saturation, so the function is still ReLU6 and the graph is ReLU's
  clip   ReLU6 kept: after each convolution a requantizing DequantizeLinear -> Clip ->
         QuantizeLinear, the ReLU6 sharing its input's learned range (negative half
         included)
  relu   ReLU6 replaced by ReLU with a learned range (torchvision's quantizable
         MobileNetV2): the network's function changes and the fine-tune must adapt to it
"""

from __future__ import annotations

import torch
from torch import nn

CHOICES = ("range", "clip", "relu")
SCALE = 6.0 / 255  # uint8 [0, 255] onto [0, 6]
NOTES = {  # the row's note (torch, onnxruntime and openvino deploy FX QAT's model)
    "range": "ReLU6 fused into its convolution as ReLU with the int8 output range fixed to "
             "[0, 6] (relu6=range)",
    "clip": "ReLU6 kept as a requantizing clip after its convolution (relu6=clip)",
    "relu": "ReLU6 replaced by ReLU before FX QAT (relu6=relu)",
}


def to_relu(model: nn.Module) -> nn.Module:
    """Every ReLU6 replaced by ReLU (in place): `relu`."""
    for name, child in model.named_children():
        if isinstance(child, nn.ReLU6):
            setattr(model, name, nn.ReLU(inplace=child.inplace))
        else:
            to_relu(child)
    return model


def fold(model: nn.Module) -> list[str]:
    """`range`: each ReLU6 that directly follows a convolution (through its batch norm, if
    any) in the same container replaced by ReLU (in place); the others stay. Returns the
    names of those convolutions: FX names the fused module after them."""
    fused: list[str] = []
    for prefix, parent in list(model.named_modules()):
        children = list(parent.named_children())
        for i, (name, child) in enumerate(children):
            if not isinstance(child, nn.ReLU6):
                continue
            j = i - 1
            if j >= 0 and isinstance(children[j][1], nn.BatchNorm2d):
                j -= 1  # the convolution's batch norm
            if j >= 0 and isinstance(children[j][1], nn.Conv2d):
                setattr(parent, name, nn.ReLU(inplace=child.inplace))
                fused.append(f"{prefix}.{children[j][0]}" if prefix else children[j][0])
    return fused


def fixed_range_qconfig(base):
    """`base` with its activation fake-quantization fixed to [0, 6] in uint8."""
    from torch.ao.quantization import FixedQParamsFakeQuantize, QConfig
    from torch.ao.quantization.observer import FixedQParamsObserver

    observer = FixedQParamsObserver.with_args(scale=SCALE, zero_point=0, dtype=torch.quint8,
                                              quant_min=0, quant_max=255)
    return QConfig(activation=FixedQParamsFakeQuantize.with_args(observer=observer),
                   weight=base.weight)


def learned_inputs(prepared, fused: list[str], base) -> int:
    """FX gives a node's input observers its qconfig's activation too: a fused op that
    reads the model's input (MobileNetV2's first convolution) would quantize the image on
    [0, 6]. Each fixed-range fake-quantizer that is not the output of a fused op gets
    `base`'s learned one back; returns how many."""
    from torch.ao.quantization import FixedQParamsFakeQuantize

    outputs = set(fused)
    replaced = 0
    for node in prepared.graph.nodes:
        if node.op != "call_module" or not isinstance(
                prepared.get_submodule(node.target), FixedQParamsFakeQuantize):
            continue
        source = node.args[0]
        if getattr(source, "op", None) == "call_module" and source.target in outputs:
            continue
        setattr(prepared, node.target, base.activation())
        replaced += 1
    return replaced
