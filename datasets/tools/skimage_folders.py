"""Two real-image folder datasets made from the photographs scikit-image ships in its
wheel (nothing is downloaded), for checking the bench on real images rather than the
generated data:

* ``textures``: 4 balanced classes of grayscale crops (brick, grass and gravel
  textures, an immunohistochemistry slide); 2,000 / 500 / 800 labelled images and 4,000
  unlabelled ones;
* ``fundus``: 3 imbalanced classes of grayscale crops, 65% / 25% / 10% in every split
  (a retinal fundus photograph, an IHC slide, a cell micrograph); the same counts.

Each photograph is cut into disjoint horizontal bands (train and unlabelled 0-55% of its
rows, validation 55-70%, test 70-100%), so no test pixel is ever seen in training. A crop
is a square of 32-64 px at a random place in its band, resized to 64 px, with a random
contrast (x0.7-1.3), brightness (+-0.15) and Gaussian noise (sd 0.08): the classes are
told apart by texture, not by a crop's mean grey. Seeded, so a dataset is the same
every time it is made. Needs scikit-image (``pip install -e '.[examples]'``):

    python datasets/tools/skimage_folders.py textures ~/data/textures
    python -m bench run --dataset folder:~/data/textures --methods kd,prune,quant
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from skimage import color, data, io, transform

SIZE = 64
#: rows of each photograph (fractions) that each split's crops come from
BANDS = {"train": (0.0, 0.55), "unlabelled": (0.0, 0.55), "val": (0.55, 0.7), "test": (0.7, 1.0)}
COUNTS = {"train": 2000, "val": 500, "test": 800, "unlabelled": 4000}


def _gray(image: np.ndarray) -> np.ndarray:
    image = image[..., :3] if image.ndim == 3 else image
    gray = color.rgb2gray(image) if image.ndim == 3 else image / 255.0
    return gray.astype(np.float32)


def _fundus() -> np.ndarray:
    """The fundus photograph at half size, its black surround marked NaN (no crop there)."""
    gray = transform.rescale(_gray(data.retina()), 0.5, anti_aliasing=True)
    gray[gray < 0.08] = np.nan
    return gray.astype(np.float32)


#: name -> (class -> photograph, class -> share of every split)
DATASETS = {
    "textures": ({"brick": lambda: _gray(data.brick()), "grass": lambda: _gray(data.grass()),
                  "gravel": lambda: _gray(data.gravel()), "tissue": lambda: _gray(data.immunohistochemistry())},
                 {"brick": 0.25, "grass": 0.25, "gravel": 0.25, "tissue": 0.25}),
    "fundus": ({"fundus": _fundus, "tissue": lambda: _gray(data.immunohistochemistry()),
                "cells": lambda: _gray(data.cell())},
               {"fundus": 0.65, "tissue": 0.25, "cells": 0.10}),
}


def crop(photo: np.ndarray, band: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """One augmented 64 px crop from `band`'s rows of `photo` (never over a NaN pixel)."""
    rows = int(band[0] * photo.shape[0]), int(band[1] * photo.shape[0])
    for _ in range(1000):
        side = int(rng.integers(32, 65))
        top = int(rng.integers(rows[0], rows[1] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - side + 1))
        patch = photo[top:top + side, left:left + side]
        if not np.isnan(patch).any():
            break
    else:
        raise RuntimeError("no crop without masked pixels in 1000 tries")
    patch = transform.resize(patch, (SIZE, SIZE), anti_aliasing=True)
    patch = (patch - patch.mean()) * rng.uniform(0.7, 1.3) + patch.mean() + rng.uniform(-0.15, 0.15)
    patch = patch + rng.normal(0.0, 0.08, patch.shape)
    return (np.clip(patch, 0.0, 1.0) * 255).round().astype(np.uint8)


def make(name: str, out: Path, seed: int = 0) -> dict[str, dict[str, int]]:
    """Write `name`'s dataset under `out` (train/ val/ test/ CLASS/, unlabelled/); returns
    the counts per split and class."""
    sources, shares = DATASETS[name]
    photos = {cls: load() for cls, load in sources.items()}
    rng = np.random.default_rng(seed)
    counts: dict[str, dict[str, int]] = {}
    for split, total in COUNTS.items():
        counts[split] = {cls: int(round(total * share)) for cls, share in shares.items()}
        for cls, n in counts[split].items():
            folder = out / split if split == "unlabelled" else out / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                io.imsave(folder / f"{cls}-{i:05d}.png", crop(photos[cls], BANDS[split], rng),
                          check_contrast=False)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(DATASETS))
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = args.out.expanduser()
    if out.exists() and any(out.iterdir()):
        parser.error(f"{out} is not empty")
    for split, per_class in make(args.name, out, args.seed).items():
        print(f"{split}: " + ", ".join(f"{cls} {n}" for cls, n in per_class.items()))


if __name__ == "__main__":
    main()
