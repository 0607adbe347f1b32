"""What every on-disk loader shares: one-line errors, image decoding, splits, the bundle.

Loaders read local paths only. Images are decoded with PIL on a thread pool (decoding
and resizing release the GIL), squashed to the run's square size, and kept grayscale
unless some image really has colour, so X-rays stay one channel and the runner repeats
them to three where a model needs it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.data import DataBundle, Split
from bench.inputs import LFS_ADVICE, LFS_HEADER, one_line, preview, reason
from bench.task_kinds import Task

LOADER_VERSION = 1  # bump when decoding or splitting changes: it is part of every fingerprint
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
VAL_FRACTION = 0.1
TEST_FRACTION = 0.2
#: channels of an RGB image that differ by at most this much count as grayscale
#: (a grayscale picture saved as colour JPEG is not exactly equal after decoding)
GRAY_TOLERANCE = 2


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


# ---------------------------------------------------------------- images

def _decode(source, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(source) as im:
        if im.format == "JPEG":
            im.draft(im.mode if im.mode in ("L", "RGB") else "RGB", (size, size))
        if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit / float: scale per image
            a = np.asarray(im, dtype=np.float32)
            lo, hi = float(a.min()), float(a.max())
            a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
            im = Image.fromarray(a.astype(np.uint8))
        elif im.mode not in ("L", "RGB"):
            im = im.convert("L" if im.mode in ("1", "LA") else "RGB")
        im = im.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.uint8)


def _image_problem(data: bytes, exc: BaseException) -> str:
    """What is wrong with an image file that did not decode, in a few words."""
    from PIL import UnidentifiedImageError

    if not data:
        return "empty file (0 bytes)"
    if data.startswith(LFS_HEADER):
        return LFS_ADVICE
    if isinstance(exc, UnidentifiedImageError):
        return f"not an image PIL can read (it starts with {preview(data)})"
    text = one_line(exc, 100)
    if "truncated" in text.lower() or isinstance(exc, (EOFError, SyntaxError)) \
            or "broken data stream" in text.lower():
        return f"truncated or damaged image ({len(data)} bytes; {reason(exc, 100)})"
    return f"not a readable image ({reason(exc, 100)})"


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """PIL's own RGB -> L weights (ITU-R 601-2), so collapsing matches convert('L')."""
    w = np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(np.rint(rgb.astype(np.float32) @ w), 0, 255).astype(np.uint8)


def _is_gray(a: np.ndarray) -> bool:
    if a.ndim == 2:
        return True
    a = a.astype(np.int16)
    return bool(np.abs(a[..., 0] - a[..., 1]).max() <= GRAY_TOLERANCE
                and np.abs(a[..., 1] - a[..., 2]).max() <= GRAY_TOLERANCE)


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def shown(path, root: Path | None) -> str:
    """`path` relative to the dataset root where it lies inside it, else as given."""
    if root is not None:
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            pass
    return str(path)


def _read_all(paths: Sequence[Path], size: int, root: Path | None
              ) -> tuple[list[np.ndarray], list[str]]:
    """Every image decoded (on a thread pool) and its bytes' digest; one ValueError
    naming the first bad file and how many were bad, after all were tried."""
    def one(p):
        try:
            data = Path(p).read_bytes()
        except OSError as exc:  # no permission, a folder named like an image
            return None, f"cannot be read ({exc.strerror or type(exc).__name__})"
        try:
            return (_decode(io.BytesIO(data), size), hashlib.sha1(data).hexdigest()), None
        except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, EOFError...
            return None, _image_problem(data, exc)

    with ThreadPoolExecutor(_workers()) as pool:
        results = list(pool.map(one, paths))
    bad = [(p, why) for p, (_, why) in zip(paths, results, strict=True) if why]
    if bad:
        where = f"{root}: image " if root is not None else ""
        p, why = bad[0]
        raise ValueError(f"{where}{shown(p, root)}: {why}; {len(bad)} of {len(paths)} images "
                         "unreadable" + (" (first shown)" if len(bad) > 1 else ""))
    return [r[0] for r, _ in results], [r[1] for r, _ in results]


def read_images(paths: Sequence[Path], size: int, root: Path | None = None) -> np.ndarray:
    """uint8 (N, size, size) if every image is grayscale, else (N, size, size, 3).
    Errors name paths relative to `root`, the dataset's folder, when given."""
    return stack_images(_read_all(paths, size, root)[0])


def read_splits(files: dict[str, Sequence[Path]], size: int, root: Path | None = None,
                apart: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Each split's images, with a warning on stderr when one file's content is in two
    splits: a test image also in train inflates every score, but may be how the data
    came, so it is not an error. One grayscale-or-colour decision covers all splits but
    those in `apart` (unlabelled images), which are stacked on their own."""
    names = list(files)
    arrays, digests = _read_all([p for s in names for p in files[s]], size, root)
    together = [s for s in names if s not in apart]
    out, first, start, dupes, example = {}, {}, 0, {}, None
    for s in names:
        n = len(files[s])
        out[s] = (start, start + n)
        for p, d in zip(files[s], digests[start:start + n], strict=True):
            seen = first.setdefault(d, (s, p))
            if seen[0] != s:
                dupes[s, seen[0]] = dupes.get((s, seen[0]), 0) + 1
                example = example or (p, seen[1])
        start += n
    joint = stack_images([a for s in together for a in arrays[slice(*out[s])]])
    offset = 0
    for s in names:
        a, b = out[s]
        if s in apart:
            out[s] = stack_images(arrays[a:b])
        else:
            out[s], offset = joint[offset:offset + b - a], offset + b - a
    if dupes:
        pairs = ", ".join(f"{n} in {a} also in {b}" for (a, b), n in dupes.items())
        print(f"warning: {root or 'dataset'}: {sum(dupes.values())} images have the same "
              f"content as an image of another split ({pairs}; e.g. {shown(example[0], root)}"
              f" = {shown(example[1], root)})", file=sys.stderr, flush=True)
    return out


def stack_images(arrays: Sequence[np.ndarray]) -> np.ndarray:
    if all(_is_gray(a) for a in arrays):
        return np.stack([a if a.ndim == 2 else _luminance(a) for a in arrays]) if arrays else \
            np.zeros((0, 1, 1), np.uint8)
    return np.stack([np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in arrays])


def resize_array(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 (N, H, W[, 3]) arrays with PIL, image by image (no float copy of it all)."""
    from PIL import Image

    if images.shape[1] == size and images.shape[2] == size:
        return images

    def one(a):
        return np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.BILINEAR))

    with ThreadPoolExecutor(_workers()) as pool:
        return np.stack(list(pool.map(one, images))) if len(images) else \
            np.zeros((0, size, size) + images.shape[3:], np.uint8)


def index_images(folders: Sequence[Path]) -> dict[str, Path]:
    """File stem -> path over the images directly in `folders` (first folder wins)."""
    found: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        with os.scandir(folder) as it:
            for e in sorted(it, key=lambda e: e.name):
                stem, ext = os.path.splitext(e.name)
                if ext.lower() in IMAGE_EXTENSIONS and stem not in found and e.is_file():
                    found[stem] = Path(e.path)
    return found


def files_digest(paths: Sequence[Path]) -> str:
    """Hash of every file's path, size and mtime: changed data means a new fingerprint."""
    h = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


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
