"""The embedded default dataset: radiograph-like images generated from a seed.

No download, deterministic, and deliberately hard: findings are faint, variably placed
and sized, and sit on anatomy (lung fields, ribs, spine, heart), an intensity gradient,
low-frequency mottling that looks like opacities, and pixel noise. Binary (normal vs
opacity), multiclass (normal + one finding per class) and multilabel (independent
findings) tasks come from the same generator.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

# Finding names, in the order classes/labels are assigned. The first five are the
# CheXpert competition labels so a multilabel preset with 5 labels reads naturally.
FINDINGS = ("atelectasis", "cardiomegaly", "consolidation", "edema", "effusion", "nodule")
GENERATOR_VERSION = 1  # bump when the images change: it is part of every cache key
#: the augmentation policy (bench.data.augmentation): radiograph-like, the heart on one
#: side, so no flip; a small affine and intensity jitter
AUGMENT = "upright"


def class_names(task: str, num_classes: int) -> tuple[str, ...]:
    """Names for a synthetic task. Binary is ('normal', 'opacity')."""
    if task == "binary":
        return ("normal", "opacity")
    if task == "multiclass":
        if num_classes < 2:
            raise ValueError("a multiclass task needs at least 2 classes")
        return ("normal",) + tuple(_finding_name(k) for k in range(num_classes - 1))
    if task == "multilabel":
        if num_classes < 1:
            raise ValueError("a multilabel task needs at least 1 label")
        return tuple(_finding_name(k) for k in range(num_classes))
    raise ValueError(f"unknown task {task!r}")


def _finding_name(k: int) -> str:
    base = FINDINGS[k % len(FINDINGS)]
    return base if k < len(FINDINGS) else f"{base}_{k // len(FINDINGS) + 1}"


def generate(n: int, size: int, task: str = "binary", num_classes: int = 2, seed: int = 0,
             difficulty: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Return images (n, 1, size, size) float32 in about [0, 1] and labels.

    Labels: int64 (n,) for binary and multiclass; float32 (n, L) for multilabel.
    `difficulty` scales the findings' contrast down (1.0 is the calibrated default).
    """
    rng = np.random.default_rng(seed)
    names = class_names(task, num_classes)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    images = np.empty((n, 1, size, size), np.float32)
    if task == "multilabel":
        labels = (rng.random((n, len(names))) < 0.3).astype(np.float32)
    else:
        k = len(names)
        # Binary and multiclass: balanced classes.
        labels = rng.permutation(np.arange(n) % k).astype(np.int64)
    for i in range(n):
        img, lungs = _anatomy(rng, xx, yy, size)
        if task == "multilabel":
            present = [j for j in range(len(names)) if labels[i, j] > 0]
        elif labels[i] > 0:
            present = [int(labels[i]) - 1]
        else:
            present = []
        for j in present:
            kind = "opacity" if task == "binary" else FINDINGS[j % len(FINDINGS)]
            img += _finding(rng, kind, xx, yy, lungs, size) / difficulty
        img += _nuisance(rng, xx, yy, size)
        images[i, 0] = img
    np.clip(images, 0.0, 1.0, out=images)
    return images, labels


def _ellipse(xx, yy, cx, cy, rx, ry, soft):
    d = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
    return 1.0 / (1.0 + np.exp(np.minimum((d - 1.0) / soft, 50.0)))


def _blob(xx, yy, cx, cy, r):
    return np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)))


def _log_uniform(rng, low, high):
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _anatomy(rng, xx, yy, size):
    """Body, two lung fields, ribs, spine and heart, each jittered per patient."""
    body = _ellipse(xx, yy, 0.5, 0.55, rng.uniform(0.42, 0.5), rng.uniform(0.5, 0.6), 0.08)
    img = 0.25 + 0.35 * body
    lungs = []
    for side in (-1, 1):
        cx = 0.5 + side * rng.uniform(0.17, 0.22)
        cy = rng.uniform(0.45, 0.52)
        lung = _ellipse(xx, yy, cx, cy, rng.uniform(0.12, 0.16), rng.uniform(0.26, 0.32), 0.15)
        lungs.append((cx, cy, lung))
        img -= 0.28 * lung
    lung_mask = np.maximum(lungs[0][2], lungs[1][2])
    spacing = rng.uniform(0.09, 0.12)
    phase = rng.uniform(0, 2 * np.pi)
    curve = 0.06 * np.cos((xx - 0.5) * np.pi * 1.6)
    ribs = np.clip(np.sin((yy + curve) * 2 * np.pi / spacing + phase), 0, None) ** 3
    img += 0.07 * ribs * lung_mask
    img += 0.22 * _ellipse(xx, yy, 0.5, 0.55, rng.uniform(0.035, 0.05), 0.6, 0.2)
    heart_r = rng.uniform(0.11, 0.14)
    img += 0.2 * _ellipse(xx, yy, 0.45 + rng.uniform(-0.02, 0.02), 0.68, heart_r * 1.3, heart_r, 0.25)
    return img, lungs


def _finding(rng, kind, xx, yy, lungs, size):
    """One faint finding. Contrast ranges are tuned so the default task is hard."""
    cx, cy, lung = lungs[rng.integers(2)]
    if kind in ("opacity", "nodule", "consolidation"):
        r = rng.uniform(0.03, 0.09) if kind == "opacity" else (
            rng.uniform(0.025, 0.045) if kind == "nodule" else rng.uniform(0.07, 0.11))
        px = cx + rng.uniform(-0.08, 0.08)
        py = cy + rng.uniform(-0.18, 0.2) if kind != "consolidation" else cy + rng.uniform(0.05, 0.2)
        # Log-uniform contrast: many findings nearly invisible, some plain. The plain
        # ones make the task learnable in few steps, the faint ones bound the AUC.
        amp = _log_uniform(rng, 0.07, 1.0) if kind == "opacity" else rng.uniform(0.05, 0.2)
        # A soft-edged disc: its rim is what sets a finding apart from smooth mottling.
        shape = _ellipse(xx, yy, px, py, r, r * rng.uniform(0.7, 1.3), 0.25)
        return amp * shape * (0.4 + 0.6 * lung)
    if kind == "cardiomegaly":
        r = rng.uniform(0.16, 0.19)
        return rng.uniform(0.05, 0.1) * _ellipse(xx, yy, 0.45, 0.68, r * 1.3, r, 0.25)
    if kind == "effusion":
        base = cy + 0.22
        haze = 1.0 / (1.0 + np.exp(np.minimum(-(yy - base + rng.uniform(0.0, 0.1)) / 0.03, 50.0)))
        return rng.uniform(0.06, 0.12) * haze * lung
    if kind == "edema":
        both = lungs[0][2] + lungs[1][2]
        return rng.uniform(0.05, 0.1) * _blob(xx, yy, 0.5, 0.5, rng.uniform(0.15, 0.22)) * both
    if kind == "atelectasis":
        angle = rng.uniform(-0.5, 0.5)
        py = cy + rng.uniform(0.0, 0.2)
        d = np.abs((yy - py) * np.cos(angle) - (xx - cx) * np.sin(angle))
        band = np.exp(-(d / 0.012) ** 2) * (np.abs(xx - cx) < rng.uniform(0.06, 0.11))
        return rng.uniform(0.08, 0.15) * band * lung
    raise ValueError(f"unknown finding {kind!r}")


def _nuisance(rng, xx, yy, size):
    """Exposure gradient, opacity-like low-frequency mottling, and quantum noise."""
    gx, gy = rng.normal(0, 0.08, 2)
    out = gx * (xx - 0.5) + gy * (yy - 0.5) + rng.normal(0, 0.03)
    mottle = gaussian_filter(rng.normal(0, 1, (size, size)), sigma=size / 16)
    out += 0.06 * mottle / (mottle.std() + 1e-6) * rng.uniform(0.5, 1.0)
    out += rng.normal(0, 0.035, (size, size))
    return out.astype(np.float32)
