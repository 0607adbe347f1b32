"""The precision a model trains in: mixed precision where it is faster, fp32 elsewhere.

The rule (docs/run.md, "The training rule"), from the measurements of issue 28 on an
Intel Xeon with AMX (one training step, batch 32 at 64 px, channels-last): DenseNet-121
468 ms in fp32 and 312 ms under torch.autocast("cpu", torch.bfloat16); MobileNetV2 145 ms
in fp32 and 197 ms in bf16, its depthwise convolutions gaining nothing. So, on the CPU:
bf16 autocast where the CPU has AMX or AVX512-BF16 and the architecture has no depthwise
(grouped) convolution; fp32 otherwise. On CUDA: fp16 autocast with a GradScaler (not
tested here: no GPU). Weights, optimiser state and batch-norm re-estimation stay fp32;
autocast only runs the forward pass (and so its backward) in the lower precision.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import cache
from pathlib import Path

import torch
from torch import nn

from bench.modelling.training_rule import has_depthwise

#: CPU flags (/proc/cpuinfo) under which bf16 matrix multiplication runs natively
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@cache
def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU multiplies bf16 natively (AMX or AVX512-BF16); False where it
    cannot be told (no /proc/cpuinfo: not Linux)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    flags = set().union(*(line.split(":", 1)[1].split() for line in text.splitlines()
                          if line.startswith("flags") and ":" in line))
    return any(flag in flags for flag in BF16_FLAGS)


def autocast_dtype(model: nn.Module, device: str, bf16_cpu: bool | None = None) -> torch.dtype | None:
    """The rule (module docstring): the dtype `model` trains under autocast on `device`,
    or None for fp32. Only a float convolutional network qualifies: a model without
    nn.Conv2d modules (a pt2e-prepared graph) or with torch.ao (quantization) modules
    stays fp32.
    `bf16_cpu` overrides the CPU probe (tests)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs or any(type(m).__module__.startswith("torch.ao") for m in model.modules()):
        return None
    if device == "cuda":
        return torch.float16
    bf16 = cpu_has_bf16() if bf16_cpu is None else bf16_cpu
    return torch.bfloat16 if bf16 and not has_depthwise(model) else None


def name(dtype: torch.dtype | None) -> str:
    """'fp32', 'bf16 autocast' or 'fp16 autocast': what a model trained in, for the
    manifest and a row's notes."""
    return {None: "fp32", torch.bfloat16: "bf16 autocast",
            torch.float16: "fp16 autocast"}[dtype]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """The forward pass's context: autocast to `dtype`, or nothing for fp32."""
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def scaler(device: torch.device, dtype: torch.dtype | None):
    """A GradScaler for fp16 (CUDA), which underflows without one; None otherwise."""
    return torch.amp.GradScaler(device.type) if dtype is torch.float16 else None
