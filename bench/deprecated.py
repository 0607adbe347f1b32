"""The deprecated APIs this project still calls, why each stays, and the warnings each
raises, in one place: where one is called, `silenced(name)` ignores exactly those
warnings (by category and text, and module where the text alone is generic), so any
other warning, a new deprecation included, still reaches the user.

tests/deprecated/test_deprecated.py calls each API with every other warning an error: a
torch upgrade that removes one, or changes what it warns, fails there with its name.

Not listed, because they are not warnings: torchao logs a pytree deprecation through a
logger when imported (bench.backends.torch_export.quiet_torchao), and c10's own notices
in the measuring processes go to TORCH_CPP_LOG_LEVEL (bench.measuring.launch).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass


@dataclass(frozen=True)
class Notice:
    """One warning an API raises: its category, a regular expression matched at the
    start of its text, and (optional) one matched at the start of the module it is
    raised from."""

    category: type[Warning]
    message: str
    module: str = ""


@dataclass(frozen=True)
class Deprecated:
    """A deprecated API family the project calls, where, why it stays, and its warnings.
    `also`: the families it calls in turn (the TorchScript-based ONNX exporter traces
    with torch.jit), silenced with it."""

    name: str
    apis: tuple[str, ...]
    used_by: tuple[str, ...]
    why: str
    notices: tuple[Notice, ...]
    also: tuple[str, ...] = ()


FX_QUANTIZATION = Deprecated(
    name="fx-quantization",
    apis=("torch.ao.quantization.quantize_fx: prepare_fx, prepare_qat_fx, convert_fx",
          "torch.ao.quantization.quantize_dynamic, QConfigMapping, the x86 qconfig "
          "(its observers' reduce_range)",
          "torch.ao.nn.quantized modules and their quantized tensors (torch.qint8, quint8)"),
    used_by=("methods/quant/torch_fx.py (quant.static, quant.dynamic and max_drop on torch)",
             "methods/quant/qat.py (quant.qat on torch, onnxruntime, openvino)",
             "bench/backends/torch_backend.py (the FX int8 modules it traces and loads)"),
    why=("the torch rows' int8: FX int8 in TorchScript runs fbgemm/x86 kernels, 4-5x "
         "faster than fp32 here, where torchao's pt2e successor (measured as torch-export "
         "and torch-aoti) runs no faster than its own fp32 (docs/measuring.md); quant.qat's "
         "QDQ export for ONNX Runtime and OpenVINO reads the FX int8 module"),
    notices=(Notice(DeprecationWarning, r"torch\.ao\.quantization is deprecated"),
             Notice(UserWarning, r"Please use quant_min and quant_max to specify the range "
                                 r"for observers"),
             Notice(UserWarning, r"torch\.quantize_per_tensor, torch\.quantize_per_channel and "
                                 r"other quantized tensor creation functions")))

TORCHSCRIPT = Deprecated(
    name="torchscript",
    apis=("torch.jit.trace", "torch.jit.save", "torch.jit.load"),
    used_by=("bench/backends/torch_backend.py (the torch backend's file, and its loading)",),
    why=("one self-contained file that loads without torchvision and without running "
         "Python code from disk, and holds FX int8 models as well as float and pruned ones "
         "(docs/measuring.md: TorchScript or torch.export)"),
    notices=(Notice(FutureWarning, r"`torch\.jit\.(trace|trace_method|save|load)` is "
                                   r"deprecated"),))

TORCHSCRIPT_ONNX = Deprecated(
    name="torchscript-onnx",
    apis=("torch.onnx.export(dynamo=False)",
          "torch.onnx.register_custom_op_symbolic, symbolic_helper, symbolic_opset9"),
    used_by=("bench/backends/onnx_export.py (the fp32 ONNX file ONNX Runtime and OpenVINO "
             "deploy)",
             "methods/quant/qat.py (quant.qat's FX int8 module as QDQ ONNX, its quantized "
             "batch norm registered as a custom symbolic)"),
    why=("0.2-0.5 s and one file with a dynamic batch, where the dynamo exporter took 7-9 "
         "s, wrote the weights to a second file and fixed the batch at 1; and it writes "
         "quant.qat's FX int8 module as QuantizeLinear/DequantizeLinear with its trained "
         "scales"),
    notices=(Notice(DeprecationWarning, r"You are using the legacy TorchScript-based ONNX "
                                        r"export"),
             Notice(DeprecationWarning, r"The feature will be removed\. Please remove usage of "
                                        r"this function", module=r"torch\.onnx\.")),
    also=("torchscript",))

#: every deprecated API family the project calls, by name
CATALOGUE: dict[str, Deprecated] = {d.name: d for d in (FX_QUANTIZATION, TORCHSCRIPT,
                                                        TORCHSCRIPT_ONNX)}


def notices(*names: str) -> list[Notice]:
    """The warnings of the named families and of those they call in turn."""
    out: list[Notice] = []
    for name in names:
        family = CATALOGUE[name]  # a KeyError names an unlisted family
        out += [*family.notices, *notices(*family.also)]
    return list(dict.fromkeys(out))


@contextlib.contextmanager
def silenced(*names: str):
    """Ignore the warnings of the named deprecated API families (CATALOGUE) inside the
    block, and only those: every other warning goes on as the caller's filters say."""
    with warnings.catch_warnings():
        for notice in notices(*names):
            warnings.filterwarnings("ignore", message=notice.message, category=notice.category,
                                    module=notice.module)
        yield

