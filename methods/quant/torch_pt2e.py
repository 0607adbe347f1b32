"""int8 on PyTorch's torch.export path (the torch-export and torch-aoti backends): pt2e
with torchao's X86InductorQuantizer, the quantizer PyTorch documents for x86 CPUs.

static: per-channel int8 weights and int8 activations calibrated on the run's
calibration subset. dynamic: its dynamic config (activations quantized per call); the
row counts the layers it gave int8 weights.
Run eagerly from a `.pt2` (torch-export), the int8 graph executes quantize/dequantize
pairs around fp32 kernels; AOTInductor (torch-aoti) fuses them into int8 kernels.
"""

from __future__ import annotations

from pathlib import Path

from bench.backends import ExportEnv, Realised
from methods.quant import pt2e


def static(artifact, float_module, env: ExportEnv, out_dir: Path) -> Realised:
    converted = _quantize(float_module, env, dynamic=False)
    return Realised(_export(converted, env), "int8", (
        f"pt2e X86InductorQuantizer static int8 (per-channel weights) calibrated on "
        f"{len(env.calibration)} training images; int8 weights: {pt2e.coverage(converted)}",))


def dynamic(artifact, float_module, env: ExportEnv, out_dir: Path) -> Realised:
    converted = _quantize(float_module, env, dynamic=True)
    return Realised(_export(converted, env), "int8", (
        f"pt2e X86InductorQuantizer dynamic int8; int8 layers: {pt2e.coverage(converted)}",))


def _quantize(float_module, env: ExportEnv, dynamic: bool):
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86

    config = x86.get_default_x86_inductor_quantization_config(is_dynamic=dynamic)
    return pt2e.quantize(float_module, x86.X86InductorQuantizer().set_global(config), env)


def _export(converted, env: ExportEnv):
    from bench.backends.torch_export import export_program

    return export_program(pt2e.without_unused_weights(converted), env.image_size)
