"""What every on-disk loader shares once its images are read: one-line errors, the order
of two classes, seeded splits, and the bundle (`make_bundle`: standardised splits, a
calibration subset and the fingerprint that keys every cache built on them).

Loaders read local paths only; reading and decoding the image files is
bench.data.images'. A format's `load` ends in `make_bundle`, so every dataset is
standardised, counted and fingerprinted the same way.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence

import numpy as np

from bench.data import DataBundle, Split
from bench.task_kinds import Task

LOADER_VERSION = 1  # bump when decoding (bench.data.images) or splitting changes: in every fingerprint
VAL_FRACTION = 0.1
TEST_FRACTION = 0.2


def data_error(path, problem: str, expected: str, obtain: str) -> ValueError:
    """The one-line error every loader raises: the path, what is wrong, what was expected,
    and where the data comes from (nothing is ever downloaded)."""
    text = f"{path}: {problem}; expected {expected}; obtain it from {obtain} (nothing is downloaded)"
    return ValueError(" ".join(text.split()))


NORMAL_NAMES = ("normal", "negative", "healthy", "benign", "uninfected", "no_finding",
                "no finding", "nofinding", "0", "no")


def normal_first(names: Sequence[str]) -> list[str]:
    """Two class names, negative first when one of them names the normal case."""
    names = list(names)
    if len(names) == 2 and names[1].lower() in NORMAL_NAMES and names[0].lower() not in NORMAL_NAMES:
        return [names[1], names[0]]
    return names


# ---------------------------------------------------------------- splits

def stratified_split(y: np.ndarray, seed: int, fractions: dict[str, float]) -> dict[str, np.ndarray]:
    """Seeded stratified split of indices into the named fractions (the rest is 'train')."""
    from sklearn.model_selection import train_test_split

    n_classes = len(np.unique(y))
    rest = np.arange(len(y))
    out = {}
    for name, frac in fractions.items():
        k = max(n_classes, int(round(frac * len(y))))
        if len(rest) - k < n_classes:
            raise ValueError(f"too few images for a stratified {name} split "
                             f"({len(y)} images, {n_classes} classes)")
        rest, out[name] = train_test_split(rest, test_size=k, stratify=y[rest],
                                           random_state=seed + len(out))
    out["train"] = rest
    return {k: np.sort(v) for k, v in out.items()}


def grouped_split(groups: np.ndarray, seed: int, fractions: dict[str, float],
                  y: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Split indices so that no group (patient, lesion) is in two splits.

    With class labels, StratifiedGroupKFold keeps class shares close to equal across
    splits (HAM10000's rare classes); for multilabel targets, or classes too small to
    stratify, GroupShuffleSplit.
    """
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    rest = np.arange(len(groups))
    out = {}
    share = 1.0
    for name, frac in fractions.items():
        f = frac / share
        if len(np.unique(groups[rest])) < 2:
            raise ValueError(f"too few groups (patients or lesions) for a {name} split")
        n_splits = max(2, int(round(1 / f)))
        # stratify when some class has at least one member per fold (else sklearn refuses)
        if y is not None and np.bincount(y[rest]).max() >= n_splits \
                and len(np.unique(groups[rest])) >= n_splits:
            cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed + len(out))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # a class rarer than n_splits
                keep, take = next(cv.split(rest, y[rest], groups[rest]))
        else:
            cv = GroupShuffleSplit(n_splits=1, test_size=f, random_state=seed + len(out))
            keep, take = next(cv.split(rest, groups=groups[rest]))
        out[name] = rest[take]
        rest = rest[keep]
        share -= frac
    out["train"] = rest
    return {k: np.sort(v) for k, v in out.items()}


# ---------------------------------------------------------------- the bundle

def class_counts(task: Task, labels: np.ndarray) -> dict:
    if task.kind == "multilabel":
        return {name: {"positive": int(np.nansum(labels[:, j] == 1)),
                       "negative": int(np.nansum(labels[:, j] == 0)),
                       "ignored": int(np.isnan(labels[:, j]).sum())}
                for j, name in enumerate(task.class_names)}
    counts = np.bincount(labels, minlength=task.num_outputs)
    return {name: int(c) for name, c in zip(task.class_names, counts, strict=True)}


def make_bundle(name: str, task: Task, parts: dict[str, tuple[np.ndarray, np.ndarray]],
                image_size: int, seed: int, calibration: int, config: dict,
                info: dict, groups: dict[str, Sequence] | None = None,
                transfer: np.ndarray | None = None) -> DataBundle:
    """Standardise uint8 images with the train split's per-channel mean and std, and pack.

    `parts` maps train / val / test to (uint8 (N, H, W) or (N, H, W, 3), labels);
    `groups` the same splits to a patient (or lesion) id per image, where there are any;
    `transfer` unlabelled images (uint8, like the splits) for distillation.
    """
    for split in ("train", "val", "test"):
        if len(parts[split][0]) == 0:
            raise ValueError(f"{info.get('source', name)}: the {split} split is empty")
    channels = 1 if parts["train"][0].ndim == 3 else 3
    extra = [] if transfer is None else [transfer]
    if any((1 if x.ndim == 3 else 3) != channels for x in [x for x, _ in parts.values()] + extra):
        parts = {k: (_to_rgb(x), y) for k, (x, y) in parts.items()}
        transfer = None if transfer is None else _to_rgb(transfer)
        channels = 3
    mean, std = _channel_stats(parts["train"][0])
    splits = {}
    for split, (x, y) in parts.items():
        labels = (np.asarray(y, np.float32) if task.kind == "multilabel"
                  else np.asarray(y, np.int64))
        ids = None if groups is None else np.asarray(groups[split], dtype=object)
        splits[split] = Split(_standardise(x, mean, std), labels, ids)
    rng = np.random.default_rng(seed)
    n_cal = min(calibration, len(splits["train"]))
    cal_idx = np.sort(rng.choice(len(splits["train"]), n_cal, replace=False))
    config = {**config, "loader_version": LOADER_VERSION, "image_size": image_size,
              "seed": seed, "calibration": n_cal}
    fingerprint = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()
                                 ).hexdigest()[:16]
    info = {**info, "task": task.kind, "classes": list(task.class_names),
            "image_size": image_size, "channels": channels, "seed": seed,
            "counts": {k: len(v) for k, v in splits.items()},
            "class_counts": {k: class_counts(task, v.labels) for k, v in splits.items()},
            "normalization": {"mean": mean.tolist(), "std": std.tolist(),
                              "formula": "(pixel / 255 - mean[c]) / std[c]"},
            "calibration": f"{n_cal} training images, seeded random choice"}
    if transfer is not None:
        info["counts"]["unlabelled"] = len(transfer)
    return DataBundle(name=name, task=task, image_size=image_size,
                      calibration=splits["train"].images[cal_idx], fingerprint=fingerprint,
                      info=info, transfer=None if transfer is None else
                      _standardise(transfer, mean, std), **splits)


def _to_rgb(x: np.ndarray) -> np.ndarray:
    return np.repeat(x[..., None], 3, axis=3) if x.ndim == 3 else x


def _channel_stats(x: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-channel mean and std of pixel/255, from 256-bin histograms (fast on uint8)."""
    c = 1 if x.ndim == 3 else x.shape[3]
    counts = np.zeros((c, 256), np.int64)
    for i in range(0, len(x), chunk):
        part = x[i:i + chunk]
        for k in range(c):
            counts[k] += np.bincount((part if c == 1 else part[..., k]).ravel(), minlength=256)
    v = np.arange(256) / 255
    n = counts.sum(1)
    mean = counts @ v / n
    std = np.sqrt(np.maximum(counts @ (v * v) / n - mean ** 2, 0))
    return mean, np.where(std > 1e-6, std, 1.0)  # constant images: leave them centred


def _standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W[, C]) -> float32 (N, C, H, W) through a 256-entry table per channel."""
    n, h, w = x.shape[:3]
    out = np.empty((n, len(mean), h, w), np.float32)
    v = np.arange(256) / 255
    for k in range(len(mean)):
        table = ((v - mean[k]) / std[k]).astype(np.float32)
        out[:, k] = table[x if x.ndim == 3 else x[..., k]]
    return out
