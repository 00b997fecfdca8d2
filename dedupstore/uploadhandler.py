"""Upload handlers that hash each upload while Django receives it.

With these in ``FILE_UPLOAD_HANDLERS``, a ``DedupStorage`` save of the upload needs no
hashing pass of its own: a save of known content is then just the one index round trip.
The bytes pass through Python chunk by chunk anyway; hashing them there costs one
single-threaded BLAKE3 update per 64 KiB chunk, while reading a just-written 64 MiB temp
file again at save time runs at about 5 GB/s at best (its pages are touched for the first
time).

    FILE_UPLOAD_HANDLERS = [
        "dedupstore.uploadhandler.HashingMemoryFileUploadHandler",
        "dedupstore.uploadhandler.HashingTemporaryFileUploadHandler",
    ]

The digest is keyed like ``DedupStorage``'s default (``DEDUPSTORE_HASH_KEY``, else
``SECRET_KEY``). A storage with another key, or an upload whose bytes changed after it was
received (a different inode, size, mtime or ctime of the temporary file; a write to the
in-memory buffer), is hashed again at save time as usual.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import (
    FileUploadHandler,
    MemoryFileUploadHandler,
    TemporaryFileUploadHandler,
)

from dedupstore.hashing import (
    PRECOMPUTED_ATTRIBUTE,
    ContentHasher,
    PrecomputedDigest,
    resolve_hash_key,
)

__all__ = ["HashingMemoryFileUploadHandler", "HashingTemporaryFileUploadHandler"]


class _HashingMixin(FileUploadHandler):
    """Hash every chunk this handler keeps; attach the digest to the finished upload."""

    _digest_hasher: Any = None

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        # Before super(): the memory handler raises StopFutureHandlers once it takes a file.
        hasher = ContentHasher(key=resolve_hash_key(getattr(settings, "DEDUPSTORE_HASH_KEY", None)))
        self._digest_key_id = hasher.key_id
        self._digest_hasher = hasher.new()
        super().new_file(*args, **kwargs)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        passed_on = super().receive_data_chunk(raw_data, start)
        if passed_on is None and self._digest_hasher is not None:
            # This handler kept the chunk (a handler passes on what it does not keep).
            self._digest_hasher.update(raw_data)
        return passed_on

    def file_complete(self, file_size: int) -> UploadedFile | None:
        upload = super().file_complete(file_size)
        if upload is not None and self._digest_hasher is not None:
            setattr(
                upload,
                PRECOMPUTED_ATTRIBUTE,
                PrecomputedDigest.for_upload(
                    upload,
                    key_id=self._digest_key_id,
                    digest=self._digest_hasher.hexdigest(),
                    size=file_size,
                ),
            )
        self._digest_hasher = None
        return upload


class HashingMemoryFileUploadHandler(_HashingMixin, MemoryFileUploadHandler):
    """Django's ``MemoryFileUploadHandler``, hashing what it keeps in memory."""


class HashingTemporaryFileUploadHandler(_HashingMixin, TemporaryFileUploadHandler):
    """Django's ``TemporaryFileUploadHandler``, hashing what it writes to disk."""
