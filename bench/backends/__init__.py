"""Backends: adapters that deploy an Artifact to a runtime and run it.

Each backend is one module registered here by dotted path, so `import bench` imports no
runtime: a backend's module (and its runtime) is imported only when selected.

The contract, split across two processes:
  * `export(artifact, out_dir, env, precision)` runs in the bench process and writes the
    file(s) this backend would deploy; it returns a Deployed, or raises NotApplicable
    with the reason (the row then says `n/a` and why). `precision` is "fp32", or a
    lower float precision asked for with --precision (only for float artifacts). Quantization is native to each backend:
    an int8 artifact carries its fp32 parent (`float_module`), and a backend other than
    torch quantizes that parent with its own tool, calibrated on `env.calibration`.
  * `load(files, threads, device)` runs in a fresh worker process and returns a
    predictor: float32 NCHW array in, float32 logits array out.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

_BACKENDS = {
    "torch": ("bench.backends.torch_backend", "TorchBackend", "torch"),
    "onnxruntime": ("bench.backends.onnxruntime_backend", "OnnxRuntimeBackend", "onnxruntime"),
    "openvino": ("bench.backends.openvino_backend", "OpenVinoBackend", "openvino"),
}


#: float precisions --precision may add as rows of their own, beside every fp32 row
LOWER_PRECISIONS = ("bf16", "fp16")


class NotApplicable(Exception):
    """This (model, backend) cell cannot exist; the message says why."""


@dataclass
class Deployed:
    files: list[Path]
    precision: str
    notes: list[str] = field(default_factory=list)
    #: runtime settings the worker passes to `load` (e.g. OpenVINO's inference precision)
    options: dict = field(default_factory=dict)


@dataclass
class ExportEnv:
    """What every backend's export may need besides the artifact itself."""

    image_size: int
    calibration: np.ndarray  # standardised training images, (N, C, H, W)
    work_dir: Path
    device: str = "cpu"
    _onnx: dict = field(default_factory=dict)

    def calibration_batches(self, batch_size: int = 1):
        x = self.calibration
        x = np.repeat(x, 3, axis=1) if x.shape[1] == 1 else x
        for i in range(0, len(x), batch_size):
            yield np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32)

    def float_onnx(self, module) -> Path:
        """The fp32 ONNX export of `module`, made once per run and shared by backends."""
        key = id(module)
        if key not in self._onnx:
            from bench.backends.onnx_export import export_onnx

            path = self.work_dir / "onnx" / f"float-{len(self._onnx)}.onnx"
            path.parent.mkdir(parents=True, exist_ok=True)
            export_onnx(module, path, self.image_size)
            self._onnx[key] = (module, path)  # keep module alive so id() stays unique
        return self._onnx[key][1]


class Backend:
    name: ClassVar[str]
    #: what file this backend deploys and how it runs it (recorded in the manifest)
    deploys: ClassVar[str] = ""
    settings: ClassVar[str] = ""

    def describe(self, threads: int) -> dict:
        return {"deploys": self.deploys, "settings": self.settings.format(threads=threads)}

    def export(self, artifact, out_dir: Path, env: ExportEnv, precision: str = "fp32") -> Deployed:
        raise NotImplementedError

    def load(self, files: list[str], threads: int, device: str = "cpu",
             options: dict | None = None) -> Callable[[np.ndarray], np.ndarray]:
        raise NotImplementedError


def names() -> list[str]:
    return list(_BACKENDS)


def installed() -> list[str]:
    return [n for n, (_, _, runtime) in _BACKENDS.items() if importlib.util.find_spec(runtime)]


def get(name: str) -> Backend:
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(_BACKENDS)}")
    module, cls, runtime = _BACKENDS[name]
    if importlib.util.find_spec(runtime) is None:
        raise ValueError(f"backend {name!r} needs the Python package {runtime!r}, which is not installed")
    return getattr(importlib.import_module(module), cls)()
