"""Datasets as in-memory splits, whatever their source: the generator or a local path.

Every loader returns a DataBundle: train / val / test splits plus a calibration subset
of train, already standardised (the mean and std are recorded so a deployment can
reproduce the preprocessing), and a fingerprint that keys every cache built on it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from bench.tasks import Task


@dataclass
class Split:
    images: np.ndarray  # float32 (N, C, H, W), standardised
    labels: np.ndarray  # int64 (N,) or float32 (N, L); NaN marks an ignored label

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class DataBundle:
    name: str
    task: Task
    train: Split
    val: Split
    test: Split
    calibration: np.ndarray
    image_size: int
    fingerprint: str
    info: dict = field(default_factory=dict)  # recorded in the manifest


@dataclass(frozen=True)
class SyntheticSizes:
    train: int = 2000
    val: int = 500
    test: int = 800
    calibration: int = 128


def load_dataset(spec: str, image_size: int, seed: int, task: str = "binary",
                 num_classes: int = 2, sizes: SyntheticSizes = SyntheticSizes()) -> DataBundle:
    """Resolve `--dataset`. Only the embedded generator exists so far."""
    kind, _, _path = spec.partition(":")
    if kind in ("", "synthetic"):
        return synthetic_bundle(image_size, seed, task, num_classes, sizes)
    raise ValueError(f"--dataset {spec!r}: unknown dataset; available: synthetic")


def synthetic_bundle(image_size: int, seed: int, task: str, num_classes: int,
                     sizes: SyntheticSizes) -> DataBundle:
    from bench.data import synthetic

    if image_size < 16:
        raise ValueError(f"--image-size {image_size}: the generator needs at least 16 pixels")
    names = synthetic.class_names(task, num_classes)
    # Distinct seeds per split: the test set never shares a generated case with train.
    parts = {}
    for offset, (split, n) in enumerate((("train", sizes.train), ("val", sizes.val),
                                         ("test", sizes.test))):
        parts[split] = synthetic.generate(n, image_size, task, len(names), seed=seed * 1000 + offset)
    mean = float(parts["train"][0].mean())
    std = float(parts["train"][0].std())
    splits = {k: Split(((x - mean) / std).astype(np.float32), y) for k, (x, y) in parts.items()}
    config = {"generator": "synthetic", "version": synthetic.GENERATOR_VERSION, "task": task,
              "classes": list(names), "image_size": image_size, "seed": seed,
              "sizes": sizes.__dict__}
    fingerprint = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    return DataBundle(
        name="synthetic", task=Task(task, names), image_size=image_size,
        calibration=splits["train"].images[: sizes.calibration], fingerprint=fingerprint,
        info={**config, "normalization": {"mean": mean, "std": std},
              "description": "generated radiograph-like images with faint findings (no download)"},
        **splits,
    )
