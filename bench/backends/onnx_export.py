"""fp32 ONNX export shared by the ONNX Runtime and OpenVINO backends.

The TorchScript-based exporter (`dynamo=False`): 0.2-0.5 s and outputs within 4e-6 of
PyTorch here, in one file; the dynamo exporter took 7-9 s, wrote weights to a separate
`.onnx.data` file and fixed the batch at 1 (STACK-NOTES). Batch is a dynamic axis so
the test split can be predicted in batches and latency timed at batch 1. The exporter is
deprecated upstream: its warnings, and only those, are silenced (bench.deprecated).
"""

from __future__ import annotations

from pathlib import Path

from bench import deprecated

OPSET = 17


def export_onnx(module, path: Path, image_size: int) -> Path:
    import torch

    example = torch.zeros(1, 3, image_size, image_size)
    with deprecated.silenced("torchscript-onnx"), torch.no_grad():
        torch.onnx.export(module.eval(), (example,), str(path), dynamo=False, opset_version=OPSET,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return Path(path)
