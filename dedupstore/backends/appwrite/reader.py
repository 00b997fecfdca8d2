"""Reading a stored file through ranged downloads."""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any

import requests
from django.core.files.base import File

from dedupstore.streams import SeekableRawReader

from .errors import AppwriteUnavailable

if TYPE_CHECKING:
    from .storage import AppwriteStorage

#: Bytes fetched per ranged download request. Appwrite reads a range into memory and cuts
#: open ranges to 10 MiB, so stay below that.
DOWNLOAD_BLOCK_SIZE = 8 * 1024 * 1024
#: Buffer of the reader returned by ``open()``.
READ_BUFFER_SIZE = 1024 * 1024


class _RangedReader(SeekableRawReader):
    """Read a stored file through ranged GETs of ``DOWNLOAD_BLOCK_SIZE`` bytes.

    Each block is streamed from the socket into the caller's buffer, so memory stays at
    one buffer whatever the file size. The bytes are never parsed: a file Appwrite stores
    as ``application/json`` still reads as bytes.
    """

    def __init__(
        self,
        storage: AppwriteStorage,
        url: str,
        size: int,
        name: str,
    ) -> None:
        super().__init__(size)
        self._storage = storage
        self._url = url
        self._name = name
        self._response: requests.Response | None = None
        self._response_end = 0  # exclusive end of what the open response delivers
        self._skip = 0  # leading bytes of the open response to drop

    def readinto(self, buffer: Any) -> int:
        self._ensure_open()
        view = memoryview(buffer).cast("B")
        if self._pos >= self.size or not len(view):
            return 0
        if self._response is None:
            self._open_response()
        assert self._response is not None
        raw = self._response.raw
        while self._skip:
            dropped = raw.read(self._skip)
            if not dropped:
                raise self._truncated()
            self._skip -= len(dropped)
        wanted = min(len(view), self._response_end - self._pos)
        count = raw.readinto(view[:wanted])
        if not count:
            raise self._truncated()
        self._pos += count
        if self._pos >= self._response_end:
            self._moved()
        return count

    def _truncated(self) -> AppwriteUnavailable:
        self._moved()
        return AppwriteUnavailable(
            f"Appwrite at {self._storage.endpoint} ended the download of {self._name!r} "
            f"early, at byte {self._pos} of {self.size}",
            endpoint=self._storage.endpoint,
        )

    def _open_response(self) -> None:
        start = self._pos
        end = min(start + DOWNLOAD_BLOCK_SIZE, self.size) - 1
        skip = 0
        if self.size == 1:
            # Appwrite refuses every range of a one-byte file: fetch it whole.
            range_header = None
        else:
            if start == end:
                # Appwrite refuses one-byte ranges (start >= end): take one byte more.
                start, skip = start - 1, 1
            range_header = f"bytes={start}-{end}"
        self._response = self._storage._download(self._url, range_header, name=self._name)
        self._response_end = end + 1
        self._skip = skip

    def _moved(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    def close(self) -> None:
        self._moved()
        super().close()


class AppwriteFile(File):
    """A read-only file streamed from Appwrite."""

    def __init__(self, reader: IO[bytes], name: str, size: int, mode: str) -> None:
        super().__init__(reader, name)
        self.mode = mode
        self._size = size

    @property
    def size(self) -> int:
        return self._size
