"""The one training rule every trained step follows: the teacher, the `student`, `kd`,
pruning's fine-tune and QAT. It is a module of its own so that the rule (what every step
is given) is read in one place, apart from the loop that runs it (bench.modelling.training).

The rule (docs/run.md, "The training rule"), measured on both architectures here:
  * augmentation: the dataset's policy (bench.data.augmentation), drawn per image on the
    fly from the run's seed; a distilling step then scores its parent on the very view
    the student trains on (bench.modelling.parent);
  * precision: bf16 autocast on CPUs with AMX or AVX512-BF16 for architectures without
    depthwise convolutions, fp16 autocast with a GradScaler on CUDA, fp32 otherwise
    (bench.modelling.precision);
  * schedule: linear warm-up over the first 20% of the steps, then cosine decay to zero;
    batch 32; batch-norm statistics re-estimated at the end on 512 training images drawn
    at random (a folder's split is in class order) (QAT keeps
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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TrainSettings:
    epochs: float
    lr: float = 5e-3
    batch_size: int = 32
    weight_decay: float = 0.05
    seed: int = 0
    optimizer: str = "adamw"  # "adamw" (the rule) or "sgd" (Nesterov momentum 0.9)
    steps: int | None = None  # optimiser steps; None: epochs over the images given
    #: the augmentation policy (bench.data.augmentation.POLICIES), drawn from `seed`
    augment: str = "none"
    #: mixed precision where the rule says it is faster (bench.modelling.precision);
    #: False: fp32 (quantization-aware training, whose fake quantizers fit fp32)
    mixed_precision: bool = True

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
                          steps: int | None = None, augment: str = "none") -> TrainSettings:
    """The rule for a model trained from its initial weights (teacher, student, kd):
    AdamW at 5e-3 for depthwise architectures, 2e-3 for the others; `lr` 0 is the rule's."""
    return TrainSettings(epochs=epochs, lr=lr or FROM_SCRATCH_LR[has_depthwise(model)],
                         seed=seed, steps=steps, augment=augment)


def finetune_settings(epochs: float, seed: int, lr: float = FINETUNE_LR,
                      augment: str = "none") -> TrainSettings:
    """The rule for fine-tuning a trained model after it was changed (pruned, fake-quantized)."""
    return TrainSettings(epochs=epochs, lr=lr, seed=seed, augment=augment)


#: the schedule's linear warm-up, as a fraction of its steps
WARMUP_FRACTION = 0.2


def warmup_steps(total: int, warmup_frac: float = WARMUP_FRACTION) -> int:
    """The steps of a `total`-step schedule's warm-up (at least one)."""
    return max(1, int(total * warmup_frac))


def warmup_cosine(total: int, warmup_frac: float = WARMUP_FRACTION):
    """LR multiplier per step; valid for any length (OneCycleLR divides by zero below ~5 steps)."""
    warmup = warmup_steps(total, warmup_frac)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor
