"""PyTorch backend: the artifact as a TorchScript file, run with pinned threads.

TorchScript is what this backend deploys because it is one self-contained file that
loads without torchvision and without executing Python code from disk, and it holds FX
int8 models as well as float and channel-pruned ones. Both torch.jit and FX
quantization are deprecated upstream (torch 2.14 warns); their deprecation warnings, and
only those, are silenced here (bench.deprecated).
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from pathlib import Path

import numpy as np

from bench import deprecated
from bench.backends import Backend, Deployed, ExportEnv, Realised, register

_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@register
class TorchBackend(Backend):
    name = "torch"
    runtime = "torch"
    deploys = "TorchScript (torch.jit.trace of the artifact, fp32 or FX int8)"
    settings = "torch.set_num_threads({threads}), 1 inter-op thread, no_grad"

    def float_graph(self, module, env: ExportEnv):
        return module.eval()

    def save(self, realised: Realised, out_dir: Path, env: ExportEnv,
             precision: str = "fp32") -> Deployed:
        import torch

        path = Path(out_dir) / "model.torchscript.pt"
        module, notes, options = realised.graph.eval(), list(realised.notes), {}
        example = torch.zeros(1, 3, env.image_size, env.image_size)
        if precision != "fp32":
            dtype = getattr(torch, _DTYPES[precision])
            module = copy.deepcopy(module).to(dtype)  # weights and arithmetic in `precision`
            example = example.to(dtype)
            options["input_dtype"] = precision
            notes.append(f"PyTorch {precision}: weights and activations cast with module.to()")
        with _silenced(), torch.no_grad(), _fresh_compilation_unit():
            scripted = torch.jit.trace(module, example, check_trace=False)
            with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
                full = Path(tmp) / path.name
                torch.jit.save(scripted, str(full))
                _without_debug_info(full, path)
        return Deployed([path], realised.precision if precision == "fp32" else precision, notes,
                        options)

    def load(self, files, threads, device="cpu", options=None):
        import torch

        dtype = getattr(torch, _DTYPES[(options or {}).get("input_dtype", "fp32")])
        torch.set_num_threads(threads)
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("--device cuda: torch sees no CUDA device")
        with _silenced():
            module = torch.jit.load(str(files[0]), map_location=device).eval()

        def predict(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                out = module(torch.from_numpy(x).to(device=device, dtype=dtype))
                if device == "cuda":
                    torch.cuda.synchronize()  # time the work, not its launch
                return out.float().cpu().numpy()

        return predict


def _silenced():
    """TorchScript's deprecation warnings, and FX quantization's: the files hold FX int8
    modules (their quantized tensors warn when made, loading included)."""
    return deprecated.silenced("torchscript", "fx-quantization")


def _without_debug_info(src: Path, dst: Path) -> None:
    """Copy a TorchScript archive without its `.debug_pkl` records.

    The tracer records the Python call stack of every traced op, and torch.jit.save keeps
    it: the file held the harness's own call path (bench/cli.py, runner.py, ...), so its
    size changed whenever the bench's code did (prune.structured by 0.1% between two
    commits), which no deployment needs and the CI gate reads as a change of the model.
    torch.jit.load reads the archive without them (a test checks the outputs agree);
    torch's own archive writer keeps the record alignment.
    """
    import torch

    reader = torch._C.PyTorchFileReader(str(src))
    writer = torch._C.PyTorchFileWriter(str(dst))
    for name in reader.get_all_records():
        if not name.endswith(".debug_pkl"):
            data = reader.get_record(name)
            writer.write_record(name, data, len(data))
    writer.write_end_of_file()


@contextlib.contextmanager
def _fresh_compilation_unit():
    """Trace into a compilation unit of its own: TorchScript names every repeated module
    type `___torch_mangle_<n>` from a counter of the process-wide unit, so the same model
    saved after other traces (a freshly trained teacher against a cached one, a resumed
    run) got other names and a file 7 KB larger or smaller. A fresh unit numbers from 0."""
    import torch
    from torch.jit import _state

    previous = _state._python_cu
    _state._python_cu = torch._C.CompilationUnit()
    try:
        yield
    finally:
        _state._python_cu = previous
