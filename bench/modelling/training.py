"""Training, distillation and inference loops, and the one training rule every trained
step follows: the teacher, the `student`, `kd`, pruning's fine-tune and QAT.

The rule (docs/run.md, "The training rule"), measured on both architectures here:
  * schedule: linear warm-up over the first 20% of the steps, then cosine decay to zero;
    batch 32; batch-norm statistics re-estimated on training data at the end (QAT keeps
    the frozen ones it trained against);
  * budget: optimiser steps, given as epochs of the labelled images; the teacher never
    trains fewer steps than the students (bench.modelling.teacher.teacher_plan); a fine-tune of a
    pruned model trains at most its budget and stops once its validation AUC stops
    improving (EarlyStop), keeping its best weights;
  * optimiser: AdamW (weight decay 0.05) for every architecture and step. One backward
    pass of a fresh MobileNetV2 gives its depthwise convolutions a gradient 2.6 times
    their weights' norm and its first conv 12 times, against 0.05 for its 1x1
    convolutions: one SGD learning rate scrambles one kind or starves the other (with SGD
    the student's training AUC stayed at 0.67 after 4 epochs); AdamW scales each
    parameter's step. On DenseNet-121 AdamW at 2e-3 matched SGD (lr 0.05, Nesterov)
    from 210 of 378 steps on (validation AUC 0.924-0.942 against 0.905-0.940), while 5e-3
    trailed it (0.895 against 0.921 at step 252); docs/run.md, "The training rule";
  * peak learning rate: from scratch 5e-3 for depthwise architectures (MobileNetV2), 2e-3
    for the others (DenseNet-121); fine-tuning a pruned model, 3e-3, distilling the model
    it was made from; quantization-aware fine-tuning, 1e-4 (QAT_LR).
Training runs in channels-last memory format (MobileNetV2 steps 101 -> 68 ms at batch 32,
DenseNet-121 299 -> 253 ms here); models come back in the default format.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from bench.progress import log
from bench.task_kinds import Task

_DEVICE = "cpu"
#: optimiser steps taken in this process (bench.pipeline.artifacts reads it around each method step:
#: a row's cost in steps, whichever method trained)
_STEPS_TAKEN = 0


def steps_taken() -> int:
    """Optimiser steps `train` has taken in this process so far."""
    return _STEPS_TAKEN


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
    lr: float = 5e-3
    batch_size: int = 32
    weight_decay: float = 0.05
    seed: int = 0
    optimizer: str = "adamw"  # "adamw" (the rule) or "sgd" (Nesterov momentum 0.9)
    steps: int | None = None  # optimiser steps; None: epochs over the images given

    def steps_per_epoch(self, n_images: int) -> int:
        return max(1, -(-n_images // self.batch_size))

    def total_steps(self, n_images: int) -> int:
        """The budget in optimiser steps: `steps`, else `epochs` rounded to whole steps."""
        return self.steps or max(1, int(round(self.epochs * self.steps_per_epoch(n_images))))

    def make_optimizer(self, params):
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=0.9,
                                   weight_decay=self.weight_decay, nesterov=True)
        raise ValueError(f"unknown optimizer {self.optimizer!r}")


#: the rule's peak learning rate from scratch (module docstring), by whether the
#: architecture has depthwise convolutions
FROM_SCRATCH_LR = {True: 5e-3, False: 2e-3}
#: fine-tuning a trained model that was changed (pruning): AdamW for every architecture
FINETUNE_LR = 3e-3
#: quantization-aware fine-tuning, whose weights must stay near the ones the scales fit:
#: at 3e-3 a MobileNetV2 kd student's QAT loss rose from 0.32 to 1.45 once observers and
#: batch norm froze and its int8 AUC fell to 0.500; at 1e-4, validation AUC 0.891 (kd 0.894)
QAT_LR = 1e-4


def has_depthwise(model: nn.Module) -> bool:
    """Whether the model has grouped (depthwise) convolutions: MobileNet, EfficientNet...,
    whose per-layer gradients spread 50x; the rule gives them a higher peak lr (5e-3)."""
    return any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in model.modules())


def from_scratch_settings(model: nn.Module, epochs: float, seed: int, lr: float = 0.0,
                          steps: int | None = None) -> TrainSettings:
    """The rule for a model trained from its initial weights (teacher, student, kd):
    AdamW at 5e-3 for depthwise architectures, 2e-3 for the others; `lr` 0 is the rule's."""
    return TrainSettings(epochs=epochs, lr=lr or FROM_SCRATCH_LR[has_depthwise(model)],
                         seed=seed, steps=steps)


def finetune_settings(epochs: float, seed: int, lr: float = FINETUNE_LR) -> TrainSettings:
    """The rule for fine-tuning a trained model after it was changed (pruned, fake-quantized)."""
    return TrainSettings(epochs=epochs, lr=lr, seed=seed)


@dataclass
class EarlyStop:
    """Train until the validation score stops improving: scored every `every` steps, the
    run stops once `patience` scores in a row did not beat the best by `min_delta` (never
    before `min_steps`), and the best-scoring weights are kept. `history` records
    (step, score) as training goes."""

    score: Callable[[nn.Module], float]
    every: int
    patience: int
    min_steps: int
    min_delta: float = 1e-3
    #: score the model before the first step too (a fine-tune: the changed model may
    #: already be as good as training will make it, and then it is kept as it is)
    score_start: bool = False
    history: list = field(default_factory=list)
    best_step: int = 0
    best_state: dict | None = field(default=None, repr=False)
    _reference: float = -math.inf  # the last score that counted as a gain
    _stale: int = 0  # scores in a row without a gain

    def describe(self) -> str:
        return (f"scored on the validation split every {self.every} steps; stops after "
                f"{self.patience} scores without a gain of {self.min_delta:g}, not before step "
                f"{self.min_steps}; keeps the best weights")


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
          temperature: float = 4.0, after_step: Callable[[nn.Module], None] | None = None,
          early_stop: EarlyStop | None = None, recalibrate: bool = True) -> nn.Module:
    """Train in place and return the model in eval mode.

    With `teacher_logits` (precomputed on the same training images, no augmentation,
    so offline KD is exact) the loss is alpha * KD + (1 - alpha) * hard-label loss.
    `after_step` runs after each optimiser step. With `early_stop`, `settings` give the
    most steps (the schedule's length) and training may stop sooner (EarlyStop).
    `recalibrate=False` keeps the batch-norm statistics training left (QAT freezes them
    and trains its weights against them).
    """
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    device = torch.device(_DEVICE)
    model.to(device)
    total = settings.total_steps(len(images))
    model.to(memory_format=torch.channels_last)
    opt = settings.make_optimizer(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total))
    model.train()
    global _STEPS_TAKEN
    step, t0, running = 0, time.perf_counter(), None
    if early_stop is not None and early_stop.score_start:
        _should_stop(model, early_stop, 0, name)
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
            _STEPS_TAKEN += 1
            running = loss.item() if running is None else 0.9 * running + 0.1 * loss.item()
            if step % max(1, total // 5) == 0 or step == total:
                log(f"{name}: step {step}/{total}  loss {running:.3f}  {time.perf_counter() - t0:.0f}s")
            if early_stop is not None and (step % early_stop.every == 0 or step == total):
                if _should_stop(model, early_stop, step, name):
                    total = step
    if early_stop is not None and early_stop.best_state is not None and early_stop.best_step != step:
        model.load_state_dict(early_stop.best_state)
        log(f"{name}: kept the weights of step {early_stop.best_step} (best validation score)")
    if early_stop is not None:
        early_stop.best_state = None  # the weights are the model's now
    if recalibrate:
        recalibrate_batchnorm(model, images, settings.batch_size)
    return model.cpu().to(memory_format=torch.contiguous_format).eval()


def _should_stop(model: nn.Module, stop: EarlyStop, step: int, name: str) -> bool:
    """Score the model now (eval mode), keep its weights if they are the best so far, and
    say whether patience has run out."""
    model.eval()
    with torch.no_grad():
        score = float(stop.score(model))
    model.train().to(memory_format=torch.channels_last)  # predict_logits leaves it contiguous
    if score > max((s for _, s in stop.history), default=-math.inf):
        stop.best_step, stop.best_state = step, copy.deepcopy(model.state_dict())
    stop.history.append((step, round(score, 4)))
    gained = score >= stop._reference + stop.min_delta
    stop._reference, stop._stale = (score, 0) if gained else (stop._reference, stop._stale + 1)
    log(f"{name}: step {step}  validation {score:.4f}" + ("" if gained else "  (no gain)"))
    return step >= stop.min_steps and stop._stale >= stop.patience


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


def auc_of(model: nn.Module, task: Task, images: np.ndarray, labels) -> float:
    """The model's AUC-ROC on a held-out split (the validation one: what a fine-tune's
    EarlyStop scores and the manifest records of the teacher)."""
    from bench.stats.auc import auc_roc

    probs = task.probabilities(predict_logits(model, images)).numpy()
    return auc_roc(task, labels, task.scores(probs))[0]
