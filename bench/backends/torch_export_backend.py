"""PyTorch on its supported deployment path, torch.export, in two forms:

  torch-export  the ExportedProgram saved as `.pt2` (torch.export.save), run by PyTorch
                eagerly after torch.export.load: no compiler, the closest successor of a
                TorchScript file.
  torch-aoti    the same program compiled ahead of time by AOTInductor into a `.pt2`
                package (a shared library plus weights), run by aoti_load_package.

Both start from the same ExportedProgram: the fp32 module's, or an int8 realisation's
(methods/quant/torch_pt2e.py: pt2e with torchao's X86InductorQuantizer). Neither is a
default backend: their figures against TorchScript (`torch`) are in docs/measuring.md; AOTI
compiles each model (about 30 s here) and `--backends all` or naming them adds them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from bench.backends import Backend, Deployed, ExportEnv, NotApplicable, Realised, register
from bench.backends.torch_export import as_program, quiet_torchao
from bench.cache import cache_dir


class _ExportedBackend(Backend):
    runtime = "torch"
    default = False

    def float_graph(self, module, env: ExportEnv):
        return module.eval()  # exported in `save` (an int8 realisation exports its own)

    def save(self, realised: Realised, out_dir: Path, env: ExportEnv,
             precision: str = "fp32") -> Deployed:
        if precision != "fp32":
            raise NotApplicable(f"{self.name} {precision}: not deployed by this bench (the "
                                "torch backend has bf16 and fp16 rows)")
        path = Path(out_dir) / "model.pt2"
        self._write(as_program(realised.graph, env.image_size), path, env)
        return Deployed([path], realised.precision, list(realised.notes))

    def _write(self, program, path: Path, env: ExportEnv) -> None:
        raise NotImplementedError

    def _module(self, path: str, device: str):
        raise NotImplementedError

    def load(self, files, threads, device="cpu", options=None):
        import torch

        torch.set_num_threads(threads)
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("--device cuda: torch sees no CUDA device")
        module = self._module(str(files[0]), device)

        def predict(x: np.ndarray) -> np.ndarray:
            # batch-1 program, as deployed: one call per image (the split is untimed)
            with torch.no_grad():
                out = [module(torch.from_numpy(x[i:i + 1]).to(device)) for i in range(len(x))]
                if device == "cuda":
                    torch.cuda.synchronize()
                return torch.cat(out).float().cpu().numpy()

        return predict


@register
class TorchExportBackend(_ExportedBackend):
    name = "torch-export"
    deploys = "ExportedProgram (.pt2, torch.export.save), run eagerly; int8 by pt2e (X86InductorQuantizer)"
    settings = "torch.export.load(...).module(), torch.set_num_threads({threads}), no_grad, batch 1"

    def _write(self, program, path: Path, env: ExportEnv) -> None:
        import torch

        torch.export.save(program, str(path))

    def _module(self, path: str, device: str):

        import torch

        # an int8 program holds torchao's quantize/dequantize ops: register them first
        quiet_torchao()
        import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401

        return torch.export.load(path).module().to(device)


@register
class TorchAOTIBackend(_ExportedBackend):
    name = "torch-aoti"
    deploys = ("AOTInductor package (.pt2: compiled shared library + weights) of the "
               "ExportedProgram; int8 by pt2e (X86InductorQuantizer)")
    settings = "torch._inductor.aoti_load_package, torch.set_num_threads({threads}), batch 1"

    def _write(self, program, path: Path, env: ExportEnv) -> None:
        import torch

        # Inductor's compile cache goes under the bench's cache, not /tmp (STACK-NOTES)
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "inductor"))
        # the C++ build (and the package's load) warns "No CUDA runtime is found" on a CPU
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        with torch.no_grad():
            torch._inductor.aoti_compile_and_package(program, package_path=str(path))

    def _module(self, path: str, device: str):
        import torch

        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        return torch._inductor.aoti_load_package(path)
