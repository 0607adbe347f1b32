"""torch.export of a model as the edge runtimes take it (shared by their backends and
int8 realisations, as onnx_export.py is by the ONNX-based ones)."""

from __future__ import annotations

import logging


def export_program(module, image_size: int):
    """The ExportedProgram of a batch-1 NCHW float model: the programs ExecuTorch and
    LiteRT deploy are batch 1, as a phone runs them. Quiet: torchao's import logs a
    deprecation line through torch's pytree logger."""
    import torch

    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    example = (torch.zeros(1, 3, image_size, image_size),)
    with torch.no_grad():
        return torch.export.export(module, example)
