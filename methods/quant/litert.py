"""int8 on LiteRT: litert-torch's own PT2EQuantizer (per-channel symmetric int8 weights),
applied on the torch.export graph and handed to its converter as a QuantConfig.

static: int8 activations calibrated on the run's calibration subset; the `.tflite` then
takes and returns int8 tensors (the backend converts at the boundary). dynamic: weights
int8, activations quantized per call by the kernels; the row counts the layers covered.
"""

from __future__ import annotations

from pathlib import Path

from bench.backends import ExportEnv, Realised
from bench.backends.litert_backend import convert, converter
from methods.quant import pt2e


def static(artifact, float_module, env: ExportEnv, out_dir: Path,
           per_channel: bool = True) -> Realised:
    path, covered = _convert(float_module, env, Path(out_dir), dynamic=False,
                             per_channel=per_channel)
    return Realised(path, "int8", (
        f"litert-torch PT2EQuantizer static int8 "
        f"({'per-channel' if per_channel else 'per-tensor'} symmetric weights) calibrated "
        f"on {len(env.calibration)} training images, int8 input/output; int8 weights: "
        f"{covered}",))


def dynamic(artifact, float_module, env: ExportEnv, out_dir: Path) -> Realised:
    path, covered = _convert(float_module, env, Path(out_dir), dynamic=True)
    return Realised(path, "int8", (
        f"litert-torch PT2EQuantizer dynamic int8 (per-channel weights, activations "
        f"quantized per call); int8 layers: {covered}",))


def _convert(float_module, env: ExportEnv, out_dir: Path, dynamic: bool,
             per_channel: bool = True):
    converter()  # imported quietly first
    from litert_torch.quantize.pt2e_quantizer import (
        PT2EQuantizer,
        get_symmetric_quantization_config,
    )
    from litert_torch.quantize.quant_config import QuantConfig

    quantizer = PT2EQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=per_channel, is_dynamic=dynamic))
    converted = pt2e.quantize(float_module, quantizer, env, fold=False)
    path = out_dir / "model.tflite"
    convert(converted, env, path, QuantConfig(pt2e_quantizer=quantizer))
    return path, pt2e.coverage(converted)
