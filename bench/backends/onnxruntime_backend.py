"""ONNX Runtime backend: the fp32 ONNX export, or ONNX Runtime's own int8 quantizers.

Settings measured on this CPU (STACK-NOTES): static QDQ with uint8 activations and
per-channel int8 weights was about 1.7x faster than fp32, while the default int8
activations ran slower than fp32; dynamic quantization of convolutions (ConvInteger)
was 10-15x slower than fp32, so dynamic is restricted to MatMul/Gemm, which on a conv
net is only the classifier, and the row says so.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
from pathlib import Path

import numpy as np

from bench.backends import Backend, Deployed, ExportEnv, NotApplicable


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    deploys = "ONNX (torch.onnx.export, opset 17, one file); int8 by ONNX Runtime's own quantizers"
    settings = ("CPUExecutionProvider, intra_op_num_threads={threads}, inter_op_num_threads=1, "
                "sequential, ORT_ENABLE_ALL")

    def export(self, artifact, out_dir: Path, env: ExportEnv, precision: str = "fp32") -> Deployed:
        import onnxruntime as ort

        if env.device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise NotApplicable("--device cuda: this ONNX Runtime has no CUDA provider "
                                "(install onnxruntime-gpu)")
        ort.set_default_logger_severity(3)
        float_path = env.float_onnx(artifact.float_module)
        out = Path(out_dir) / "model.onnx"
        if precision == "bf16":
            raise NotApplicable("ONNX Runtime's CPU and CUDA providers have no bf16 convolution "
                                "kernels; use OpenVINO or PyTorch for bf16")
        if precision == "fp16":
            return _float16(float_path, out, env.device)
        if artifact.quantization is None:
            shutil.copyfile(float_path, out)
            return Deployed([out], "fp32")
        from onnxruntime.quantization import (
            QuantFormat,
            QuantType,
            quantize_dynamic,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process

        with _quiet():
            if artifact.quantization == "static":
                pre = env.work_dir / "onnx" / f"{out_dir.parent.name}-pre.onnx"
                # Symbolic shape inference is for dims other than batch (1.9 s vs 0.15 s on
                # DenseNet here); ONNX shape inference covers a CNN with a dynamic batch.
                quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
                quantize_static(str(pre), str(out), _CalibrationReader(env), quant_format=QuantFormat.QDQ,
                                per_channel=True, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8)
                return Deployed([out], "int8", [
                    f"ONNX Runtime static QDQ int8 (uint8 activations, per-channel int8 weights, "
                    f"MinMax) calibrated on {len(env.calibration)} training images"])
            if artifact.quantization == "dynamic":
                quantize_dynamic(str(float_path), str(out), op_types_to_quantize=["MatMul", "Gemm"],
                                 weight_type=QuantType.QInt8)
                return Deployed([out], "int8", [
                    "ONNX Runtime dynamic int8 restricted to MatMul/Gemm (its ConvInteger ran 10-15x "
                    "slower than fp32 here): convolutions stay fp32"])
        raise NotApplicable(f"no ONNX Runtime realisation of {artifact.quantization!r} quantization")

    def load(self, files, threads, device="cpu", options=None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError("--device cuda: this ONNX Runtime has no CUDA provider")
            providers.insert(0, "CUDAExecutionProvider")
        session = ort.InferenceSession(str(files[0]), so, providers=providers)
        input_name = session.get_inputs()[0].name

        def predict(x: np.ndarray) -> np.ndarray:
            return session.run(None, {input_name: x})[0]

        return predict


def _float16(float_path: Path, out: Path, device: str) -> Deployed:
    """fp16 weights and arithmetic, float32 inputs and outputs (keep_io_types)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with _quiet():
        model = convert_float_to_float16(onnx.load(str(float_path)), keep_io_types=True)
    onnx.save(model, str(out))
    note = "ONNX Runtime fp16 (onnxruntime.transformers.float16, float32 inputs and outputs)"
    if device != "cuda":
        # Measured here: MobileNetV2 fp16 ran 3.6x slower than fp32 on the CPU provider,
        # which runs nodes lacking fp16 kernels in fp32 behind Cast nodes it inserts.
        note += ("; the CPU provider has fp16 kernels for few operators and runs the rest in "
                 "fp32 behind inserted Casts: mixed precision, usually slower than fp32")
    return Deployed([out], "fp16", [note])


class _CalibrationReader:
    """onnxruntime.quantization.CalibrationDataReader over the run's calibration subset."""

    def __init__(self, env: ExportEnv):
        self._batches = iter(env.calibration_batches(16))

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {"input": batch}

    def rewind(self):  # part of the reader protocol; one pass is all MinMax needs
        pass


@contextlib.contextmanager
def _quiet():
    """quant_pre_process floods warnings on DenseNet ('Axis 1 is out-of-range'): harmless."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)
