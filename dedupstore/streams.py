"""The seekable, read-only raw stream that every remote reader of this package builds on."""

from __future__ import annotations

import io

__all__ = ["SeekableRawReader"]


class SeekableRawReader(io.RawIOBase):
    """A read-only raw stream of known ``size`` whose position moves freely.

    Subclasses implement ``readinto`` from ``self._pos`` and override ``_moved`` to drop
    whatever was tied to the old position (an open HTTP response, a cached block). Wrap
    an instance in ``io.BufferedReader`` for efficient small reads.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to ``offset`` from the start, the current position or the end."""
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._pos + offset
        elif whence == io.SEEK_END:
            position = self.size + offset
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        if position != self._pos:
            self._moved()
            self._pos = position
        return position

    def _moved(self) -> None:
        """Forget state that belongs to the previous position; nothing by default."""

    def _ensure_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
