"""The distil-from-parent fine-tune, public: what a method that changes a trained model
runs after the change (both pruning methods; an outside method such as a low-rank
factorisation), so that every such step trains by the one rule (docs/run.md, "The
training rule") and takes the same parameters (`PARAMS`).

    params = (Param("rank_ratio", ...),) + finetune.PARAMS

    def apply(self, parent, ctx, rank_ratio, **tune):
        model = change(clone(parent.module), rank_ratio)
        model, note = FineTune(**tune).run(model, parent, ctx)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from bench.modelling.training import EarlyStop, auc_of, train
from bench.modelling.training_rule import (
    FINETUNE_LR,
    WARMUP_FRACTION,
    finetune_settings,
    warmup_steps,
)
from methods.base import Artifact, Context, Param
from methods.student import distillation_set, online_parent, soft_targets_of

if TYPE_CHECKING:
    from torch import nn

#: the fine-tune's parameters, to add to a method's own (the names are FineTune's fields)
PARAMS = (
    Param("finetune_epochs", float, -1.0, "fine-tuning epochs after the change (-1: the run's "
                                          "budget)", bounds="[-1, inf)"),
    Param("alpha", float, 0.5, "weight of distillation while fine-tuning (1-alpha: the hard labels)",
          bounds="[0, 1]"),
    Param("temperature", float, 4.0, "KD temperature while fine-tuning", bounds="(0, inf)"),
    Param("lr", float, FINETUNE_LR, "peak AdamW learning rate while fine-tuning (the training "
                                    "rule's for fine-tuning)", bounds="(0, inf)"),
    Param("distil_from", str, "parent", "whose logits the fine-tune distils: the model before "
          "the change (parent) or the run's teacher", choices=("parent", "teacher")),
    Param("unlabelled", bool, False, "true: also distil on the dataset's unlabelled images "
                                     "(labelled by distil_from), as kd does; false: the labelled "
                                     "images only (better on validation here at the same steps)"),
)

#: the steps without a validation gain after which a fine-tune stops, as a fraction of its
#: schedule: as long as its warm-up, whose scores do not count (EarlyStop)
PATIENCE = WARMUP_FRACTION


@dataclass(frozen=True)
class FineTune:
    """One step's fine-tune, from the values of `PARAMS` (`FineTune(**tune)`).

    `run` is the whole of it; a method that fine-tunes in rounds (prune.structured's
    iterative_steps) calls `targets` once, `train` per round and `note` at the end. Each
    round's early stop is kept (`stops`) for the note: a fine-tune that stopped early says
    where, and whose weights it kept."""

    finetune_epochs: float = -1.0
    alpha: float = 0.5
    temperature: float = 4.0
    lr: float = FINETUNE_LR
    distil_from: str = "parent"
    unlabelled: bool = False
    stops: list[EarlyStop] = field(default_factory=list, init=False, repr=False, compare=False)

    def run(self, model: nn.Module, parent: Artifact, ctx: Context) -> tuple[nn.Module, str]:
        """`model` (made from `parent`, changed in place) fine-tuned, and the note saying how."""
        targets = self.targets(parent, ctx)
        return self.train(model, ctx, targets), self.note(parent, ctx, targets)

    def epochs(self, ctx: Context) -> float:
        """The budget: the step's own, or the run's (--finetune-epochs) for a negative one."""
        return ctx.finetune_epochs if self.finetune_epochs < 0 else self.finetune_epochs

    def targets(self, parent: Artifact, ctx: Context) -> tuple:
        """(images, labels, logits, parent) the fine-tune distils: its parent's logits (the model
        before this step: what the changed model should go on computing) or the run's
        teacher's (cached), on the labelled images and, with `unlabelled`, the transfer
        images too."""
        use_transfer = bool(self.unlabelled) and ctx.transfer_images is not None
        source = (ctx.teacher if self.distil_from == "teacher" or parent.module is ctx.teacher
                  else parent.module)
        soft, soft_u = soft_targets_of(source, ctx, self.temperature, use_transfer)
        # with augmentation on, the source scores each augmented view online instead
        return (*distillation_set(ctx, soft, soft_u),
                online_parent(source, ctx, self.temperature))

    def train(self, model: nn.Module, ctx: Context, targets: tuple, epochs: float | None = None,
              label: str | None = None) -> nn.Module:
        """The fine-tuning rule (bench.modelling.training_rule.finetune_settings) with
        distillation, for `epochs` (default: the budget) counted in epochs of the labelled
        images, whatever unlabelled ones are added; stopped early on validation
        (`validation_stop`). Progress lines start with `label` (default: the chain's name)."""
        epochs = self.epochs(ctx) if epochs is None else epochs
        if epochs <= 0:
            return model.eval()
        images, labels, soft, source = targets
        settings = finetune_settings(epochs, ctx.seed, self.lr, ctx.augment)
        settings = replace(settings, steps=settings.total_steps(len(ctx.train_images)))
        stop = validation_stop(ctx, settings.steps)
        if stop is not None:
            self.stops.append(stop)
        return train(model, images, labels, ctx.task, settings, label or ctx.chain or "fine-tune",
                     teacher_logits=soft, alpha=self.alpha, temperature=self.temperature,
                     early_stop=stop, parent=source)

    def note(self, parent: Artifact, ctx: Context, targets: tuple) -> str:
        """The row's note on the fine-tune: its budget, where it stopped and whose weights
        it kept (each round's, on validation), its optimiser and what it distilled."""
        epochs = self.epochs(ctx)
        if epochs <= 0:
            return "not fine-tuned"
        source = "the teacher" if self.distil_from == "teacher" or parent.module is ctx.teacher \
            else f"its parent {parent.name}"
        extra = len(targets[0]) - len(ctx.train_images)
        early = any(stop.stopped_at is not None for stop in self.stops)
        rounds = [("" if len(self.stops) == 1 else f"round {i}: ") + stop.outcome()
                  for i, stop in enumerate(self.stops, 1)]
        return (f"fine-tuned {'at most ' if early else ''}{epochs:g} epochs ("
                + "".join(f"{r}; " for r in rounds)
                + f"AdamW, peak lr {self.lr:g}) distilling {source} "
                f"(alpha {self.alpha}, T {self.temperature})"
                + (f", also on {extra} unlabelled images it labels" if extra else ""))


def validation_stop(ctx: Context, steps: int) -> EarlyStop | None:
    """The stop of a `steps`-long fine-tune (the training rule): scored on the validation
    AUC every half epoch from the changed model on, it stops once a fifth of the schedule
    (`PATIENCE`) has passed without a gain, counted from the end of the warm-up (the
    first dip a warm-up to the peak learning rate causes does not stop it), and keeps the
    best weights. None where the run has no validation split."""
    if ctx.val_images is None or ctx.val_labels is None:
        return None

    def score(model):
        return auc_of(model, ctx.task, ctx.val_images, ctx.val_labels, fast=True)

    half_epoch = max(1, finetune_settings(1, 0).steps_per_epoch(len(ctx.train_images)) // 2)
    return EarlyStop(score=score, every=half_epoch, patience=max(1, round(PATIENCE * steps)),
                     warmup=warmup_steps(steps), score_start=True)
