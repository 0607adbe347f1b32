"""Training, distillation and inference loops: `train` (with distillation, `after_step`
and `EarlyStop`), batch-norm re-estimation, `predict_logits`, the device, and the count of
optimiser steps a row's cost is made of. The rule they follow (schedule, budget,
optimiser, learning rates) is bench.modelling.training_rule's; this module runs it.
The device has one rule (`on_device`): a pass runs on the run's device and leaves the
model on the device it found it on, so a validation score inside training leaves the
model where training needs it. Training runs in channels-last memory format
(MobileNetV2 steps 101 -> 68 ms at batch 32, DenseNet-121 299 -> 253 ms here); models
come back in the default format.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from bench.data.augmentation import POLICIES
from bench.modelling import precision
from bench.modelling.augment import Augmenter
from bench.modelling.parent import Parent
from bench.modelling.training_rule import TrainSettings, warmup_cosine
from bench.progress import log
from bench.stats.auc import auc_roc
from bench.task_kinds import Task

_DEVICE = "cpu"
_PRECISION = "auto"  # --train-precision (use_precision)
#: optimiser steps taken in this process (bench.pipeline.artifacts reads it around each method step:
#: a row's cost in steps, whichever method trained)
_STEPS_TAKEN = 0


def steps_taken() -> int:
    """Optimiser steps `train` has taken in this process so far."""
    return _STEPS_TAKEN


def use_device(device: str) -> None:
    """Where training and the bench's own inference run (`--device`); like
    torch.set_num_threads, a process-wide setting, set by each entry point (`bench run`,
    `bench search`, a cluster task) from the configuration. A trained model comes back on
    the CPU; a scoring pass leaves it where it was (`on_device`)."""
    global _DEVICE
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device on this machine")
    _DEVICE = device


def use_precision(mode: str) -> None:
    """What training computes in (`--train-precision`): `auto`, the precision rule
    (bench.modelling.precision), or `fp32`; process-wide like `use_device`, set by the
    same entry points."""
    global _PRECISION
    if mode not in ("auto", "fp32"):
        raise ValueError(f"--train-precision {mode!r}: choose auto or fp32")
    _PRECISION = mode


def device_of(model: nn.Module) -> torch.device:
    """Where the model's weights are (the CPU for a model without any)."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


@contextmanager
def on_device(model: nn.Module) -> Iterator[torch.device]:
    """The device rule: the model on the run's device for the pass (yielded), and back on
    the device it was found on after it, whatever the pass raised."""
    home = device_of(model)
    device = torch.device(_DEVICE)
    model.to(device)
    try:
        yield device
    finally:
        model.to(home)


@dataclass
class EarlyStop:
    """Train until the validation score stops improving: scored every `every` steps; once
    `patience` steps have passed without a score beating the reference by `min_delta`,
    the run stops, and the best-scoring weights are kept. Scores within the first `warmup`
    steps (the schedule's warm-up, when a rising learning rate disturbs a trained model:
    a pruned MobileNetV3's fine-tune scored 0.553, 0.545, 0.489 at steps 0, 31, 62) count
    for the best weights but not for patience: the first score after them is the
    reference, so no run stops before `warmup + patience` steps. `history` records
    (step, score) as training goes."""

    score: Callable[[nn.Module], float]
    every: int
    patience: int
    warmup: int = 0
    min_delta: float = 1e-3
    #: score the model before the first step too (a fine-tune: the changed model may
    #: already be as good as training will make it, and then it is kept as it is)
    score_start: bool = False
    history: list = field(default_factory=list)
    best_step: int = 0
    best_state: dict | None = field(default=None, repr=False)
    #: set by `train`: the most steps it could take, and the step it stopped at early
    #: (None: it took them all)
    budget: int = 0
    stopped_at: int | None = None
    _reference: float | None = None  # the last score after the warm-up that counted as a gain
    _gained_at: int = 0  # its step

    def describe(self) -> str:
        return (f"scored on the validation split every {self.every} steps; stops once "
                f"{self.patience} steps after the warm-up's {self.warmup} pass without a gain "
                f"of {self.min_delta:g}; keeps the best weights")

    def outcome(self) -> str:
        """What the stop did, for a row's note: where training ended and whose weights
        the model holds."""
        defined = any(not math.isnan(score) for _, score in self.history)
        kept = (f"kept the weights of step {self.best_step}, the best validation score"
                if defined else "kept its last weights, no validation score being defined")
        if self.stopped_at is not None:
            return (f"stopped early at step {self.stopped_at} of {self.budget}, no validation "
                    f"gain in {self.stopped_at - self._gained_at} steps after the warm-up's "
                    f"{self.warmup}; {kept}")
        return f"all {self.budget} steps; {kept}"


def as_input(batch: torch.Tensor) -> torch.Tensor:
    """Grayscale images go to 3-channel models as the same plane three times."""
    return batch.expand(-1, 3, -1, -1) if batch.shape[1] == 1 else batch


def batches(images: np.ndarray, labels, batch_size: int, rng: np.random.Generator | None,
            extra=None, transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
    """(images, labels, extra) per batch, in `rng`'s order (None: in order), the images
    through `transform` (augmentation) before grayscale becomes three channels."""
    n = len(images)
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        x = torch.from_numpy(images[idx])
        x = as_input(x if transform is None else transform(x))
        y = None if labels is None else torch.from_numpy(np.asarray(labels)[idx])
        e = None if extra is None else extra[torch.from_numpy(idx)]
        yield x, y, e


def train(model: nn.Module, images: np.ndarray, labels, task: Task, settings: TrainSettings,
          name: str, teacher_logits: torch.Tensor | None = None, alpha: float = 0.0,
          temperature: float = 4.0, after_step: Callable[[nn.Module], None] | None = None,
          early_stop: EarlyStop | None = None, recalibrate: bool = True,
          parent: Parent | None = None) -> nn.Module:
    """Train in place and return the model in eval mode.

    Each batch is augmented by `settings.augment`'s policy (bench.modelling.augment).
    With `teacher_logits` the loss is alpha * KD + (1 - alpha) * hard-label loss: the
    logits precomputed on the same training images, exact without augmentation; with
    augmentation and a `parent`, the parent's logits on each augmented batch instead
    (bench.modelling.parent: the soft labels of the very view the student sees).
    `after_step` runs after each optimiser step. With `early_stop`, `settings` give the
    most steps (the schedule's length) and training may stop sooner (EarlyStop).
    `recalibrate=False` keeps the batch-norm statistics training left (QAT freezes them
    and trains its weights against them).
    """
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    augment = Augmenter(settings.augment, settings.seed) if POLICIES[settings.augment].active \
        else None
    online = parent is not None and augment is not None and alpha > 0
    device = torch.device(_DEVICE)
    amp = trained_in(model, settings)
    scaler = precision.scaler(device, amp)
    if online:
        parent = replace(parent, autocast=precision.autocast_dtype(
            parent.modules[0], _DEVICE))
    model.to(device)  # and back to the CPU at the end (below)
    total = settings.total_steps(len(images))
    model.to(memory_format=torch.channels_last)
    opt = settings.make_optimizer(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total))
    model.train()
    global _STEPS_TAKEN
    step, t0, running = 0, time.perf_counter(), None
    if early_stop is not None:
        early_stop.budget, early_stop.stopped_at = total, None
    if early_stop is not None and early_stop.score_start:
        _should_stop(model, early_stop, 0, name)
    with parent.ready(device) if online else nullcontext():
        while step < total:
            for x, y, t in batches(images, labels, settings.batch_size, rng,
                                   None if online else teacher_logits, augment):
                if step >= total:
                    break
                x, y = x.to(device, memory_format=torch.channels_last), y.to(device)
                t = parent(x) if online else (None if t is None else t.to(device))
                with precision.autocast(device, amp):
                    logits = model(x)
                logits = logits.float()
                loss = task.loss(logits, y)
                if t is not None and alpha > 0:
                    loss = alpha * task.kd_loss(logits, t, temperature) + (1 - alpha) * loss
                opt.zero_grad(set_to_none=True)
                if scaler is None:
                    loss.backward()
                    opt.step()
                else:  # fp16 (CUDA): scaled, or small gradients underflow
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                sched.step()
                if after_step is not None:
                    after_step(model)
                step += 1
                _STEPS_TAKEN += 1
                running = loss.item() if running is None else 0.9 * running + 0.1 * loss.item()
                if step % max(1, total // 5) == 0 or step == total:
                    log(f"{name}: step {step}/{total}  loss {running:.3f}  "
                        f"{time.perf_counter() - t0:.0f}s")
                if early_stop is not None and (step % early_stop.every == 0 or step == total):
                    if _should_stop(model, early_stop, step, name) and step < total:
                        early_stop.stopped_at = total = step
    if early_stop is not None and early_stop.best_state is not None and early_stop.best_step != step:
        model.load_state_dict(early_stop.best_state)
        log(f"{name}: kept the weights of step {early_stop.best_step} (best validation score)")
    if early_stop is not None:
        early_stop.best_state = None  # the weights are the model's now
    if recalibrate:
        recalibrate_batchnorm(model, images, settings.batch_size, seed=settings.seed)
    return model.cpu().to(memory_format=torch.contiguous_format).eval()


def trained_in(model: nn.Module, settings: TrainSettings) -> torch.dtype | None:
    """The autocast dtype `train` runs `model` under (None: fp32), by the precision rule
    (bench.modelling.precision) on the run's device; `precision.name` says it in words."""
    mixed = settings.mixed_precision and _PRECISION == "auto"
    return precision.autocast_dtype(model, _DEVICE) if mixed else None


def _should_stop(model: nn.Module, stop: EarlyStop, step: int, name: str) -> bool:
    """Score the model now (eval mode), keep its weights if they are the best so far, and
    say whether patience has run out (never within the warm-up: EarlyStop)."""
    model.eval()
    with torch.no_grad():
        score = float(stop.score(model))
    model.train().to(memory_format=torch.channels_last)  # predict_logits leaves it contiguous
    if score > max((s for _, s in stop.history), default=-math.inf):
        stop.best_step, stop.best_state = step, copy.deepcopy(model.state_dict())
    stop.history.append((step, round(score, 4)))
    if step < stop.warmup:
        log(f"{name}: step {step}  validation {score:.4f}  (warm-up)")
        return False
    gained = stop._reference is None or score >= stop._reference + stop.min_delta
    if gained:
        stop._reference, stop._gained_at = score, step
    log(f"{name}: step {step}  validation {score:.4f}" + ("" if gained else "  (no gain)"))
    return step - stop._gained_at >= stop.patience


def recalibrate_batchnorm(model: nn.Module, images: np.ndarray, batch_size: int,
                          max_images: int = 512, seed: int = 0) -> None:
    """Re-estimate BN running statistics with the final weights (cumulative average over
    `max_images` training images drawn at random from `seed`, never the first ones: a
    folder's training split is in class order, and the first 512 images of a 3-class
    folder held two of its classes, which left a pruned teacher 0.045 below its own
    validation score): torch.optim.swa_utils.update_bn, which also puts the momenta back
    (a trained model must be the model a checkpoint of it rebuilds: TorchScript writes the
    momentum into the file, and a freshly trained teacher's file once differed from its
    cached copy's by 7 KB, which moved compression ratios)."""
    n = len(images)
    chosen = np.sort(np.random.default_rng(seed).permutation(n)[:max_images])
    loader = (x for x, _, _ in batches(images[chosen], None, batch_size * 2, None))
    torch.optim.swa_utils.update_bn(loader, model, device=device_of(model))
    model.eval()


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, batch_size: int = 128,
                   fast: bool = False) -> torch.Tensor:
    """Logits in channels-last format where every weight is a float (DenseNet-121 at
    64 px: 3.3-3.7 -> 1.9-2.1 ms an image here); quantized modules as they are.

    `fast`: under the autocast the training rule gives `model` (`trained_in`: bf16 on a
    CPU with AMX for an architecture without depthwise convolutions; DenseNet-121's logits
    on 512 images 2.8x faster here), for passes whose logits train or decide rather than
    report: the soft targets of the model a step distils (the teacher's or a parent's) and
    a fine-tune's early-stop scores. Reported figures (the manifest's validation AUC,
    parity references) stay fp32."""
    model.eval()
    fmt = (torch.channels_last if all(p.is_floating_point() for p in model.parameters())
           else torch.preserve_format)
    dtype = scoring_dtype(model) if fast else None
    with on_device(model) as device:
        if fmt is torch.channels_last:
            model.to(memory_format=fmt)
        try:
            with precision.autocast(device, dtype):
                out = [model(x.to(device).contiguous(memory_format=fmt)).float().cpu()
                       for x, _, _ in batches(images, None, batch_size, None)]
        finally:
            if fmt is torch.channels_last:
                model.to(memory_format=torch.contiguous_format)
    return torch.cat(out)


def scoring_dtype(model: nn.Module) -> torch.dtype | None:
    """The autocast dtype of a `fast` pass: the one `model` trains under (None: fp32)."""
    return precision.autocast_dtype(model, _DEVICE) if _PRECISION == "auto" else None


def auc_of(model: nn.Module, task: Task, images: np.ndarray, labels, fast: bool = False) -> float:
    """The model's AUC-ROC on a held-out split (the validation one: what a fine-tune's
    EarlyStop scores, `fast`, and the manifest records of the teacher)."""
    probs = task.probabilities(predict_logits(model, images, fast=fast)).numpy()
    return auc_roc(task, labels, task.scores(probs))[0]
