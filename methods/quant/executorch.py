"""int8 on ExecuTorch: the XNNPACK quantizer (pt2e, per-channel symmetric int8 weights).

static: int8 activations calibrated on the run's calibration subset, every convolution
and linear layer the quantizer annotates. dynamic: activations quantized per call, for
the layers XNNPACK's dynamic int8 patterns cover (fewer than static: 35 of 52
convolutions of MobileNetV2 here); the row counts which, the rest stay fp32.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bench.backends import ExportEnv, Realised
from methods.quant import pt2e


def static(artifact, float_module, env: ExportEnv, out_dir: Path) -> Realised:
    converted = _quantize(float_module, env, dynamic=False)
    return Realised(_export(converted, env), "int8", (
        f"XNNPACK quantizer static int8 (per-channel symmetric weights, pt2e) calibrated on "
        f"{len(env.calibration)} training images; int8 weights: {pt2e.coverage(converted)}",))


def dynamic(artifact, float_module, env: ExportEnv, out_dir: Path) -> Realised:
    converted = _quantize(float_module, env, dynamic=True)
    return Realised(_export(converted, env), "int8", (
        f"XNNPACK quantizer dynamic int8 (per-channel weights, activations quantized per "
        f"call); int8 layers: {pt2e.coverage(converted)}",))


def _quantize(float_module, env: ExportEnv, dynamic: bool):
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic))
    return pt2e.quantize(float_module, quantizer, env)


def _export(converted, env: ExportEnv):
    from bench.backends.torch_export import export_program

    return export_program(converted, env.image_size)
