"""Image folders: one sub-folder per class, optionally inside train/ val/ test/.

ImageFolder layout, plus an optional `unlabelled/` folder of images without a class,
which `kd` distils on (the teacher labels them). With a train/ folder its splits are kept (val taken from train,
stratified, when there is no val/); without, a seeded stratified split. A class folder
holding an `images/` sub-folder is read from there only: the COVID-19 Radiography
Database keeps lung masks beside it in `masks/`. Otherwise class folders are read
recursively. Two classes make a binary task: negative first, which is the card's or
--labels' order, else the normal-sounding name (Normal, Uninfected, ...), else alphabetical.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bench.data import DataBundle
from bench.data.common import (
    TEST_FRACTION,
    VAL_FRACTION,
    data_error,
    make_bundle,
    normal_first,
    stratified_split,
)
from bench.data.formats import FORMATS, Format, LoadRequest
from bench.data.images import IMAGE_EXTENSIONS, files_digest, read_splits
from bench.task_kinds import Task

EXPECTED = "a folder with one sub-folder of images per class, optionally inside train/ val/ test/"
OBTAIN = "the dataset's own site (see its card: python -m bench list)"
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validation": "val", "test": "test", "testing": "test"}
#: a folder of images with no class, beside the class folders (or the split folders):
#: `kd` distils on them too, as the teacher labels them; nothing else uses them
UNLABELLED = ("unlabelled", "unlabeled")


@FORMATS.register
class Folder(Format):
    """Class folders (ImageFolder): a card's classes or --labels pick and order them."""

    name = "folder"
    spec = "folder:DIR"
    expected = EXPECTED
    obtain = OBTAIN
    options = frozenset({"labels"})

    def load(self, path: Path, request: LoadRequest) -> DataBundle:
        return _load(Path(path).expanduser().resolve(), request.image_size, request.seed,
                     request.calibration, request.labels, request.name,
                     request.obtain or OBTAIN)


def _load(root: Path, image_size: int, seed: int, calibration: int, labels, name, obtain):
    if not root.is_dir():
        raise data_error(root, "folder not found", EXPECTED, obtain)
    subdirs = _subdirs(root)
    split_dirs = {SPLIT_NAMES[d.name.lower()]: d for d in subdirs if d.name.lower() in SPLIT_NAMES}
    if "train" in split_dirs:
        base = split_dirs["train"]
        method = "the folder's own " + "/".join(s for s in ("train", "val", "test") if s in split_dirs)
    else:
        if split_dirs:
            raise data_error(root, f"has {', '.join(sorted(d.name for d in split_dirs.values()))} "
                             "but no train/ folder", EXPECTED, obtain)
        base, split_dirs = root, {}
        method = "seeded stratified split"
    available = [d.name for d in _subdirs(base) if d.name.lower() not in UNLABELLED]
    if labels:
        missing = [c for c in labels if c not in available]
        if missing:
            raise data_error(base, f"no class folder {', '.join(map(repr, missing))} (found: "
                             f"{', '.join(available) or 'none'})", EXPECTED, obtain)
        classes = list(labels)
        order = "as given (card or --labels)"
    else:
        classes = sorted(available)
        order = "alphabetical"
        if len(classes) == 2 and normal_first(classes) != classes:
            classes, order = normal_first(classes), "normal-sounding class first"
    if len(classes) < 2:
        raise data_error(base, f"{len(classes)} class folder(s)", EXPECTED + " (at least 2 "
                         "classes)", obtain)

    files: dict[str, tuple[list[Path], list[int]]] = {}
    for split, d in (split_dirs.items() if split_dirs else [("all", root)]):
        paths, ys = [], []
        for k, c in enumerate(classes):
            folder = d / c
            if not folder.is_dir():
                if split == "train" or split == "all":
                    raise data_error(folder, "class folder not found", EXPECTED, obtain)
                continue
            found = _images_in(folder)
            if not found and split in ("train", "all"):
                raise data_error(folder, "no images (.png, .jpg, ...)", EXPECTED, obtain)
            paths += found
            ys += [k] * len(found)
        files[split] = (paths, ys)
    extra = sorted(set().union(*(_subdir_names(d) for d in split_dirs.values() or [root]))
                   - set(classes) - set(UNLABELLED))
    unlabelled = next((d for d in _subdirs(root) + _subdirs(base) if d.name.lower() in UNLABELLED),
                      None)

    if "all" in files:
        paths, ys = files.pop("all")
        y = np.asarray(ys)
        idx = _split_or_fail(root, y, seed, {"test": TEST_FRACTION, "val": VAL_FRACTION}, obtain)
        files = {s: ([paths[i] for i in ix], y[ix].tolist()) for s, ix in idx.items()}
    elif "val" not in files or "test" not in files:
        paths, ys = files["train"]
        y = np.asarray(ys)
        want = {s: f for s, f in (("test", TEST_FRACTION), ("val", VAL_FRACTION)) if s not in files}
        idx = _split_or_fail(split_dirs["train"], y, seed, want, obtain)
        method += "; " + " and ".join(want) + " split from train (seeded, stratified)"
        for s, ix in idx.items():
            files[s] = ([paths[i] for i in ix], y[ix].tolist())

    all_paths = [p for s in ("train", "val", "test") for p in files[s][0]]
    found = _images_in(unlabelled) if unlabelled is not None else []
    images = read_splits({**{s: files[s][0] for s in ("train", "val", "test")},
                          "unlabelled": found}, image_size, root, apart=("unlabelled",))
    parts = {s: (images[s], np.asarray(files[s][1], np.int64)) for s in ("train", "val", "test")}
    kind = "binary" if len(classes) == 2 else "multiclass"
    config = {"format": "folder", "source": str(root), "classes": classes,
              "files": files_digest(all_paths)}
    info = {"source": str(root), "format": "folder", "split": method, "class_order": order}
    if extra:
        info["ignored_folders"] = extra
    transfer = None
    if found:
        transfer = images["unlabelled"]
        config["unlabelled"] = files_digest(found)
        info["unlabelled"] = f"{len(found)} images in {unlabelled} (for kd)"
    return make_bundle(name or f"folder:{root.name}", Task(kind, tuple(classes)), parts,
                       image_size, seed, calibration, config, info, transfer=transfer)


def _split_or_fail(where: Path, y: np.ndarray, seed: int, fractions: dict, obtain: str):
    counts = np.bincount(y)
    if counts.min() < 3:
        raise data_error(where, f"a class has only {counts.min()} image(s)", "at least 3 "
                         "images per class for a stratified train/val/test split", obtain)
    try:
        return stratified_split(y, seed, fractions)
    except ValueError as exc:
        raise data_error(where, str(exc), "enough images per class", obtain) from None


def _subdirs(d: Path) -> list[Path]:
    return sorted((p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def _subdir_names(d: Path) -> set[str]:
    return {p.name for p in _subdirs(d)} if d.is_dir() else set()


def _images_in(folder: Path) -> list[Path]:
    if (folder / "images").is_dir():
        folder = folder / "images"
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath) / f for f in sorted(filenames)
                if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")]
    return out
