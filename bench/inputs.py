"""What a file really is, from its first bytes: shared by every reader of user input.

Why sniff before parsing: a parser's own error for an empty file, a Git LFS pointer
checked out in place of the data, or a truncated download is a stack of internals (or,
for torch, a wall of advice about pickles). Looking at a few bytes first lets every
error say in one line what the file is and what to do, before any costly work.
No torch import here: the configuration check calls this before anything is loaded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

LFS_HEADER = b"version https://git-lfs.github.com/spec/"
LFS_ADVICE = "a Git LFS pointer, not the file: run `git lfs pull`"
ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP = b"PK\x05\x06"  # an archive with no members starts with its end record
GZIP_MAGIC = b"\x1f\x8b"
_EOCD = b"PK\x05\x06"  # a zip's end-of-central-directory record, within its last 64 KiB
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def one_line(text: object, limit: int = 160) -> str:
    """A message squeezed to one line (no terminal colour codes), cut at `limit`."""
    s = " ".join(_ANSI.sub("", str(text)).split())
    return s if len(s) <= limit else s[:limit - 3] + "..."


def plural(n: int, noun: str) -> str:
    """'1 cell', '3 cells'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def first_line(exc: BaseException, limit: int = 300) -> str:
    """'ExcType: the first line of its message', cut at `limit`: a failed row's error."""
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0][:limit] if text else ''}"


def reason(exc: BaseException, limit: int = 160) -> str:
    """'ExcType: first words of its message', one line."""
    text = one_line(exc, limit)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _printable(data: bytes) -> bool:
    return bool(data) and all(32 <= b < 127 or b in (9, 10, 13) for b in data)


def preview(data: bytes, n: int = 12) -> str:
    """The first bytes for a message: as text when they are printable, else as hex."""
    part = data[:n]
    if _printable(part):
        return repr(one_line(part.decode("ascii"), n))
    return "bytes " + part[:8].hex(" ")


def head(path: Path | str, n: int = 64) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def sniff(path: Path | str) -> str:
    """One of: missing, directory, empty, lfs, zip, gzip, pickle, text, other."""
    p = Path(path)
    if not p.exists():
        return "missing"
    if p.is_dir():
        return "directory"
    start = head(p)
    if not start:
        return "empty"
    if start.startswith(LFS_HEADER):
        return "lfs"
    if start.startswith((ZIP_MAGIC, EMPTY_ZIP)):
        return "zip"
    if start.startswith(GZIP_MAGIC):
        return "gzip"
    if start[0] == 0x80 and len(start) > 1 and 2 <= start[1] <= 5:  # pickle PROTO opcode
        return "pickle"
    return "text" if _printable(start) else "other"


def zip_is_complete(path: Path | str) -> bool:
    """True when the zip's end record sits where it must (the file ends with it and its
    comment): a cut copy or an interrupted download lacks it. Reads 64 KiB at most."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(max(0, size - 65557))
        tail = f.read()
    base = size - len(tail)
    i = tail.rfind(_EOCD)
    while i >= 0:
        if i + 22 <= len(tail):
            comment = int.from_bytes(tail[i + 20:i + 22], "little")
            if base + i + 22 + comment == size:
                return True
        i = tail.rfind(_EOCD, 0, i)
    return False


def damage(path: Path | str) -> str | None:
    """What is plainly wrong with a data file (empty, an LFS pointer, a cut zip, unreadable),
    or None."""
    try:
        kind = sniff(path)
        if kind == "zip" and not zip_is_complete(path):
            return f"truncated: the zip archive has no end record ({os.path.getsize(path)} bytes)"
    except OSError as exc:  # no permission, a name too long: say so in one line
        return f"cannot be read ({exc.strerror or exc})"
    if kind == "missing":
        return "not found"
    if kind == "directory":
        return "a folder, not a file"
    if kind == "empty":
        return "empty file (0 bytes)"
    if kind == "lfs":
        return LFS_ADVICE
    return None


def check_checkpoint_file(path: Path | str) -> None:
    """Cheap checks of a `--teacher-checkpoint` file before any training: it exists, is not
    empty, is no LFS pointer, and is a whole torch.save zip or a legacy pickle.
    Raises a one-line ValueError naming the file; reads at most its first and last 64 KiB."""
    problem = damage(path)
    if problem == "not found":
        problem = "teacher checkpoint not found"
    elif problem and problem.startswith("truncated"):
        problem += "; copy it again"
    if problem is None:
        kind = sniff(path)
        if kind == "gzip":
            problem = "gzip-compressed: decompress it (gunzip) first"
        elif kind == "text":
            problem = f"a text file, not a PyTorch checkpoint (it starts {preview(head(path), 24)})"
        elif kind not in ("zip", "pickle"):
            problem = (f"not a PyTorch checkpoint (it starts with {preview(head(path))}; expected "
                       "the zip archive torch.save writes, or a legacy pickle)")
    if problem:
        raise ValueError(f"{path}: {problem}")
