"""torch.export of a model as the edge runtimes take it (shared by their backends and
int8 realisations, as onnx_export.py is by the ONNX-based ones)."""

from __future__ import annotations

import logging


def quiet_torchao() -> None:
    """torchao's import (through executorch, litert-torch or pt2e) logs a deprecation
    warning through torch's pytree logger, which the user cannot act on: call this before
    importing any of them."""
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)


def export_program(module, image_size: int):
    """The ExportedProgram of a batch-1 NCHW float model: the programs ExecuTorch and
    LiteRT deploy are batch 1, as a phone runs them."""
    import torch

    quiet_torchao()
    example = (torch.zeros(1, 3, image_size, image_size),)
    with torch.no_grad():
        return torch.export.export(module, example)


def as_program(graph, image_size: int):
    """`graph` as an ExportedProgram: a realisation may hand one over (an int8 graph it
    exported itself), a float model arrives as its torch module."""
    import torch

    if isinstance(graph, torch.export.ExportedProgram):
        return graph
    return export_program(graph, image_size)
