"""LiteRT backend (TensorFlow Lite): the artifact converted with litert-torch (it captures
the model with torch.export and lowers it to a `.tflite` flatbuffer), run by the
`ai-edge-litert` interpreter with its default XNNPACK delegate.

Batch 1, as a phone runs it: the untimed test-split prediction calls it once per image.
A static int8 model (methods/quant/litert.py) has int8 input and output tensors; the
predictor quantizes the image and dequantizes the logits with the tensors' own scale
and zero point, inside the timed call, as an app feeding it float pixels must.
Installed as an extra (`pip install -e '.[litert]'`); not a default backend.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np

from bench.backends import Backend, Deployed, ExportEnv, NotApplicable, Realised, register
from bench.backends.native import quiet_stderr
from bench.backends.torch_export import quiet_torchao


@register
class LiteRTBackend(Backend):
    name = "litert"
    runtime = "ai_edge_litert"
    default = False
    deploys = ("LiteRT flatbuffer (.tflite) converted by litert-torch; int8 by its "
               "PT2EQuantizer (pt2e)")
    settings = "ai_edge_litert Interpreter(num_threads={threads}), default XNNPACK delegate, batch 1"

    def check(self, env: ExportEnv) -> None:
        if env.device == "cuda":
            raise NotApplicable("--device cuda: the LiteRT interpreter here runs on the CPU")
        if importlib.util.find_spec("litert_torch") is None:
            raise NotApplicable("the LiteRT converter is not installed: pip install -e '.[litert]'")

    def float_graph(self, module, env: ExportEnv):
        return module.eval()  # litert-torch converts from the torch module itself

    def save(self, realised: Realised, out_dir: Path, env: ExportEnv,
             precision: str = "fp32") -> Deployed:
        if precision != "fp32":
            raise NotApplicable(f"LiteRT {precision}: not deployed by this bench (LiteRT's "
                                "half-precision path is a GPU-delegate setting)")
        path = Path(out_dir) / "model.tflite"
        if isinstance(realised.graph, Path):  # a realisation already converted it
            if realised.graph.resolve() != path.resolve():
                shutil.copyfile(realised.graph, path)
        else:
            convert(realised.graph, env, path)
        return Deployed([path], realised.precision, list(realised.notes))

    def load(self, files, threads, device="cpu", options=None):
        from ai_edge_litert.interpreter import Interpreter

        if device != "cpu":
            raise RuntimeError(f"--device {device}: the LiteRT backend runs on the CPU only")
        with quiet_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
            interpreter = Interpreter(model_path=str(files[0]), num_threads=threads)
            interpreter.allocate_tensors()
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        to_input = _quantizer(inp)
        from_output = _dequantizer(out)

        def one(x: np.ndarray) -> np.ndarray:
            interpreter.set_tensor(inp["index"], to_input(x))
            interpreter.invoke()
            return from_output(interpreter.get_tensor(out["index"]))

        def predict(x: np.ndarray) -> np.ndarray:
            return np.concatenate([one(x[i:i + 1]) for i in range(len(x))])

        return predict


def converter():
    """litert-torch, imported quietly: its TensorFlow/absl start-up lines (oneDNN notice,
    "All log messages before absl::InitializeLog()") go to fd 2, and its converter prints
    a progress line per stage unless told not to."""
    quiet_torchao()
    with quiet_stderr():
        import litert_torch
    litert_torch.config.show_progress = False
    return litert_torch


def convert(module, env: ExportEnv, path: Path, quant_config=None) -> None:
    import torch

    litert_torch = converter()
    example = (torch.zeros(1, 3, env.image_size, env.image_size),)
    kwargs = {} if quant_config is None else {"quant_config": quant_config}
    with quiet_stderr():  # the MLIR exporter's op-count line on fd 2
        litert_torch.convert(module, example, **kwargs).export(str(path))


def _quantizer(detail: dict):
    if detail["dtype"] == np.float32:
        return lambda x: x
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return lambda x: np.clip(np.round(x / scale) + zero, info.min, info.max).astype(detail["dtype"])


def _dequantizer(detail: dict):
    if detail["dtype"] == np.float32:
        return lambda y: y.copy()  # the interpreter reuses its output buffer
    scale, zero = detail["quantization"]
    return lambda y: (y.astype(np.float32) - zero) * scale
