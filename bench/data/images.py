"""Reading a dataset's image files: decoded with PIL on a thread pool (decoding and
resizing release the GIL), squashed to the run's square size, and kept grayscale unless
some image really has colour, so X-rays stay one channel and the runner repeats them to
three where a model needs it. A file that does not decode is one line naming it and
what is wrong (empty, cut, a Git LFS pointer); a file in two splits is a warning.

It is apart from bench.data.common (splits and the bundle) because every format reads
its images this way, whatever its labels and splits, and because this is the part that
touches the disk and PIL.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.inputs import LFS_ADVICE, LFS_HEADER, one_line, preview, reason

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
#: channels of an RGB image that differ by at most this much count as grayscale
#: (a grayscale picture saved as colour JPEG is not exactly equal after decoding)
GRAY_TOLERANCE = 2


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
