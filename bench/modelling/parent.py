"""The model being distilled, scored online: consistent distillation under augmentation.

With augmentation on, a logit precomputed on the un-augmented image is not the teacher's
answer for the view the student trains on; `bench.modelling.training.train` then asks
the parent (`Parent`) for its logits on each augmented batch instead (eval mode, no
gradient), so the soft labels and the view always match (Beyer et al. 2022, "Knowledge
distillation: a good teacher is patient and consistent"). Without augmentation the
precomputed logits are exactly these, and training keeps reading them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Parent:
    """One model (or an ensemble's members, whose outputs `combine` makes one target,
    as the ensemble's precomputed soft targets are made) to score training views."""

    modules: tuple[nn.Module, ...]
    combine: Callable[[list[torch.Tensor]], torch.Tensor] | None = None
    #: torch.autocast dtype for the parent's passes (None: fp32)
    autocast: torch.dtype | None = None

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        amp = (torch.autocast(x.device.type, dtype=self.autocast) if self.autocast is not None
               else nullcontext())
        with amp:
            outs = [m(x).float() for m in self.modules]
        return outs[0] if self.combine is None else self.combine(outs)

    @contextmanager
    def ready(self, device: torch.device) -> Iterator[Parent]:
        """The parent on `device`, in eval mode and channels-last for the training; put
        back as it was found (device, mode, memory format) afterwards."""
        homes = [(m, next(m.parameters()).device, m.training) for m in self.modules]
        try:
            for m in self.modules:
                m.to(device, memory_format=torch.channels_last).eval()
            yield self
        finally:
            for m, home, training in homes:
                m.to(home, memory_format=torch.contiguous_format).train(training)
