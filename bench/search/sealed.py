"""The test split's labels, sealed while a search chooses its finalists.

A search decides on the validation split only; the test split is for the finalists,
once. `seal(data)` returns the bundle with its test labels replaced by `SealedLabels`,
which refuses every read (and counts the attempts), so a figure computed from them
during the search fails loudly instead of leaking into the choice.
"""

from __future__ import annotations

from dataclasses import replace


class SealedSplitError(RuntimeError):
    """Something read the test split's labels before the finalists were chosen."""


class SealedLabels:
    reads = 0  # attempts, over the process (a test checks it stays 0)

    def __init__(self, count: int):
        self._count = count

    def _refuse(self, *args, **kwargs):
        type(self).reads += 1
        raise SealedSplitError("the test split's labels are sealed until the search has chosen "
                              "its finalists (trials are scored on the validation split)")

    __array__ = __getitem__ = __iter__ = _refuse

    def __getattr__(self, name):
        if name.startswith("__"):  # copy, pickle and numpy probing for protocols
            raise AttributeError(name)
        self._refuse()

    def __len__(self) -> int:  # the split's size is not a figure
        return self._count


def seal(data):
    """`data` with its test labels sealed (images stay: nothing scores them without labels)."""
    return replace(data, test=replace(data.test, labels=SealedLabels(len(data.test.labels))))
