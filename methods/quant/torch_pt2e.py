"""int8 on PyTorch's torch.export path (the torch-export and torch-aoti backends): pt2e
with torchao's X86InductorQuantizer, the quantizer PyTorch documents for x86 CPUs.

static: per-channel int8 weights and int8 activations calibrated on the run's
calibration subset. dynamic: its dynamic config (activations quantized per call); the
row counts the layers it gave int8 weights. Run eagerly from a `.pt2` (torch-export),
the int8 graph executes quantize/dequantize pairs around fp32 kernels (measured 2.7x
slower than fp32 for DenseNet-121 here); AOTInductor (torch-aoti) compiles it.
"""

from __future__ import annotations

from pathlib import Path

from bench.backends import ExportEnv, NotApplicable, Realised
from bench.backends.torch_export import quiet_torchao
from methods.quant import pt2e


def static(artifact, float_module, env: ExportEnv, out_dir: Path,
           per_channel: bool = True) -> Realised:
    if not per_channel:
        raise NotApplicable("torchao's X86InductorQuantizer has per-channel weights only")
    return pt2e.realise(float_module, env, _quantizer(False), "pt2e X86InductorQuantizer", False)


def dynamic(artifact, float_module, env: ExportEnv, out_dir: Path) -> Realised:
    return pt2e.realise(float_module, env, _quantizer(True), "pt2e X86InductorQuantizer", True)


def _quantizer(dynamic: bool):
    quiet_torchao()
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86

    config = x86.get_default_x86_inductor_quantization_config(is_dynamic=dynamic)
    return x86.X86InductorQuantizer().set_global(config)
