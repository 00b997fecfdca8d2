"""Check that what the inner storage wrote is what was hashed.

Content can change between hashing and writing: a file rewritten during a slow save, a
stream that returns other bytes on a second read. ``WrittenContent`` is what the inner
storage is handed: every byte it reads through ``read``/``readinto``/``chunks`` is hashed
again on the way, and after the write ``check()`` compares that digest with the one the
index will record. An inner storage that does not read through it (``FileSystemStorage``
moving a temporary file into place, a backend uploading a file by its path) is checked by
the file's size and modification time instead, taken before the first hash.
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Any

from django.core.files.base import File

from dedupstore.exceptions import ContentChangedError
from dedupstore.hashing import ContentHasher, HashedContent
from dedupstore.utils import innermost_file, temporary_file_path

__all__ = ["WrittenContent", "file_identity"]


def file_identity(content: object) -> tuple[int, int] | None:
    """Return (size, mtime in ns) of the file on disk behind ``content``, or None."""
    path = temporary_file_path(content)
    if path is not None:
        with contextlib.suppress(OSError):
            status = os.stat(path)
            return status.st_size, status.st_mtime_ns
    raw = innermost_file(content)
    if isinstance(raw, io.BytesIO | io.StringIO):
        return None  # in memory: nothing on disk to compare (and fileno() would raise)
    fileno = getattr(raw, "fileno", None)
    if not callable(fileno):
        return None
    try:
        status = os.fstat(fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    return status.st_size, status.st_mtime_ns


class WrittenContent(File):
    """The content handed to the inner write, hashing what the inner storage reads.

    Other attributes (``temporary_file_path``, ``content_type``, ...) are the original
    content's, so the inner storage sees the same object it would have seen.
    """

    # The original content's own file object, whatever it is (a real file, a BytesIO, a
    # SpooledTemporaryFile...): it is read through as the inner storage would read it.
    file: Any

    def __bool__(self) -> bool:
        # File.__bool__ is bool(self.name), and a ContentFile may have none: an inner
        # storage testing `if content:` must still see content.
        return True

    def __init__(
        self, hashed: HashedContent, hasher: ContentHasher, before: tuple[int, int] | None
    ) -> None:
        original = hashed.content
        super().__init__(original.file, name=original.name)
        self.original = original
        self.size = hashed.size
        self._digest = hashed.digest
        self._hasher = hasher
        self._before = before
        self._restart()

    def __getattr__(self, attribute: str) -> Any:
        # Only reached for attributes File itself lacks (temporary_file_path, ...).
        if attribute == "original":
            raise AttributeError(attribute)
        return getattr(self.original, attribute)

    def _restart(self) -> None:
        self._running: Any = None  # made on the first byte read: a hit reads nothing
        self._position = 0
        self._sequential = True
        self._at_end = False

    def _consume(self, data: bytes | bytearray | memoryview, asked: int | None) -> None:
        if isinstance(data, str):
            self._sequential = False  # text: not what was hashed; the stat check decides
            return
        if not data and asked != 0:
            self._at_end = True
            return
        if self._running is None:
            self._running = self._hasher.new(size_hint=self.size)
        self._running.update(data)
        self._position += len(data)
        if asked is None or asked < 0:
            self._at_end = True

    def read(self, size: int | None = -1) -> Any:
        data = self.file.read() if size is None else self.file.read(size)
        self._consume(data, size)
        return data

    def readinto(self, buffer: Any) -> int:
        count = self.file.readinto(buffer)
        if count:
            self._consume(memoryview(buffer)[:count], len(buffer))
        else:
            self._at_end = True
        return count or 0

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        position = self.file.seek(offset, whence)
        if position == 0:
            self._restart()
        elif position != self._position:
            self._sequential = False  # read out of order: the stat check decides
        return int(position)

    def chunks(self, chunk_size: int | None = None) -> Any:
        chunk_size = chunk_size or self.DEFAULT_CHUNK_SIZE
        with contextlib.suppress(AttributeError, io.UnsupportedOperation):
            self.seek(0)
        while True:
            data = self.read(chunk_size)
            if not data:
                break
            yield data

    def check(self, stored: str, remove: Any | None) -> None:
        """Raise ``ContentChangedError`` if what was written is not what was hashed.

        ``remove(stored)`` deletes the object first (None: leave it, for a
        content-addressed storage whose name another record may share).
        """
        problem = self._problem()
        if problem is None:
            return
        if remove is not None:
            with contextlib.suppress(FileNotFoundError):
                remove(stored)
        raise ContentChangedError(stored, problem, removed=remove is not None)

    def _problem(self) -> str | None:
        read_through = self._position > 0 or self._at_end
        if read_through and self._sequential and (self._at_end or self._position >= self.size):
            if self._position != self.size:
                return f"{self._position} bytes were written where {self.size} were hashed"
            running = self._running or self._hasher.new()
            if running.hexdigest() != self._digest:
                return "the bytes written differ from the bytes hashed"
            return None
        # Not read through this object (moved or uploaded by path), or not in order.
        after = file_identity(self.original)
        if self._before is not None and after is not None and after != self._before:
            return (
                f"the file changed while it was saved (size, mtime {self._before} before "
                f"hashing, {after} after writing)"
            )
        return None
