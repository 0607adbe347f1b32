"""One registry pattern for methods, backends, dataset formats and presets.

A thing registers itself where it is defined (`@REGISTRY.register` on a class, or
`REGISTRY.register(obj)`); the registry imports every built-in module unconditionally
the first time it is read, then every `importlib.metadata` entry point of its group, so
a third-party distribution adds a method, a backend or a format by declaring one:

    [project.entry-points."medbench.methods"]
    my_method = "my_package.my_module"        # a module that registers on import

An entry point may also name the object itself (`"my_package.my_module:MyMethod"`);
an object not yet registered is registered then. A plugin that fails to import is
reported on stderr in one line and left out: a broken plugin must not stop a run.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Generic, TypeVar

T = TypeVar("T")

GROUPS = {"method": "medbench.methods", "backend": "medbench.backends",
          "dataset format": "medbench.formats", "preset": "medbench.presets"}


class Registry(Generic[T]):
    """Things of one kind by name: `register`, `get`, `names`, `items`."""

    def __init__(self, kind: str, builtins: Iterable[str] = (),
                 key: Callable[[T], str] = lambda obj: obj.name):
        self.kind = kind
        self.group = GROUPS[kind]
        self._builtins = tuple(builtins)
        self._key = key
        self._items: dict[str, T] = {}
        self._loaded = False
        self.plugin_errors: list[str] = []

    def register(self, obj: T) -> T:
        name = self._key(obj)
        if self._items.get(name, obj) is not obj:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._items[name] = obj
        return obj

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # set first: a built-in module registers while importing
        for module in self._builtins:
            importlib.import_module(module)
        for entry in metadata.entry_points(group=self.group):
            try:
                obj = entry.load()
            except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, not fatal
                dist = entry.dist.name if entry.dist else "?"
                msg = f"{self.group} plugin {entry.name!r} ({dist}) failed to load: {exc}"
                self.plugin_errors.append(msg)
                print(f"warning: {msg}", file=sys.stderr)
                continue
            if not isinstance(obj, type(sys)) and obj not in self._items.values():
                self.register(obj)
        self._items = dict(sorted(self._items.items(), key=self._builtin_first))

    def _builtin_first(self, item) -> int:
        """The order things are listed and chosen in: the built-in modules' order, whatever
        imported one of them earlier (a method importing a backend's helpers registers that
        backend first), then plugins as they registered."""
        module = getattr(item[1], "__module__", "")
        return (self._builtins.index(module) if module in self._builtins
                else len(self._builtins) + list(self._items).index(item[0]))

    def items(self) -> dict[str, T]:
        self._load()
        return dict(self._items)

    def names(self) -> list[str]:
        return list(self.items())

    def get(self, name: str) -> T:
        items = self.items()
        if name not in items:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(items) or 'none'}")
        return items[name]

    def __contains__(self, name: str) -> bool:
        return name in self.items()
