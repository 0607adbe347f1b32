"""The per-batch augmentation `bench.modelling.training.train` applies on the fly: the
policies are bench.data.augmentation's.

The transform draws every image's parameters from its own torch.Generator seeded from
the run's seed, so a run is reproducible, each step's views differ from the last, and
two trainings with the same seed and batch size (`student` and `kd`) see the same
augmentation stream. It runs on the batch on the CPU, image by image, with
torchvision.transforms.v2's functional affine and flips (a few ms for 32 images at
64 px); intensity jitter is done here, as v2's clamps floats to [0, 1] and these images
are standardised.
"""

from __future__ import annotations

import torch

from bench.data.augmentation import POLICIES

#: a constant mixed into the seed: the augmentation stream is not the weights' stream
_SEED_SALT = 0x5EED_A06


class Augmenter:
    """The per-batch transform of one training: `augmenter(x)` is a new batch, each
    image with its own parameters, drawn in order from a generator seeded by `seed`."""

    def __init__(self, policy: str, seed: int):
        self.policy = POLICIES[policy]
        self.generator = torch.Generator().manual_seed(int(seed) ^ _SEED_SALT)

    def _uniform(self, n: int, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=self.generator)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as tvf

        p, n, size = self.policy, len(x), x.shape[-1]
        if not p.active:
            return x
        # every draw is made for every image, whatever the policy uses: the stream's
        # position depends on the step alone
        flip_h, flip_v = (torch.rand(n, generator=self.generator) < 0.5 for _ in range(2))
        angle = self._uniform(n, -p.degrees, p.degrees)
        shift = self._uniform(2 * n, -p.translate, p.translate).view(n, 2) * size
        scale = self._uniform(n, *p.scale)
        bright = self._uniform(n, -p.brightness, p.brightness)
        contrast = self._uniform(n, 1 - p.contrast, 1 + p.contrast)
        out = []
        for i in range(n):
            img = x[i]
            if p.flips and flip_h[i]:
                img = tvf.horizontal_flip(img)
            if p.flips and flip_v[i]:
                img = tvf.vertical_flip(img)
            fill = float(torch.cat([img[..., 0, :], img[..., -1, :]], -1).mean())  # the border
            img = tvf.affine(img, angle=float(angle[i]), translate=[float(s) for s in shift[i]],
                             scale=float(scale[i]), shear=[0.0, 0.0],
                             interpolation=InterpolationMode.BILINEAR, fill=fill)
            mean = img.mean()
            out.append((img - mean) * contrast[i] + mean + bright[i])
        return torch.stack(out)
