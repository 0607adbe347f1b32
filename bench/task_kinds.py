"""Task types (binary, multiclass, multilabel): losses, probabilities and KD losses.

Everything that differs between task types lives here, so training, distillation and
metrics stay task-agnostic. Binary tasks use two softmax outputs (as the reference
COVID-19 and malaria papers do); the positive-class probability is their score.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

TASK_KINDS = ("binary", "multiclass", "multilabel")


@dataclass(frozen=True)
class Task:
    kind: str
    class_names: tuple[str, ...]
    #: the hard-label loss's weight per class (multilabel: per label's positives), for
    #: imbalanced training splits (bench.data.class_weights); None: unweighted
    class_weight: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.kind not in TASK_KINDS:
            raise ValueError(f"unknown task kind {self.kind!r}; expected one of {TASK_KINDS}")
        if self.kind == "binary" and len(self.class_names) != 2:
            raise ValueError("a binary task has exactly two class names (negative, positive)")
        if self.class_weight is not None and len(self.class_weight) != len(self.class_names):
            raise ValueError(f"{len(self.class_weight)} class weights for "
                             f"{len(self.class_names)} classes")

    @property
    def num_outputs(self) -> int:
        return len(self.class_names)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Hard-label loss over the labelled targets: multilabel NaN ('ignore', or an
        unlabelled image) and class -1 (an unlabelled image) are masked out. With
        `class_weight`, torch's weighted losses: multilabel positives scaled by
        `pos_weight`; otherwise each image weighs its class's weight, in a weighted mean
        (as `cross_entropy(weight=...)` averages)."""
        weight = None if self.class_weight is None else torch.tensor(
            self.class_weight, dtype=logits.dtype, device=logits.device)
        if self.kind == "multilabel":
            mask = ~torch.isnan(y)
            per = F.binary_cross_entropy_with_logits(logits, torch.nan_to_num(y), reduction="none",
                                                     pos_weight=weight)
            return (per * mask).sum() / mask.sum().clamp(min=1)
        y = y.long()
        mask = y >= 0
        target = y.clamp(min=0)
        per = F.cross_entropy(logits, target, reduction="none", weight=weight)
        if weight is None:
            return (per * mask).sum() / mask.sum().clamp(min=1)
        total = (weight[target] * mask).sum()
        return (per * mask).sum() / torch.where(total > 0, total, torch.ones_like(total))

    def unlabelled(self, n: int) -> torch.Tensor:
        """Targets that mark n images as unlabelled (no hard-label loss: KD only)."""
        if self.kind == "multilabel":
            return torch.full((n, self.num_outputs), float("nan"))
        return torch.full((n,), -1, dtype=torch.int64)

    def kd_loss(self, student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        """Hinton's soft-target loss, scaled by T^2 so its gradients match the hard loss.

        Softmax KL with reduction='batchmean' (STACK-NOTES: 'mean' has the wrong scale);
        for multilabel, a per-label Bernoulli KL of sigmoid(t/T) against sigmoid(s/T).
        """
        t = temperature
        if self.kind == "multilabel":
            p_t = torch.sigmoid(teacher / t)
            log_s = F.logsigmoid(student / t)
            log_1s = F.logsigmoid(-student / t)
            log_t = F.logsigmoid(teacher / t)
            log_1t = F.logsigmoid(-teacher / t)
            kl = p_t * (log_t - log_s) + (1 - p_t) * (log_1t - log_1s)
            return kl.mean() * t * t
        return F.kl_div(
            F.log_softmax(student / t, dim=1),
            F.log_softmax(teacher / t, dim=1),
            reduction="batchmean",
            log_target=True,
        ) * t * t

    def ensemble_soft_logits(self, members: list[torch.Tensor], temperature: float) -> torch.Tensor:
        """Logits whose soft targets at `temperature` are the members' averaged soft targets.

        T * log(mean_i softmax(z_i / T)) (multilabel: T * logit(mean_i sigmoid(z_i / T))),
        so kd_loss with these logits distils from the average of the teachers' soft
        targets, exactly, at any temperature.
        """
        z = torch.stack(members) / temperature
        if self.kind == "multilabel":
            p = torch.sigmoid(z).mean(0).clamp(1e-7, 1 - 1e-7)
            return temperature * (torch.log(p) - torch.log1p(-p))
        log_mean = torch.logsumexp(F.log_softmax(z, dim=-1), dim=0) - torch.log(
            torch.tensor(float(len(members))))
        return temperature * log_mean

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        if self.kind == "multilabel":
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=1)

    def scores(self, probs):
        """The array metrics take: P(positive) for binary, the full matrix otherwise."""
        return probs[:, 1] if self.kind == "binary" else probs

    def predicted_labels(self, probs, threshold: float = 0.5):
        if self.kind == "multilabel":
            return (probs >= threshold).astype("int64")
        if self.kind == "binary":
            return (probs[:, 1] >= threshold).astype("int64")
        return probs.argmax(axis=1)
