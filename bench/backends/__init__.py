"""Backends: adapters that deploy a graph to a runtime and run it.

A backend knows its runtime, never a method: it turns an fp32 torch module into its own
graph (`float_graph`), deploys a graph it is given (`save`), and runs a deployed file
(`load`). What a method means on a runtime (int8 on ONNX Runtime is its own quantizer;
on OpenVINO it is NNCF) is the method's realisation, kept beside the method
(`methods/quant/`), and `deploy` is the one place where the two meet.

Backends register themselves in BACKENDS (bench.registry): the built-in modules are
imported on first use, third-party ones come from the `medbench.backends` entry point
group. A backend module must not import its runtime at import time (`import bench`
imports none): it imports it inside its methods, so `bench list` works without it.

The contract, split across two processes:
  * `deploy(backend, artifact, out_dir, env, precision)` runs in the bench process and
    writes the file(s) this backend would deploy; it returns a Deployed, or raises
    NotApplicable with the reason (the row then says `n/a` and why). A Deployed carries
    what the method's realisation on this backend cost (seconds, optimiser steps): the
    row adds it to its cost from the teacher. `precision` is
    "fp32", or a lower float precision asked for with --precision (float artifacts only).
  * `load(files, threads, device, options)` runs in a fresh worker process and returns a
    predictor: float32 NCHW array in, float32 logits array out.
"""

from __future__ import annotations

import functools
import importlib.util
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from bench.backends.onnx_export import export_onnx
from bench.registry import Registry

BACKENDS: Registry = Registry("backend", builtins=(
    "bench.backends.torch_backend", "bench.backends.onnxruntime_backend",
    "bench.backends.openvino_backend", "bench.backends.torch_export_backend",
    "bench.backends.executorch_backend", "bench.backends.litert_backend"))
register = BACKENDS.register

#: float precisions --precision may add as rows of their own, beside every fp32 row
LOWER_PRECISIONS = ("bf16", "fp16")


class NotApplicable(Exception):
    """This (model, backend) cell cannot exist; the message says why."""


@dataclass(frozen=True)
class Realised:
    """A graph in a backend's own form (a torch module, an ONNX file's path, an OpenVINO
    model), the precision it computes in, and what making it did, in words.

    `train_steps`: the optimiser steps behind it that the method's own step did not take
    (pt2e QAT trains when deployed); `reused_seconds`: the seconds of work made earlier in
    the run for another backend that it reuses (one pt2e QAT for torch-export and
    torch-aoti), so that each row costs what made its model, as a shared chain prefix does."""

    graph: Any
    precision: str = "fp32"
    notes: tuple[str, ...] = ()
    train_steps: int = 0
    reused_seconds: float = 0.0
    #: the PyTorch int8 module this graph exports as it is (quant.qat's QDQ export), which
    #: `deploy` checks the saved file against (bench.backends.rendering)
    renders: Any = None


@dataclass
class Deployed:
    files: list[Path]
    precision: str
    notes: list[str] = field(default_factory=list)
    #: runtime settings the worker passes to `load` (e.g. OpenVINO's inference precision)
    options: dict = field(default_factory=dict)
    #: what the method's realisation on this backend cost (`deploy` times it: calibration,
    #: max_drop's layer search, pt2e QAT), and the optimiser steps it trained; 0 for a float
    #: model, which every backend only exports
    seconds: float = 0.0
    train_steps: int = 0


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
            path = self.work_dir / "onnx" / f"float-{len(self._onnx)}.onnx"
            path.parent.mkdir(parents=True, exist_ok=True)
            export_onnx(module, path, self.image_size)
            self._onnx[key] = (module, path)  # keep module alive so id() stays unique
        return self._onnx[key][1]


class Realisation(Protocol):
    """A method's meaning on one backend (an int8 method's own quantizer there): called by
    `deploy` with the artifact, the backend's fp32 graph in the backend's own form (what its
    `float_graph` returns: a torch module, an ONNX file's path, an OpenVINO model), the
    export environment and the folder to write into. Every adapter in `methods/quant/`
    satisfies it (tests/methods/test_methods.py binds each one's signature)."""

    def __call__(self, artifact: Any, float_graph: Any, env: ExportEnv, out_dir: Path,
                 /) -> Realised: ...


class Backend:
    name: ClassVar[str]
    #: the Python package of its runtime: the backend is installed when it imports
    runtime: ClassVar[str] = ""
    #: what file this backend deploys and how it runs it (recorded in the manifest)
    deploys: ClassVar[str] = ""
    settings: ClassVar[str] = ""
    #: measured by a run that names no --backends (when installed). The edge runtimes are
    #: not: their exports cost more than the default run's budget (`--backends all` adds them)
    default: ClassVar[bool] = True
    #: the worker may load the file a second time with every core to predict the (untimed)
    #: test split; False where a runtime's thread pool is process-wide and cannot change
    #: under a loaded model (ExecuTorch's XNNPACK pool)
    split_threads: ClassVar[bool] = True

    def describe(self, threads: int) -> dict:
        return {"deploys": self.deploys, "settings": self.settings.format(threads=threads)}

    def check(self, env: ExportEnv) -> None:
        """Raise NotApplicable where this backend cannot run on env.device at all."""

    def float_graph(self, module, env: ExportEnv):
        """The fp32 torch module in this backend's own form (what realisations start from)."""
        raise NotImplementedError

    def save(self, realised: Realised, out_dir: Path, env: ExportEnv,
             precision: str = "fp32") -> Deployed:
        """Write the deployable file(s) of `realised`; `precision` is a --precision variant
        of a float graph (bf16, fp16) or fp32."""
        raise NotImplementedError

    def load(self, files: list[str], threads: int, device: str = "cpu",
             options: dict | None = None) -> Callable[[np.ndarray], np.ndarray]:
        raise NotImplementedError


def deploy(backend: Backend, artifact, out_dir: Path, env: ExportEnv,
           precision: str = "fp32") -> Deployed:
    """The artifact on this backend: its method's realisation for the backend where the
    method has per-backend meaning (`artifact.realisations`), else its float graph. A
    realisation is timed (not the backend's float graph nor its `save`: the export every
    model gets): its seconds and steps are the Deployed's."""
    backend.check(env)
    realisations = getattr(artifact, "realisations", None) or {}
    if realisations:
        adapter = realisations.get(backend.name)
        if adapter is None:
            raise NotApplicable(f"{artifact.method} has no realisation on {backend.name} "
                                f"(it has: {', '.join(realisations)})")
        if isinstance(adapter, str):  # the method's reason why it cannot exist there
            raise NotApplicable(adapter)
        float_graph = backend.float_graph(artifact.float_module, env)
        start = time.perf_counter()
        realised = adapter(artifact, float_graph, env, Path(out_dir))
        seconds = time.perf_counter() - start + realised.reused_seconds
        deployed = replace(backend.save(realised, Path(out_dir), env, precision),
                           seconds=seconds, train_steps=realised.train_steps)
        if realised.renders is not None and precision == "fp32":
            from bench.backends import rendering

            rendering.check(backend, deployed, realised.renders, env)
        return deployed
    realised = Realised(backend.float_graph(artifact.module, env), artifact.precision)
    return backend.save(realised, Path(out_dir), env, precision)


def names() -> list[str]:
    return BACKENDS.names()


def installed() -> list[str]:
    return [n for n, cls in BACKENDS.items().items()
            if not cls.runtime or importlib.util.find_spec(cls.runtime) is not None]


def runtime_distributions(names: Iterable[str] | None = None) -> list[str]:
    """The distributions whose versions the rows of backends `names` (default: every
    registered one, a plugin's included) depend on: torch, which trains every model, and
    each backend's runtime package as importlib.metadata maps it to its distribution
    (`ai_edge_litert` -> `ai-edge-litert`, a plugin's package -> the plugin)."""
    packages = _distributions_of_packages()
    found = ["torch"]
    for name in BACKENDS.names() if names is None else names:
        runtime = BACKENDS.get(name).runtime
        if runtime:
            found += packages.get(runtime, [runtime.replace("_", "-")])
    return list(dict.fromkeys(found))


@functools.cache
def _distributions_of_packages() -> dict[str, list[str]]:
    """importlib.metadata's package -> distributions map: it reads every installed
    distribution (0.4 s here), and the gate asks once per row, so once per process."""
    return metadata.packages_distributions()


def defaults() -> list[str]:
    """What a run measures when --backends is not given: the installed default backends."""
    return [n for n in installed() if BACKENDS.get(n).default]


def get(name: str) -> Backend:
    cls = BACKENDS.get(name)
    if cls.runtime and importlib.util.find_spec(cls.runtime) is None:
        raise ValueError(f"backend {name!r} needs the Python package {cls.runtime!r}, "
                         "which is not installed")
    return cls()
