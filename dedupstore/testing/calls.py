"""``InnerCalls``: count the calls that reach a storage (a spy, not a stand-in).

The test suite and the benchmarks use it to show what reaches an inner storage (a hit:
one ``exists()`` with ``verify_hits``, nothing else).
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

__all__ = ["COUNTED_METHODS", "InnerCalls"]

#: The storage methods ``InnerCalls`` counts: every call that can reach the backend.
COUNTED_METHODS = (
    "save",
    "_save",
    "open",
    "_open",
    "exists",
    "delete",
    "size",
    "url",
    "listdir",
    "get_available_name",
    "path",
)


class InnerCalls:
    """Count every public call that reaches ``storage``; the real method still runs."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self.counts: Counter[str] = Counter()
        for method in COUNTED_METHODS:
            original = getattr(storage, method, None)
            if original is not None:
                setattr(storage, method, self._counting(method, original))

    def _counting(self, method: str, original: Any) -> Any:
        @functools.wraps(original)
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.counts[method] += 1
            return original(*args, **kwargs)

        return counted

    @property
    def total(self) -> int:
        """Return the number of calls counted since the start or the last ``reset()``."""
        return sum(self.counts.values())

    def reset(self) -> None:
        """Start counting from zero again."""
        self.counts.clear()

    def undo(self) -> None:
        """Stop counting: the storage's own methods answer again."""
        for method in COUNTED_METHODS:
            self.storage.__dict__.pop(method, None)
