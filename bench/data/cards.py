"""Dataset cards: TOML files in the repository's `datasets/` folder, one per dataset.

A card names a dataset, the on-disk format its loader reads, its task and classes, the
expected layout, where to obtain it, its licence and citation, so `--dataset NAME
--data-root PATH` needs nothing else. `datasets/` is not a Python package (it would
shadow Hugging Face `datasets`), so it is found beside the `bench` package: a source
checkout or an editable install (`pip install -e .`), as the README installs.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from bench.data.augmentation import POLICIES
from bench.inputs import damage
from bench.task_kinds import TASK_KINDS

CARDS_DIR = Path(__file__).resolve().parents[2] / "datasets"
_TEXT = ("name", "title", "format", "task", "layout", "obtain", "licence", "citation")
_OPTIONAL_TEXT = ("description", "label_policy", "augment")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class Card:
    name: str
    title: str
    format: str
    task: str
    classes: tuple[str, ...]
    layout: str
    obtain: str
    licence: str
    citation: str
    path: Path
    #: files under --data-root the loader opens, tried in order (glob patterns;
    #: {image_size} is replaced); empty: --data-root itself
    entry: tuple[str, ...] = ()
    description: str = ""
    label_policy: str = ""
    #: the dataset's augmentation policy (bench.data.augmentation.POLICIES); empty: its
    #: format's
    augment: str = ""

    def expected(self) -> str:
        """One line: what --data-root should hold (the card has the full layout)."""
        what = (" or ".join(self.entry) if self.entry
                else "class folders " + ", ".join(self.classes))
        try:
            where = self.path.relative_to(CARDS_DIR.parent)
        except ValueError:
            where = self.path
        return f"{what} in --data-root (layout in {where})"

    def locate(self, root: Path, image_size: int) -> Path:
        """The path under `root` the loader reads: the first entry pattern that matches."""
        if root.is_file() or not self.entry:
            return root
        for pattern in self.entry:
            found = sorted(root.glob(pattern.replace("{image_size}", str(image_size))))
            if found:
                return found[0]
        raise ValueError(f"{root}: nothing found for {self.name}: expected {self.expected()}; "
                         f"obtain it from {self.obtain} (nothing is downloaded)")


def load_card(path: Path) -> Card:
    """Parse and validate one card; anything wrong is a one-line ValueError naming the file."""
    from bench.data import FORMATS

    def bad(problem: str) -> ValueError:
        return ValueError(f"{path}: invalid dataset card: {' '.join(problem.split())}")

    problem = damage(path) if path.is_file() else None  # empty, or an LFS pointer
    if problem:
        raise bad(problem)
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise bad(str(exc)) from None
    unknown = set(raw) - set(_TEXT) - set(_OPTIONAL_TEXT) - {"classes", "entry"}
    if unknown:
        raise bad(f"unknown key(s) {', '.join(sorted(unknown))}")
    for key in _TEXT:
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise bad(f"'{key}' must be a non-empty string")
    for key in _OPTIONAL_TEXT:
        if key in raw and not isinstance(raw[key], str):
            raise bad(f"'{key}' must be a string")
    if not _NAME.match(raw["name"]) or raw["name"] != path.stem:
        raise bad(f"name {raw['name']!r} must be lower-case letters, digits, '.', '_', '-' "
                  f"and equal the file name {path.stem!r}")
    if raw["format"] not in FORMATS:
        raise bad(f"format {raw['format']!r} is not one of {', '.join(FORMATS.names())}")
    if raw["task"] not in TASK_KINDS:
        raise bad(f"task {raw['task']!r} is not one of {', '.join(TASK_KINDS)}")
    classes = raw.get("classes")
    if (not isinstance(classes, list) or not classes
            or not all(isinstance(c, str) and c for c in classes)):
        raise bad("'classes' must be a non-empty list of strings")
    if len(set(classes)) != len(classes):
        raise bad("'classes' has duplicates")
    if raw["task"] == "binary" and len(classes) != 2:
        raise bad("a binary task has exactly two classes (negative, positive)")
    if raw["task"] == "multiclass" and len(classes) < 3:
        raise bad("a multiclass task has at least three classes (two is binary)")
    if raw.get("augment", "") not in ("", *POLICIES):
        raise bad(f"augment {raw['augment']!r} is not one of {', '.join(POLICIES)}")
    entry = raw.get("entry", [])
    if isinstance(entry, str):
        entry = [entry]
    if not isinstance(entry, list) or not all(isinstance(e, str) and e for e in entry):
        raise bad("'entry' must be a string or a list of strings")
    return Card(name=raw["name"], title=raw["title"], format=raw["format"], task=raw["task"],
                classes=tuple(classes), layout=raw["layout"], obtain=raw["obtain"],
                licence=raw["licence"], citation=raw["citation"], path=path,
                entry=tuple(entry), description=raw.get("description", ""),
                label_policy=raw.get("label_policy", ""), augment=raw.get("augment", ""))


def card_files(directory: Path = CARDS_DIR) -> list[Path]:
    """`datasets/*.toml` and one level of sub-folders (not `datasets/data/`, the local data)."""
    if not directory.is_dir():
        return []
    return sorted([*directory.glob("*.toml"),
                   *(p for p in directory.glob("*/*.toml") if p.parent.name != "data")])


@cache
def all_cards(directory: Path = CARDS_DIR) -> dict[str, Card]:
    out: dict[str, Card] = {}
    for f in card_files(directory):
        card = load_card(f)
        if card.name in out:
            raise ValueError(f"{f}: invalid dataset card: name {card.name!r} already used by "
                             f"{out[card.name].path}")
        out[card.name] = card
    return out


def get(name: str) -> Card | None:
    return all_cards().get(name.lower())
