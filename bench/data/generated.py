"""The generated dataset as a bundle: the splits bench.data.synthetic makes, cached by
fingerprint under the bench cache (the default 11,300 images take about 6 s to make and
0.3 s to read back), standardised with the train split's mean and std.

It is apart from the generator, which only draws images from a seed, and from the
package's `load_dataset`, which only dispatches: this is the one place the generated
data meets the cache and becomes a DataBundle like any loaded dataset.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np

from bench import cache
from bench.data import DataBundle, Split, SyntheticSizes
from bench.task_kinds import Task


def _read_generated(path: Path) -> dict:
    with np.load(path) as z:
        parts = {k[:-7]: (z[k], z[k[:-7] + ".labels"]) for k in z.files if k.endswith(".images")}
    if "train" not in parts or "test" not in parts:
        raise ValueError("no train or test split in it")
    return parts


def _generated(fingerprint: str, sizes: SyntheticSizes, image_size: int, task: str,
               num_classes: int, seed: int) -> dict:
    """The generated splits, (images, labels) each, cached by fingerprint (the default
    11,300 images take about 6 s to make and 0.3 s to read back)."""
    from bench.data import synthetic

    path = cache.cache_dir() / "data" / f"synthetic-{fingerprint}.npz"
    cached = cache.read_or_rebuild(path, _read_generated, "generated-data")
    if cached is not None:
        return cached
    # Distinct seeds per split: the test set never shares a generated case with train;
    # the unlabelled transfer images (labels dropped by the loader) have their own too.
    parts = {}
    for offset, (split, n) in enumerate((("train", sizes.train), ("val", sizes.val),
                                         ("test", sizes.test), ("transfer", sizes.transfer))):
        if n:
            parts[split] = synthetic.generate(n, image_size, task, num_classes,
                                              seed=seed * 1000 + offset)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **{f"{k}.{part}": v for k, (x, y) in parts.items()
                     for part, v in (("images", x), ("labels", y))})
    try:
        cache.atomic_write_bytes(path, buf.getvalue())
    except OSError as exc:  # a full disk costs the cache, not the run
        print(f"warning: {path}: generated data not cached ({exc})", file=sys.stderr)
    return parts


def synthetic_bundle(image_size: int, seed: int, task: str, num_classes: int,
                     sizes: SyntheticSizes) -> DataBundle:
    from bench.data import synthetic

    if image_size < 16:
        raise ValueError(f"--image-size {image_size}: the generator needs at least 16 pixels")
    names = synthetic.class_names(task, num_classes)
    config = {"generator": "synthetic", "version": synthetic.GENERATOR_VERSION, "task": task,
              "classes": list(names), "image_size": image_size, "seed": seed,
              "sizes": sizes.__dict__}
    fingerprint = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    parts = _generated(fingerprint, sizes, image_size, task, len(names), seed)
    mean = float(parts["train"][0].mean())
    std = float(parts["train"][0].std())
    splits = {k: Split(((x - mean) / std).astype(np.float32), y) for k, (x, y) in parts.items()
              if k != "transfer"}
    transfer = None
    if "transfer" in parts:
        transfer = ((parts["transfer"][0] - mean) / std).astype(np.float32)
    return DataBundle(
        name="synthetic", task=Task(task, names), image_size=image_size,
        calibration=splits["train"].images[: sizes.calibration], fingerprint=fingerprint,
        info={**config, "normalization": {"mean": mean, "std": std},
              "description": "generated radiograph-like images with faint findings (no download)"},
        transfer=transfer, **splits,
    )
