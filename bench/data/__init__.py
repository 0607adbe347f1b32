"""Datasets as in-memory splits, whatever their source: the generator or a local path.

Every loader returns a DataBundle: train / val / test splits plus a calibration subset
of train, already standardised (the mean and std are recorded so a deployment can
reproduce the preprocessing), and a fingerprint that keys every cache built on it.

`--dataset` is `synthetic`, a card name (with `--data-root`), or `FORMAT:PATH` for any
format in the FORMATS registry (bench.data.formats): the built-ins and those third-party
packages add through the `medbench.formats` entry point. Nothing here names a format:
`check` and `load_dataset` read what each Format class declares, so a new one needs no
edit here. `check` is cheap (no image is read) so a run fails on bad input before training.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from bench.data import augmentation, class_weights
from bench.data.formats import (
    FORMATS,
    OPTIONS,
    UNCERTAINTY_POLICIES,
    Format,
    LoadRequest,
    option_error,
    ordered,
)
from bench.task_kinds import Task

__all__ = ["FORMATS", "DataBundle", "DataConfig", "Format", "LoadRequest", "Source", "Split",
           "SyntheticSizes", "check", "load_dataset", "resolve", "spec_forms"]


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
    #: the augmentation policy every training on it uses (bench.data.augmentation): the
    #: dataset's own (its card's, its format's, the generator's), or --augment's
    augment: str = "none"


@dataclass(frozen=True)
class SyntheticSizes:
    train: int = 2000
    val: int = 500
    test: int = 800
    calibration: int = 128
    transfer: int = 8000  # unlabelled images for distillation (their labels are dropped)


@dataclass
class DataConfig:
    """The run configuration's data section (bench.config.sections.RunConfig.data)."""

    dataset: str = "synthetic"  # synthetic, a card name (with data_root), or FORMAT:PATH
    data_root: str | None = None
    uncertainty: str = "u-ones"  # CheXpert-style uncertain labels: u-ones, u-zeros, u-ignore
    frontal_only: bool = False
    labels: list[str] | None = None  # findings / classes to keep, in order
    task: str = "binary"  # the synthetic dataset's task and classes (real data has its own)
    num_classes: int = 2
    image_size: int = 64
    sizes: SyntheticSizes = field(default_factory=SyntheticSizes)
    #: --augment: `dataset` (the dataset's policy), `none`, or a policy's name
    #: (bench.data.augmentation.POLICIES)
    augment: str = "none"
    #: --class-weights: the hard-label loss's class weights (bench.data.class_weights)
    class_weights: str = "none"


def spec_forms() -> str:
    """The `--dataset FORMAT:PATH` forms, from the registry: a plug-in format shows up too."""
    return ", ".join(["synthetic", *(fmt.spec for fmt in ordered().values())])


@dataclass(frozen=True)
class Source:
    """What `--dataset` (and `--data-root`) resolved to: a format, a local path, maybe a card."""

    format: str
    path: Path | None = None
    card: object | None = None  # bench.data.cards.Card


def _expand(text: str, flag: str) -> Path:
    """`text` as a Path with `~` expanded. `~nobody/x` (no such user) makes pathlib raise
    RuntimeError: bad input like a missing path, so a one-line ValueError."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        raise ValueError(f"{flag} {text!r}: cannot expand '~' (no such user, or no home "
                         "directory)") from None


def _unreadable(exc: OSError) -> str:
    """Why the OS refused to look at a path (a name too long, a folder we may not read):
    pathlib's exists() and is_dir() raise these rather than answering False."""
    return f"cannot be read ({exc.strerror or exc})"


def is_synthetic(spec: str) -> bool:
    """`--dataset` names the generated data (`synthetic`, or nothing)."""
    kind, _, rest = spec.partition(":")
    return kind in ("", "synthetic") and not rest


def resolve(spec: str, data_root: str | None = None, image_size: int = 64) -> Source:
    """Check `--dataset` cheaply (names and paths, no reading), so bad input fails at once."""
    from bench.data import cards

    kind, sep, rest = spec.partition(":")
    if is_synthetic(spec):
        if data_root:
            raise ValueError("--data-root: the synthetic dataset is generated; give --dataset "
                             "CARD or FORMAT:PATH")
        return Source("synthetic")
    card = cards.get(kind) if not sep else None  # a card wins over a format of its name
    if card is None and kind in FORMATS:
        fmt = FORMATS.get(kind)()
        if not rest and not data_root:
            raise ValueError(f"--dataset {spec!r}: give a path, {kind}:PATH, or --data-root PATH")
        path = _expand(rest, "--dataset") if rest else _expand(data_root, "--data-root")
        if rest and data_root and not path.is_absolute():
            path = _expand(data_root, "--data-root") / path
        try:
            if path.is_dir() and fmt.default_files:
                found = [path / f for f in fmt.default_files if (path / f).is_file()]
                if not found:
                    raise fmt.error(path, f"folder holds none of {', '.join(fmt.default_files)}")
                path = found[0]
            if not path.exists():
                raise fmt.error(path, "not found")
            return Source(kind, path.resolve())
        except OSError as exc:
            raise fmt.error(path, _unreadable(exc)) from None
    if card is None:
        names = ", ".join(sorted(cards.all_cards()))
        raise ValueError(f"--dataset {spec!r}: unknown dataset; available: {spec_forms()}, or "
                         f"a card with --data-root PATH: {names}")
    if not data_root:
        raise ValueError(f"--dataset {card.name} needs --data-root PATH: {card.expected()}; "
                         f"obtain it from {card.obtain}")
    root = _expand(data_root, "--data-root")
    try:
        if not root.exists():
            raise ValueError(f"{root}: --data-root not found; expected {card.expected()}; "
                             f"obtain it from {card.obtain} (nothing is downloaded)")
        return Source(card.format, card.locate(root, image_size).resolve(), card)
    except OSError as exc:
        raise ValueError(f"{root}: --data-root {_unreadable(exc)}; expected "
                         f"{card.expected()}") from None


def check(data: DataConfig) -> Source:
    """Everything about the data section that is cheap to check, without reading an image:
    the spec, paths and card, the image size, and that every option given applies to the
    format. The run calls it before any training, so bad input costs no minutes."""
    augmentation.check(data.augment)
    class_weights.check(data.class_weights)
    default = DataConfig()
    # --task and --num-classes shape the generated data; "given" is read as "differs from
    # the default", as for the options below
    if not is_synthetic(data.dataset) and (data.task, data.num_classes) != (
            default.task, default.num_classes):
        raise ValueError(f"--task and --num-classes shape the synthetic dataset; "
                         f"{data.dataset} defines its own task and classes")
    if data.labels is not None and not all(data.labels):
        raise ValueError(f"--labels {','.join(data.labels)!r}: empty name in the list")
    src = resolve(data.dataset, data.data_root, data.image_size)
    card = src.card
    if src.format == "synthetic":
        from bench.data import synthetic

        if data.image_size < 16:
            raise ValueError(f"--image-size {data.image_size}: the generator needs at least "
                             "16 pixels")
        _check_synthetic_classes(data)
        try:
            synthetic.class_names(data.task, data.num_classes)
        except ValueError as exc:
            raise ValueError(f"--task {data.task} --num-classes {data.num_classes}: {exc}") from None
        accepted: frozenset[str] = frozenset()
    else:
        if data.image_size < 1:
            raise ValueError(f"--image-size {data.image_size}: must be a positive number of pixels")
        accepted = FORMATS.get(src.format).options
    given = [o for o in OPTIONS if getattr(data, o) and getattr(data, o) != getattr(default, o)]
    for option in given:
        if option not in accepted:
            raise option_error(option, f"{card.name} ({src.format})" if card else src.format)
    if data.uncertainty not in UNCERTAINTY_POLICIES:
        raise ValueError(f"--uncertainty {data.uncertainty!r}: expected one of "
                         f"{', '.join(UNCERTAINTY_POLICIES)}")
    if data.labels:
        twice = sorted({c for c in data.labels if list(data.labels).count(c) > 1})
        if twice:
            raise ValueError(f"--labels: {', '.join(map(repr, twice))} given more than once")
    return src


def _check_synthetic_classes(data: DataConfig) -> None:
    """The generated task's class count, before `synthetic.class_names` builds a name per
    class: `--num-classes 100000000000` made it build a tuple of 10^11 names (minutes, then
    out of memory) inside a check meant to cost milliseconds. The generator deals classes
    round-robin over each split's images, so a class beyond the smallest split's image
    count would be missing from it. Binary has two classes: any other --num-classes was
    silently ignored, so it is refused."""
    n, task = data.num_classes, data.task
    if task == "binary":
        if n != 2:
            raise ValueError(f"--num-classes {n}: a binary task has 2 classes; give --task "
                             "multiclass or multilabel for more")
        return
    sizes = (data.sizes.train, data.sizes.val, data.sizes.test)
    smallest = min((k for k in sizes if k > 0), default=0)
    if n > smallest:
        raise ValueError(f"--num-classes {n}: the generated {task} data has at most {smallest} "
                         f"(the images of its smallest split)")


def load_dataset(data: DataConfig, seed: int) -> DataBundle:
    """The data section as splits: `synthetic`, `FORMAT:PATH`, or a card with `data_root`,
    with the augmentation policy training uses (`dataset_policy`, or --augment's) and the
    loss's class weights (--class-weights: bench.data.class_weights) in its task."""
    bundle = _load(data, seed)
    bundle.augment = augmentation.resolve(data.augment, dataset_policy(data))
    bundle.info["augment"] = augmentation.POLICIES[bundle.augment].describe()
    task, labels = bundle.task, bundle.train.labels
    weight = class_weights.weights(data.class_weights, task.kind, task.num_outputs, labels)
    bundle.task = replace(task, class_weight=weight)
    bundle.info["class_weights"] = class_weights.describe(
        data.class_weights, task.kind, weight, class_weights.imbalance(task.kind, labels))
    return bundle


def dataset_policy(data: DataConfig) -> str:
    """The dataset's own augmentation policy, stated where the dataset is described: the
    generator's (bench.data.synthetic.AUGMENT), a card's `augment`, else its format's."""
    src = check(data)
    if src.format == "synthetic":
        from bench.data.synthetic import AUGMENT

        return AUGMENT
    if src.card is not None and src.card.augment:
        return src.card.augment
    return FORMATS.get(src.format).augment


def _load(data: DataConfig, seed: int) -> DataBundle:
    """The data section as splits: `synthetic`, `FORMAT:PATH`, or a card with `data_root`.

    `check` runs first. `task` and `num_classes` shape the generated dataset only: real
    data defines its own; `labels` picks (and orders) the classes or findings, else the
    card's. A card's task and classes must match what its data gives.
    """
    src = check(data)
    if src.format == "synthetic":
        from bench.data.generated import synthetic_bundle

        return synthetic_bundle(data.image_size, seed, data.task, data.num_classes, data.sizes)
    card = src.card
    request = LoadRequest(
        image_size=data.image_size, seed=seed, calibration=data.sizes.calibration,
        labels=data.labels or (card.classes if card else None), uncertainty=data.uncertainty,
        frontal_only=data.frontal_only, name=card.name if card else None,
        obtain=card.obtain if card else None)
    bundle = FORMATS.get(src.format)().load(src.path, request)
    if not isinstance(bundle, DataBundle) or not isinstance(bundle.task, Task):
        raise TypeError(f"dataset format {src.format!r} returned {type(bundle).__name__}, not "
                        "a DataBundle with a bench.task_kinds.Task")
    if card is not None:
        if not data.labels and (bundle.task.kind != card.task
                                or list(bundle.task.class_names) != list(card.classes)):
            raise ValueError(f"{card.path}: the card says {card.task} {list(card.classes)} but "
                             f"{src.path} gives {bundle.task.kind} {list(bundle.task.class_names)}")
        bundle.info.update(card=card.name, title=card.title, licence=card.licence,
                           citation=card.citation)
    return bundle
