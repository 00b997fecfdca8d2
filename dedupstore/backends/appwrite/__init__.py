"""Appwrite Storage as a Django storage, on the official ``appwrite`` SDK (27.x).

``AppwriteStorage`` is the plain backend: every Django name maps to an Appwrite bucket and
file ID. ``DedupAppwriteStorage`` is a ``DedupStorage`` around ``AppwriteStorage``.
``AppWriteStorage`` (the class name django-cloud-storages used, defined in
``dedupstore.backends.compat`` and re-exported here) is a drop-in replacement for
``cloud_storages.backends.appwrite.AppWriteStorage``: a ``DedupAppwriteStorage``
configured from the old settings.

Names. The last directory of a name names the bucket (``assets/media/a.txt`` -> bucket
``media``); a name without a directory goes to ``bucket_id``. The file name becomes the
file ID: unchanged when it already is a valid Appwrite ID, otherwise a readable ASCII
stem plus an 80-bit BLAKE2b digest of the original name (see ``file_id_for``). The name returned to
Django is ``<bucketId>/<fileId>``, which maps to itself, and the Appwrite ``name``
attribute keeps the original file name. Names that map to a taken ID get another one, as
Django's ``get_available_name`` does, so no two names ever replace each other.

Uploads. Content up to 5 MiB goes through the SDK's ``create_file`` in one request.
Larger content is sent in the SDK's chunk protocol by our own loop (see
``upload.upload_chunks``): same headers, fields and ``content-range``/``x-appwrite-id``, but
streamed from one reused buffer per worker, with a refused chunk sent again.

Timeouts. The SDK calls ``requests.request`` without a timeout. Each client this package
builds gets its own copy of the SDK's ``Client.call`` function whose ``requests`` global
is a small transport object sending through a pooled ``requests.Session`` with our
timeout. Other ``Client`` objects in the process are untouched.

Modules: ``errors`` (exceptions), ``ids`` (names to bucket and file IDs),
``transport`` (the SDK client with a timeout), ``reader`` (ranged downloads),
``upload`` (the chunked-upload engine), ``storage`` (``AppwriteStorage``) and ``dedup``
(``DedupAppwriteStorage``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .dedup import DedupAppwriteStorage
from .errors import AppwriteAuthError, AppwriteConflict, AppwriteStorageError, AppwriteUnavailable
from .ids import ID_MAX_LENGTH, ID_PATTERN, bucket_id_for, file_id_for
from .reader import DOWNLOAD_BLOCK_SIZE, READ_BUFFER_SIZE, AppwriteFile
from .storage import AppwriteStorage
from .upload import SDK_CHUNK_SIZE

if TYPE_CHECKING:
    from dedupstore.backends.compat import AppWriteStorage

__all__ = [
    "DOWNLOAD_BLOCK_SIZE",
    "ID_MAX_LENGTH",
    "ID_PATTERN",
    "READ_BUFFER_SIZE",
    "SDK_CHUNK_SIZE",
    "AppWriteStorage",
    "AppwriteAuthError",
    "AppwriteConflict",
    "AppwriteFile",
    "AppwriteStorage",
    "AppwriteStorageError",
    "AppwriteUnavailable",
    "DedupAppwriteStorage",
    "bucket_id_for",
    "file_id_for",
]


def __getattr__(name: str) -> Any:
    # The old-package class name lives in dedupstore.backends.compat, which imports this
    # package: it is imported on first use.
    if name == "AppWriteStorage":
        from dedupstore.backends.compat import AppWriteStorage

        return AppWriteStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
