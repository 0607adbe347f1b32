"""Does a deployed int8 file compute what the PyTorch int8 model it exports computes?

`quant.qat` trains one FX int8 model and deploys it as it is on ONNX Runtime and OpenVINO
(its QDQ export): the same int8 arithmetic, up to each runtime's rounding. A runtime that
computes something else is a broken export, not a result: OpenVINO 2026.4's
`convert_model` did so with ReLU6's requantizing clips (issue 29), where the row's AUC fell
0.023 below ONNX Runtime's on the same file. `deploy` checks each such file on the
calibration images and fails the row, in one line, where it disagrees with its model
by more than a runtime's rounding does (TOLERANCE).
"""

from __future__ import annotations

import numpy as np
import torch

#: the largest relative RMS difference of the logits (RMS of the difference over RMS of
#: the model's own logits, centred) a deployed file may have from the int8 model it
#: exports. Measured on the default data's kd+quant.qat, seed 0, its 128 calibration
#: images (Intel Xeon with AMX, issue 29's session): the same int8 model on ONNX Runtime
#: 0.063 (relu6=clip) and 0.104 (relu6=relu), on OpenVINO 0.061 and 0.085 (rounding,
#: compounded over 50 layers); OpenVINO's convert_model of the clip graph 0.281; static
#: int8 (FX) from its fp32 model 0.062. Between the two kinds, with room for rounding.
TOLERANCE = 0.2


class RenderingError(RuntimeError):
    """The deployed file disagrees with the model it exports."""


def relative_rms(got: np.ndarray, ref: np.ndarray) -> float:
    """RMS(got - ref) / RMS(ref - its mean): 0 for the same logits, about 1.4 for unrelated ones."""
    ref = np.asarray(ref, np.float64)
    scale = float(np.sqrt(np.mean((ref - ref.mean()) ** 2))) or 1.0
    return float(np.sqrt(np.mean((np.asarray(got, np.float64) - ref) ** 2))) / scale


def check(backend, deployed, module, env) -> float:
    """The deployed file's logits on the calibration images against `module`'s; raises
    RenderingError beyond TOLERANCE, else returns the difference."""
    batches = list(env.calibration_batches(64))
    x = np.concatenate(batches)
    predict = backend.load([str(f) for f in deployed.files], 1, env.device, deployed.options)
    got = predict(x)
    with torch.no_grad():
        ref = torch.cat([module(torch.from_numpy(b)) for b in batches]).numpy()
    diff = relative_rms(got, ref)
    if diff > TOLERANCE:
        raise RenderingError(
            f"parity: {backend.name} computes other logits than the PyTorch int8 model it "
            f"deploys (relative RMS difference {diff:.3f} > {TOLERANCE:g} on "
            f"{len(x)} calibration images): a broken export, not a result")
    return diff
