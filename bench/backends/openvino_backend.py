"""OpenVINO backend: the fp32 ONNX export converted to IR (or a method's OpenVINO
realisation of that model, e.g. NNCF int8 in methods/quant/openvino.py), saved as IR.

Traps measured on this CPU (STACK-NOTES): OpenVINO's default inference precision here is
bf16 (fp32 outputs differed from PyTorch by 3.6e-2), so fp32 and int8 rows set
INFERENCE_PRECISION_HINT to f32; `save_model` compresses weights to fp16 by default, so
the saved IR keeps fp32 weights (compress_to_fp16=False) and the deployed file is what
runs; a compiled model's output buffer is reused by the next call, so it is copied.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.backends import (
    Backend,
    Deployed,
    ExportEnv,
    NotApplicable,
    Realised,
    register,
    telemetry,
)

PREDICT_BATCH = 64  # the worker predicts the test split in batches of this size
SOURCE = "onnx"  # converted from the shared fp32 ONNX export (recorded in the manifest)


@register
class OpenVinoBackend(Backend):
    name = "openvino"
    runtime = "openvino"
    deploys = "OpenVINO IR (.xml + .bin, fp32 weights) converted from the ONNX export; int8 by NNCF"
    settings = ("CPU, PERFORMANCE_HINT=LATENCY, NUM_STREAMS=1, INFERENCE_NUM_THREADS={threads}, "
                "INFERENCE_PRECISION_HINT=f32")

    def describe(self, threads: int) -> dict:
        return {**super().describe(threads), "converted_from": SOURCE}

    def check(self, env: ExportEnv) -> None:
        if env.device == "cuda":
            raise NotApplicable("--device cuda: OpenVINO runs on Intel CPUs/GPUs/NPUs, not CUDA")

    def float_graph(self, module, env: ExportEnv):
        telemetry.switch_off()
        import openvino as ov

        return ov.convert_model(str(env.float_onnx(module)))

    def save(self, realised: Realised, out_dir: Path, env: ExportEnv,
             precision: str = "fp32") -> Deployed:
        telemetry.switch_off()
        import openvino as ov

        hint = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}[precision]
        notes = list(realised.notes)
        if precision != "fp32":
            capability = {"bf16": "BF16", "fp16": "FP16"}[precision]
            if capability not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
                raise NotApplicable(f"this CPU has no {precision} arithmetic (OpenVINO CPU "
                                    f"capabilities lack {capability}); it would run in f32")
            notes.append(f"OpenVINO INFERENCE_PRECISION_HINT={hint}: the CPU plugin computes "
                         f"in {precision}")
        model = realised.graph
        # A static batch-1 IR, as a batch-1 edge deployment ships it: with the ONNX file's
        # dynamic batch the CPU plugin ran DenseNet-121 ~20% slower here than
        # benchmark_app, which reshapes to static before compiling.
        model.reshape([1, 3, env.image_size, env.image_size])
        xml = Path(out_dir) / "model.xml"
        # fp16 rows deploy fp16 weights (half the file); fp32 and bf16 rows keep fp32 weights
        # (OpenVINO's IR has no bf16 weight storage; the plugin converts them on load). An
        # int8 graph keeps f32 for what stays float (the f32 hint).
        ov.save_model(model, str(xml), compress_to_fp16=precision == "fp16")
        return Deployed([xml, xml.with_suffix(".bin")],
                        realised.precision if precision == "fp32" else precision, notes,
                        options={"inference_precision": hint})

    def load(self, files, threads, device="cpu", options=None):
        telemetry.switch_off()
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints

        if device != "cpu":
            raise RuntimeError(f"--device {device}: the OpenVINO backend runs on the CPU only")
        options = options or {}
        config = {
            hints.performance_mode: hints.PerformanceMode.LATENCY,
            props.num_streams: 1,
            props.inference_num_threads: threads,
            hints.inference_precision: options.get("inference_precision", "f32"),
        }
        core = ov.Core()
        compiled = core.compile_model(str(files[0]), "CPU", config)
        request = compiled.create_infer_request()
        output = compiled.output(0)
        batched = {}  # a batch-64 compilation of the same file, made on first use

        def infer(x: np.ndarray) -> np.ndarray:
            # Zero-copy in and out (the least Python overhead), then copy: the output
            # buffer is reused by the next call.
            return request.infer({0: x}, share_inputs=True, share_outputs=True)[output].copy()

        def infer_batch(x: np.ndarray) -> np.ndarray:
            """Predicting the test split (not timed): the deployed IR reshaped to batch 64,
            about 3x faster than 64 batch-1 calls for DenseNet-121 here."""
            if not batched:
                model = core.read_model(str(files[0]))
                model.reshape([PREDICT_BATCH, *x.shape[1:]])
                big = core.compile_model(model, "CPU", config)
                batched.update(request=big.create_infer_request(), output=big.output(0))
            n = len(x)
            padded = np.zeros((PREDICT_BATCH, *x.shape[1:]), np.float32)
            padded[:n] = x
            out = batched["request"].infer({0: padded})[batched["output"]]
            return np.array(out[:n])

        def predict(x: np.ndarray) -> np.ndarray:
            if len(x) == 1:
                return infer(x)
            if len(x) <= PREDICT_BATCH:
                return infer_batch(x)
            return np.concatenate([infer_batch(x[i:i + PREDICT_BATCH])
                                   for i in range(0, len(x), PREDICT_BATCH)])

        return predict
