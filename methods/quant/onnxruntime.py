"""int8 on ONNX Runtime: its own quantizers on the fp32 ONNX export.

Settings measured on this CPU (STACK-NOTES): static QDQ with uint8 activations and
per-channel int8 weights was about 1.7x faster than fp32, while the default int8
activations ran slower than fp32; dynamic quantization of convolutions (ConvInteger)
was 10-15x slower than fp32, so dynamic is restricted to MatMul/Gemm, which on a conv
net is only the classifier, and the row says so.
"""

from __future__ import annotations

from pathlib import Path

from bench.backends import ExportEnv, Realised


def static(artifact, float_onnx: Path, env: ExportEnv, out_dir: Path,
           per_channel: bool = True) -> Realised:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from bench.backends.onnxruntime_backend import quiet

    out = Path(out_dir) / "model.onnx"
    pre = env.work_dir / "onnx" / f"{Path(out_dir).parent.name}-pre.onnx"
    with quiet():
        # Symbolic shape inference is for dims other than batch (1.9 s vs 0.15 s on
        # DenseNet here); ONNX shape inference covers a CNN with a dynamic batch.
        quant_pre_process(str(float_onnx), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), _CalibrationReader(env), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
    return Realised(out, "int8", (
        f"ONNX Runtime static QDQ int8 (uint8 activations, "
        f"{'per-channel' if per_channel else 'per-tensor'} int8 weights, MinMax) "
        f"calibrated on {len(env.calibration)} training images",))


def dynamic(artifact, float_onnx: Path, env: ExportEnv, out_dir: Path) -> Realised:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from bench.backends.onnxruntime_backend import quiet

    out = Path(out_dir) / "model.onnx"
    with quiet():
        quantize_dynamic(str(float_onnx), str(out), op_types_to_quantize=["MatMul", "Gemm"],
                         weight_type=QuantType.QInt8)
    return Realised(out, "int8", (
        "ONNX Runtime dynamic int8 restricted to MatMul/Gemm (its ConvInteger ran 10-15x "
        "slower than fp32 here): convolutions stay fp32",))


class _CalibrationReader:
    """onnxruntime.quantization.CalibrationDataReader over the run's calibration subset."""

    def __init__(self, env: ExportEnv):
        self._batches = iter(env.calibration_batches(16))

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {"input": batch}

    def rewind(self):  # part of the reader protocol; one pass is all MinMax needs
        pass
