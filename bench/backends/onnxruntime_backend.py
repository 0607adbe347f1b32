"""ONNX Runtime backend: deploys an ONNX graph (the shared fp32 export, or what a
method's ONNX Runtime realisation made of it, e.g. methods/quant/onnxruntime.py).

fp16 rows are converted here (a deployment setting, not a method): the CPU provider has
fp16 kernels for few operators, measured 3.6x slower than fp32 for MobileNetV2.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
from pathlib import Path

import numpy as np

from bench.backends import Backend, Deployed, ExportEnv, NotApplicable, Realised, register


@register
class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    runtime = "onnxruntime"
    deploys = ("ONNX (torch.onnx.export, opset 17, one file), or a method's ONNX Runtime "
               "realisation of it (int8: ONNX Runtime's own quantizers)")
    settings = ("CPUExecutionProvider, intra_op_num_threads={threads}, inter_op_num_threads=1, "
                "sequential, ORT_ENABLE_ALL")

    def check(self, env: ExportEnv) -> None:
        import onnxruntime as ort

        if env.device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise NotApplicable("--device cuda: this ONNX Runtime has no CUDA provider "
                                "(install onnxruntime-gpu)")
        ort.set_default_logger_severity(3)

    def float_graph(self, module, env: ExportEnv) -> Path:
        return env.float_onnx(module)

    def save(self, realised: Realised, out_dir: Path, env: ExportEnv,
             precision: str = "fp32") -> Deployed:
        out = Path(out_dir) / "model.onnx"
        if precision == "bf16":
            raise NotApplicable("ONNX Runtime's CPU and CUDA providers have no bf16 convolution "
                                "kernels; use OpenVINO or PyTorch for bf16")
        if precision == "fp16":
            return _float16(Path(realised.graph), out, env.device)
        if Path(realised.graph).resolve() != out.resolve():
            shutil.copyfile(realised.graph, out)
        return Deployed([out], realised.precision, list(realised.notes))

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

    with quiet():
        model = convert_float_to_float16(onnx.load(str(float_path)), keep_io_types=True)
    onnx.save(model, str(out))
    note = "ONNX Runtime fp16 (onnxruntime.transformers.float16, float32 inputs and outputs)"
    if device != "cuda":
        # Measured here: MobileNetV2 fp16 ran 3.6x slower than fp32 on the CPU provider,
        # which runs nodes lacking fp16 kernels in fp32 behind Cast nodes it inserts.
        note += ("; the CPU provider has fp16 kernels for few operators and runs the rest in "
                 "fp32 behind inserted Casts: mixed precision, usually slower than fp32")
    return Deployed([out], "fp16", [note])


@contextlib.contextmanager
def quiet():
    """ONNX Runtime's tools log and print freely (quant_pre_process floods warnings on
    DenseNet: 'Axis 1 is out-of-range', harmless): silence them."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)
