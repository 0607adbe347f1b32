"""ExecuTorch backend: the artifact captured with torch.export, lowered to the XNNPACK
delegate (the CPU engine ExecuTorch ships on Android and iOS) and saved as a `.pte`
program, run by ExecuTorch's Python runtime.

The program is batch 1, as a phone runs it: the untimed test-split prediction calls it
once per image. Operators XNNPACK cannot take stay on ExecuTorch's portable kernels; the
row's notes say how many nodes were delegated. int8 is the method's realisation
(methods/quant/executorch.py: the XNNPACK quantizer, pt2e). Not a default backend: the
edge runtimes are added with `--backends ...,executorch` or `--backends all`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.backends import Backend, Deployed, ExportEnv, NotApplicable, Realised, register
from bench.backends.native import quiet_stderr
from bench.backends.torch_export import as_program, quiet_torchao


@register
class ExecuTorchBackend(Backend):
    name = "executorch"
    runtime = "executorch"
    default = False
    deploys = ("ExecuTorch program (.pte): torch.export, lowered with XnnpackPartitioner; "
               "int8 by the XNNPACK quantizer (pt2e)")
    settings = "executorch.runtime, XNNPACK threadpool of {threads} thread(s), batch 1"
    split_threads = False

    def check(self, env: ExportEnv) -> None:
        if env.device == "cuda":
            raise NotApplicable("--device cuda: ExecuTorch's XNNPACK delegate runs on the CPU")

    def float_graph(self, module, env: ExportEnv):
        return module.eval()  # exported in `save` (the int8 realisations export their own)

    def save(self, realised: Realised, out_dir: Path, env: ExportEnv,
             precision: str = "fp32") -> Deployed:
        if precision != "fp32":
            raise NotApplicable(f"ExecuTorch {precision}: the XNNPACK delegate's half-precision "
                                "kernels target ARM; this bench does not deploy them on x86")
        quiet_torchao()
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.devtools.backend_debug import get_delegation_info
        from executorch.exir import to_edge_transform_and_lower

        program = as_program(realised.graph, env.image_size)
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        info = get_delegation_info(lowered.exported_program().graph_module)
        program = lowered.to_executorch()
        path = Path(out_dir) / "model.pte"
        with open(path, "wb") as f:
            program.write_to_file(f)
        total = info.num_delegated_nodes + info.num_non_delegated_nodes
        rest = (f"; {info.num_non_delegated_nodes} run on ExecuTorch's portable kernels"
                if info.num_non_delegated_nodes else "")
        notes = [*realised.notes,
                 f"XNNPACK delegate took {info.num_delegated_nodes} of {total} graph nodes in "
                 f"{info.num_delegated_subgraphs} subgraph(s){rest}"]
        return Deployed([path], realised.precision, notes)

    def load(self, files, threads, device="cpu", options=None):
        import torch

        if device != "cpu":
            raise RuntimeError(f"--device {device}: the ExecuTorch backend runs on the CPU only")
        with quiet_stderr():  # cpuinfo and threadpool lines from the C++ runtime
            from executorch.extension.pybindings.portable_lib import (
                _threadpool_get_thread_count,
                _unsafe_reset_threadpool,
            )
            from executorch.runtime import Runtime

            # The XNNPACK delegate's process-wide pool. Resetting it destroys the pool a
            # loaded program's delegate holds ("unsafe"): only ever before the first load
            # (split_threads = False keeps the worker from loading a second copy).
            if _threadpool_get_thread_count() != threads:
                _unsafe_reset_threadpool(threads)
            program = Runtime.get().load_program(Path(files[0]))
            method = program.load_method("forward")

        def predict(x: np.ndarray) -> np.ndarray:
            assert program is not None  # the Method does not keep its Program alive
            # batch-1 program: one call per image (the split prediction is untimed)
            return np.concatenate([method.execute([torch.from_numpy(x[i:i + 1])])[0].numpy()
                                   for i in range(len(x))])

        return predict
