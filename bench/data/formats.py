"""The on-disk dataset formats as plug-ins: one `Format` class each, in one registry.

Why a class per format: `--dataset FORMAT:PATH`, the cards' `format` key, the `list`
output, the option checks and the loading itself all read the same few facts (the spec
shown to users, what the path must hold, where the data comes from, which files a folder
is searched for, which data options apply). Held on the class they cannot drift apart,
and a third-party format is a class like the built-ins: a distribution declares

    [project.entry-points."medbench.formats"]
    my_format = "my_package.my_format"   # a module with `@FORMATS.register class ...`

and `--dataset my_format:PATH` works without a file of the harness being edited.

Every format loads with the same signature, `load(path, request)`: what the run asks
for travels in one frozen `LoadRequest`, so adding an option does not mean editing every
loader's argument list, and the dispatcher needs no branch per format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from bench.registry import Registry

if TYPE_CHECKING:
    from bench.data import DataBundle

#: the data options (DataConfig fields) a format may accept; any other format refuses
#: them with one line, rather than silently ignoring an option the user asked for
OPTIONS = ("labels", "uncertainty", "frontal_only")
#: CheXpert-style uncertain-label policies (Irvin et al. 2019); u-ones is the default
UNCERTAINTY_POLICIES = ("u-ones", "u-zeros", "u-ignore")


@dataclass(frozen=True)
class LoadRequest:
    """What the run asks of a format's loader; the same fields for every format.

    `labels`: the classes / findings to keep, in order (--labels, else the card's); a
    format without "labels" in its options ignores it. `name`: the card's name, which
    becomes the bundle's, or None (the format names the bundle from the path).
    `obtain`: the card's source, which errors quote instead of the format's generic one.
    """

    image_size: int
    seed: int
    calibration: int = 128
    labels: tuple[str, ...] | None = None
    uncertainty: str = "u-ones"
    frontal_only: bool = False
    name: str | None = None
    obtain: str | None = None

    def __post_init__(self):
        # a list from the config or a caller becomes a tuple: the request stays immutable
        object.__setattr__(self, "labels", tuple(self.labels) if self.labels else None)


class Format:
    """One on-disk layout. Subclass, set the class attributes, implement `load`, and
    register the class with `@FORMATS.register` (its key is `name`)."""

    #: the word before the colon in `--dataset NAME:PATH`, and a card's `format`
    name: ClassVar[str] = ""
    #: the `--dataset` form shown to users, e.g. "folder:DIR" (default "NAME:PATH")
    spec: ClassVar[str] = ""
    #: what the path must hold, quoted in every error about it
    expected: ClassVar[str] = ""
    #: where the data comes from (nothing is ever downloaded), quoted in errors
    obtain: ClassVar[str] = ""
    #: files looked for, in order, when the path is a directory; empty: the directory itself
    default_files: ClassVar[tuple[str, ...]] = ()
    #: which of OPTIONS apply; the others are refused for this format before any loading
    options: ClassVar[frozenset[str]] = frozenset()
    #: the format's augmentation policy (bench.data.augmentation.POLICIES; a card's
    #: `augment` overrides it): flips only where the anatomy has no side
    augment: ClassVar[str] = "upright"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.options = frozenset(cls.options)
        unknown = cls.options - set(OPTIONS)
        if unknown:
            raise TypeError(f"format {cls.name or cls.__name__!r}: unknown option(s) "
                            f"{', '.join(sorted(unknown))}; known: {', '.join(OPTIONS)}")
        cls.default_files = tuple(cls.default_files)
        if cls.name and "spec" not in cls.__dict__:
            cls.spec = f"{cls.name}:PATH"

    def load(self, path: Path, request: LoadRequest) -> DataBundle:
        """Read `path` (already checked to exist) into a DataBundle whose `task` says the
        task kind and classes; bad data is a one-line ValueError naming the file."""
        raise NotImplementedError

    def error(self, path, problem: str, obtain: str | None = None) -> ValueError:
        """The one-line error about `path`, quoting this format's expectation and source."""
        from bench.data.common import data_error

        return data_error(path, problem, self.expected, obtain or self.obtain)


BUILTINS = ("bench.data.folder", "bench.data.medmnist", "bench.data.chexpert",
            "bench.data.ham10000")
FORMATS: Registry[type[Format]] = Registry("dataset format", builtins=BUILTINS)


def ordered() -> dict[str, type[Format]]:
    """The registered formats, built-ins first in BUILTINS order, then plug-ins by name:
    the registry keeps import order, which must not reorder what users read."""
    def key(item):
        module = item[1].__module__
        return (BUILTINS.index(module) if module in BUILTINS else len(BUILTINS), item[0])

    return dict(sorted(FORMATS.items().items(), key=key))


def flag(option: str) -> str:
    """'frontal_only' -> '--frontal-only': errors name the option as the user typed it."""
    return "--" + option.replace("_", "-")


def option_error(option: str, given: str) -> ValueError:
    """An option the given format does not take: which formats do, in one line."""
    takers = [name for name, fmt in ordered().items() if option in fmt.options]
    where = f"{', '.join(takers)} data" if takers else "no installed dataset format"
    return ValueError(f"{flag(option)} applies to {where}, not to {given} data")
