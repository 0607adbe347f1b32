"""int8 on ONNX Runtime: its own quantizers on the fp32 ONNX export.

Settings measured on this CPU (STACK-NOTES): static QDQ with uint8 activations and
per-channel int8 weights was about 1.7x faster than fp32, while the default int8
activations ran slower than fp32; dynamic quantization of convolutions (ConvInteger)
was 10-15x slower than fp32, so dynamic is restricted to MatMul/Gemm, which on a conv
net is only the classifier, and the row says so.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from bench.backends import ExportEnv, Realised
from bench.backends.onnxruntime_backend import quiet


def static(artifact, float_onnx: Path, env: ExportEnv, out_dir: Path,
           per_channel: bool = True, control=None) -> Realised:
    """Static QDQ int8 of the fp32 export; with `control` (methods.quant.accuracy.Control)
    the most sensitive quantized nodes are excluded (`nodes_to_exclude`) until the
    validation AUC drop is at most control.max_drop."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = Path(out_dir) / "model.onnx"
    pre = env.work_dir / "onnx" / f"{Path(out_dir).parent.name}-pre.onnx"
    notes = [f"ONNX Runtime static QDQ int8 (uint8 activations, "
             f"{'per-channel' if per_channel else 'per-tensor'} int8 weights, MinMax) "
             f"calibrated on {len(env.calibration)} training images"]
    with quiet():
        # Symbolic shape inference is for dims other than batch (1.9 s vs 0.15 s on
        # DenseNet here); ONNX shape inference covers a CNN with a dynamic batch.
        quant_pre_process(str(float_onnx), str(pre), skip_symbolic_shape=True)
        if control is None:
            _quantize(pre, out, env, per_channel)
        else:
            notes.append(_controlled(pre, out, Path(float_onnx), env, per_channel, control))
    return Realised(out, "int8", tuple(notes))


def _quantize(pre: Path, out: Path, env: ExportEnv, per_channel: bool, exclude=(),
              cache: Path | None = None) -> Path:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    reader = None if cache is not None and cache.is_file() else _CalibrationReader(env)
    quantize_static(str(pre), str(out), reader, quant_format=QuantFormat.QDQ,
                    per_channel=per_channel, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude) or None,
                    calibration_cache_path=cache)
    return out


def _controlled(pre: Path, out: Path, float_onnx: Path, env: ExportEnv, per_channel: bool,
                control) -> str:
    """methods.quant.accuracy.restore over the nodes ONNX Runtime quantizes, calibrated
    once (its calibration cache); the chosen model is written to `out`, its note returned.

    Candidates are measured in sessions as deployed (every graph optimization on): ONNX
    Runtime's basic-level optimizer quantizes the float weights of an excluded Conv that
    sits between a DequantizeLinear and a QuantizeLinear (seen in 1.32), so excluding a
    node can leave it int8 and only the measured drop tells (the tests' model needs its
    neighbour excluded too)."""
    import onnx

    from methods.quant.accuracy import restore

    with tempfile.TemporaryDirectory(dir=env.work_dir) as tmp:
        cache, candidate = Path(tmp) / "calibration.json", Path(tmp) / "candidate.onnx"
        # quant_pre_process splits HardSwish into an unnamed HardSigmoid and Mul, and
        # nodes_to_exclude goes by name: every node gets one
        model = onnx.load(str(pre))
        for node in model.graph.node:
            node.name = node.name or f"{node.output[0]}/{node.op_type}"
        pre = Path(tmp) / "pre.onnx"
        onnx.save(model, str(pre))
        # the operations ONNX Runtime quantized: those that read a DequantizeLinear output
        graph = onnx.load(str(_quantize(pre, candidate, env, per_channel, (), cache))).graph
        dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        layers = [n.name for n in graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
                  and dequantized.intersection(n.input)]
        # restore uses only the latest model and returns the last made: one file will do
        outcome = restore(control, layers,
                          lambda kept: _quantize(pre, candidate, env, per_channel, kept, cache),
                          _predict, _predict(float_onnx, control.inputs()))
        shutil.copyfile(outcome.model, out)
    return outcome.note()


def _predict(path: Path, images, batch_size: int = 64):
    import onnxruntime as ort
    import torch

    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads()  # the bench process's setting
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"input": images[i:i + batch_size]})[0]
                           for i in range(0, len(images), batch_size)])


def dynamic(artifact, float_onnx: Path, env: ExportEnv, out_dir: Path) -> Realised:
    from onnxruntime.quantization import QuantType, quantize_dynamic

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
