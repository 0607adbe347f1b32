"""Datasets as in-memory splits, whatever their source: the generator or a local path.

Every loader returns a DataBundle: train / val / test splits plus a calibration subset
of train, already standardised (the mean and std are recorded so a deployment can
reproduce the preprocessing), and a fingerprint that keys every cache built on it.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.tasks import Task


@dataclass
class Split:
    images: np.ndarray  # float32 (N, C, H, W), standardised
    labels: np.ndarray  # int64 (N,) or float32 (N, L); NaN marks an ignored label
    #: patient (or lesion) id per image where the data has them: the bootstrap then
    #: resamples whole patients, as their images are not independent
    groups: np.ndarray | None = None

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
    #: unlabelled training images (standardised like train): the teacher labels them for
    #: `kd`, which a student without a teacher cannot use. The generator makes them; real
    #: datasets have none unless a loader provides them.
    transfer: np.ndarray | None = None


@dataclass(frozen=True)
class SyntheticSizes:
    train: int = 2000
    val: int = 500
    test: int = 800
    calibration: int = 128
    transfer: int = 8000  # unlabelled images for distillation (their labels are dropped)


#: on-disk formats, each a module of bench.data with a `load` function
FORMATS = ("folder", "medmnist", "chexpert", "ham10000")
SPEC_FORMS = "synthetic, folder:DIR, medmnist:FILE.npz, chexpert:CSV, ham10000:CSV"


@dataclass(frozen=True)
class Source:
    """What `--dataset` (and `--data-root`) resolved to: a format, a local path, maybe a card."""

    format: str
    path: Path | None = None
    card: object | None = None  # bench.data.cards.Card


def resolve(spec: str, data_root: str | None = None, image_size: int = 64) -> Source:
    """Check `--dataset` cheaply (names and paths, no reading), so bad input fails at once."""
    from bench.data import cards

    kind, sep, rest = spec.partition(":")
    if kind in ("", "synthetic") and not rest:
        if data_root:
            raise ValueError("--data-root: the synthetic dataset is generated; give --dataset "
                             "CARD or FORMAT:PATH")
        return Source("synthetic")
    card = cards.get(kind) if not sep else None  # a card wins over a format of its name
    if kind in FORMATS and card is None:
        mod = _module(kind)
        if not rest and not data_root:
            raise ValueError(f"--dataset {spec!r}: give a path, {kind}:PATH, or --data-root PATH")
        path = Path(rest or data_root).expanduser()
        if rest and data_root and not path.is_absolute():
            path = Path(data_root).expanduser() / path
        if path.is_dir() and getattr(mod, "DEFAULT_FILES", None):
            found = [path / f for f in mod.DEFAULT_FILES if (path / f).is_file()]
            if not found:
                raise _error(mod, path, f"folder holds none of {', '.join(mod.DEFAULT_FILES)}")
            path = found[0]
        if not path.exists():
            raise _error(mod, path, "not found")
        return Source(kind, path.resolve())
    if card is None:
        names = ", ".join(sorted(cards.all_cards()))
        raise ValueError(f"--dataset {spec!r}: unknown dataset; available: {SPEC_FORMS}, or a "
                         f"card with --data-root PATH: {names}")
    if not data_root:
        raise ValueError(f"--dataset {card.name} needs --data-root PATH: {card.expected()}; "
                         f"obtain it from {card.obtain}")
    root = Path(data_root).expanduser()
    if not root.exists():
        raise ValueError(f"{root}: --data-root not found; expected {card.expected()}; "
                         f"obtain it from {card.obtain} (nothing is downloaded)")
    return Source(card.format, card.locate(root, image_size).resolve(), card)


def _module(fmt: str):
    import importlib

    return importlib.import_module(f"bench.data.{fmt}")


def _error(mod, path, problem: str) -> ValueError:
    from bench.data.common import data_error

    return data_error(path, problem, mod.EXPECTED, mod.OBTAIN)


def load_dataset(spec: str, image_size: int, seed: int, task: str = "binary",
                 num_classes: int = 2, sizes: SyntheticSizes = SyntheticSizes(),
                 data_root: str | None = None, uncertainty: str = "u-ones",
                 frontal_only: bool = False, labels: list[str] | None = None) -> DataBundle:
    """Resolve `--dataset`: `synthetic`, `FORMAT:PATH`, or a card name with `data_root`.

    `task` and `num_classes` shape the generated dataset only: real data defines its own.
    `uncertainty` and `frontal_only` apply to chest X-ray CSVs; `labels` picks (and orders)
    the findings of a CSV or the classes of a folder / HAM10000 CSV.
    """
    src = resolve(spec, data_root, image_size)
    fmt = src.format
    if frontal_only and fmt != "chexpert":
        raise ValueError(f"--frontal-only applies to chexpert CSVs, not to {fmt} data")
    if uncertainty != "u-ones" and fmt != "chexpert":
        raise ValueError(f"--uncertainty applies to chexpert CSVs, not to {fmt} data")
    if labels and fmt in ("synthetic", "medmnist"):
        raise ValueError(f"--labels does not apply to {fmt} data")
    if fmt == "synthetic":
        return synthetic_bundle(image_size, seed, task, num_classes, sizes)
    card = src.card
    name = card.name if card else None
    chosen = list(labels) if labels else (list(card.classes) if card else None)
    cal = sizes.calibration
    mod = _module(fmt)
    if fmt == "medmnist":
        bundle = mod.load(src.path, image_size, seed, cal, name=name)
    elif fmt == "chexpert":
        bundle = mod.load(src.path, image_size, seed, cal, uncertainty, frontal_only, chosen, name)
    elif fmt == "folder":
        bundle = mod.load(src.path, image_size, seed, cal, chosen, name,
                          **({"obtain": card.obtain} if card else {}))
    else:
        bundle = mod.load(src.path, image_size, seed, cal, chosen, name)
    if card is not None:
        if not labels and (bundle.task.kind != card.task
                           or list(bundle.task.class_names) != list(card.classes)):
            raise ValueError(f"{card.path}: the card says {card.task} {list(card.classes)} but "
                             f"{src.path} gives {bundle.task.kind} {list(bundle.task.class_names)}")
        bundle.info.update(card=card.name, title=card.title, licence=card.licence,
                           citation=card.citation)
    return bundle


def _generated(fingerprint: str, sizes: SyntheticSizes, image_size: int, task: str,
               num_classes: int, seed: int) -> dict:
    """The generated splits, (images, labels) each, cached by fingerprint (the default
    11,300 images take about 6 s to make and 0.3 s to read back)."""
    from bench import cache
    from bench.data import synthetic

    path = cache.cache_dir() / "data" / f"synthetic-{fingerprint}.npz"
    if path.exists():
        try:
            with np.load(path) as z:
                return {k[:-7]: (z[k], z[k[:-7] + ".labels"]) for k in z.files
                        if k.endswith(".images")}
        except (OSError, ValueError, KeyError):
            pass  # unreadable: made again below
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
    cache.atomic_write_bytes(path, buf.getvalue())
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
