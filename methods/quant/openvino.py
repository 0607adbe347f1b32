"""int8 on OpenVINO: NNCF post-training quantization of the OpenVINO model.

OpenVINO has no dynamic int8 for conv nets (its dynamic quantization is a runtime option
for the fully connected layers of LLMs), so quant.dynamic has no realisation here and
its rows say why.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

from bench.backends import ExportEnv, Realised

NO_DYNAMIC = ("OpenVINO has no dynamic int8 for conv nets (its dynamic quantization is a "
              "runtime option for LLM fully connected layers); use quant.static")


def static(artifact, ov_model, env: ExportEnv, out_dir: Path,
           per_channel: bool = True) -> Realised:
    # nncf imports torch.utils.cpp_extension, which warns about CUDA_HOME on CPU.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import nncf

    nncf.set_log_level(40)  # ERROR: no progress bars in the user's terminal
    data = nncf.Dataset(list(env.calibration_batches(1)))
    # its rich progress bars ignore the log level; they draw on sys.stdout when called
    with contextlib.redirect_stdout(io.StringIO()):
        model = nncf.quantize(ov_model, data, subset_size=len(env.calibration),
                              advanced_parameters=_granularity(per_channel))
    # int8 kernels, f32 for what stays float (the backend's f32 hint)
    return Realised(model, "int8", (
        f"NNCF post-training int8 (default preset"
        f"{'' if per_channel else ', per-tensor weights'}) calibrated on "
        f"{len(env.calibration)} training images",))


def _granularity(per_channel: bool):
    """NNCF's default weights are per channel; per_channel=False asks for one scale per
    tensor through its advanced parameters."""
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        QuantizationParameters,
    )

    if per_channel:
        return None
    return AdvancedQuantizationParameters(
        weights_quantization_params=QuantizationParameters(per_channel=False))
