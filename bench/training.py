"""Training, distillation and inference loops shared by the teacher and every method.

Two optimisers, both with linear warm-up then cosine decay, then batch-norm statistics
re-estimated on training data:
  * SGD with Nesterov momentum (lr 0.05) for the DenseNet-style teacher and fine-tuning.
  * AdamW (lr 5e-3, weight decay 0.05) for the MobileNetV2 student. Measured here (README,
    "Why the student learned slowly"): one backward pass of a fresh MobileNetV2 gives its
    depthwise convolutions a gradient 2.6 times their weights' norm and its first conv 12
    times, against 0.05 for its 1x1 convolutions, a 50x spread; DenseNet-121's layers sit
    within 0.01-0.04. One SGD learning rate either scrambles the depthwise layers or
    starves the pointwise ones: with SGD the student's training AUC stayed at 0.67 after
    4 epochs. AdamW scales each parameter's step and fits.
Training runs in channels-last memory format (MobileNetV2 steps 101 -> 68 ms at batch 32,
DenseNet-121 299 -> 253 ms here); models come back in the default format.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bench.progress import log
from bench.tasks import Task

_DEVICE = "cpu"


def use_device(device: str) -> None:
    """Where training and the bench's own inference run (`--device`); like
    torch.set_num_threads, a process-wide setting. Models always come back on the CPU."""
    global _DEVICE
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device on this machine")
    _DEVICE = device


@dataclass(frozen=True)
class TrainSettings:
    epochs: float
    lr: float = 0.05
    batch_size: int = 32
    weight_decay: float = 1e-4
    seed: int = 0
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum 0.9) or "adamw"
    steps: int | None = None  # optimiser steps; None: epochs over the images given

    def make_optimizer(self, params):
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=0.9,
                                   weight_decay=self.weight_decay, nesterov=True)
        raise ValueError(f"unknown optimizer {self.optimizer!r}")


#: the student recipe shared by `kd` and the `student` baseline (see the module docstring)
STUDENT_OPTIMIZER = dict(optimizer="adamw", weight_decay=0.05)
STUDENT_LR = 5e-3


def as_input(batch: torch.Tensor) -> torch.Tensor:
    """Grayscale images go to 3-channel models as the same plane three times."""
    return batch.expand(-1, 3, -1, -1) if batch.shape[1] == 1 else batch


def warmup_cosine(total: int, warmup_frac: float = 0.2):
    """LR multiplier per step; valid for any length (OneCycleLR divides by zero below ~5 steps)."""
    warmup = max(1, int(total * warmup_frac))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def batches(images: np.ndarray, labels, batch_size: int, rng: np.random.Generator | None,
            extra=None):
    n = len(images)
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        x = as_input(torch.from_numpy(images[idx]))
        y = None if labels is None else torch.from_numpy(np.asarray(labels)[idx])
        e = None if extra is None else extra[torch.from_numpy(idx)]
        yield x, y, e


def train(model: nn.Module, images: np.ndarray, labels, task: Task, settings: TrainSettings,
          name: str, teacher_logits: torch.Tensor | None = None, alpha: float = 0.0,
          temperature: float = 4.0, after_step: Callable[[nn.Module], None] | None = None) -> nn.Module:
    """Train in place and return the model in eval mode.

    With `teacher_logits` (precomputed on the same training images, no augmentation,
    so offline KD is exact) the loss is alpha * KD + (1 - alpha) * hard-label loss.
    `after_step` lets magnitude pruning re-apply its mask after each optimiser step.
    """
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    device = torch.device(_DEVICE)
    model.to(device)
    n = len(images)
    steps_per_epoch = max(1, -(-n // settings.batch_size))
    total = settings.steps or max(1, int(round(settings.epochs * steps_per_epoch)))
    model.to(memory_format=torch.channels_last)
    opt = settings.make_optimizer(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total))
    model.train()
    step, t0, running = 0, time.perf_counter(), None
    while step < total:
        for x, y, t in batches(images, labels, settings.batch_size, rng, teacher_logits):
            if step >= total:
                break
            x, y = x.to(device, memory_format=torch.channels_last), y.to(device)
            t = None if t is None else t.to(device)
            logits = model(x)
            loss = task.loss(logits, y)
            if t is not None and alpha > 0:
                loss = alpha * task.kd_loss(logits, t, temperature) + (1 - alpha) * loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if after_step is not None:
                after_step(model)
            step += 1
            running = loss.item() if running is None else 0.9 * running + 0.1 * loss.item()
            if step % max(1, total // 5) == 0 or step == total:
                log(f"{name}: step {step}/{total}  loss {running:.3f}  {time.perf_counter() - t0:.0f}s")
    recalibrate_batchnorm(model, images, settings.batch_size)
    return model.cpu().to(memory_format=torch.contiguous_format).eval()


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: np.ndarray, batch_size: int,
                          max_images: int = 512) -> None:
    """Re-estimate BN running statistics with the final weights (cumulative average)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    device = next(model.parameters()).device
    for x, _, _ in batches(images[:max_images], None, batch_size * 2, None):
        model(x.to(device))
    model.eval()
    # Put the momenta back: a trained model must be the model a checkpoint of it rebuilds
    # (TorchScript writes the momentum into the file: a freshly trained teacher's file
    # differed from its cached copy's by 7 KB, which moved compression ratios).
    for bn, momentum in zip(bns, momenta, strict=True):
        bn.momentum = momentum


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, batch_size: int = 128) -> torch.Tensor:
    """Logits in channels-last format where every weight is a float (DenseNet-121 at
    64 px: 3.3-3.7 -> 1.9-2.1 ms an image here); quantized modules as they are."""
    model.eval()
    device = torch.device(_DEVICE)
    fmt = (torch.channels_last if all(p.is_floating_point() for p in model.parameters())
           else torch.preserve_format)
    model.to(device)
    if fmt is torch.channels_last:
        model.to(memory_format=fmt)
    try:
        out = [model(x.to(device).contiguous(memory_format=fmt)).cpu()
               for x, _, _ in batches(images, None, batch_size, None)]
    finally:
        model.cpu()
        if fmt is torch.channels_last:
            model.to(memory_format=torch.contiguous_format)
    return torch.cat(out).float()
