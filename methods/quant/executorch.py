"""int8 on ExecuTorch: the XNNPACK quantizer (pt2e, per-channel symmetric int8 weights).

static: int8 activations calibrated on the run's calibration subset, every convolution
and linear layer the quantizer annotates. dynamic: activations quantized per call, for
the layers XNNPACK's dynamic int8 patterns cover (fewer than static: 61 of 120
convolutions of DenseNet-121 here); the row counts which, the rest stay fp32.
"""

from __future__ import annotations

from pathlib import Path

from bench.backends import ExportEnv, Realised
from bench.backends.torch_export import quiet_torchao
from methods.quant import pt2e


def static(artifact, float_module, env: ExportEnv, out_dir: Path,
           per_channel: bool = True) -> Realised:
    return pt2e.realise(float_module, env, _quantizer(False, per_channel), "XNNPACK quantizer",
                        False, per_channel)


def dynamic(artifact, float_module, env: ExportEnv, out_dir: Path) -> Realised:
    return pt2e.realise(float_module, env, _quantizer(True), "XNNPACK quantizer", True)


def _quantizer(dynamic: bool, per_channel: bool = True):
    quiet_torchao()
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    return XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=per_channel, is_dynamic=dynamic))
