"""Content-addressed, deduplicated Django file storage."""

from __future__ import annotations

from dedupstore.exceptions import (
    ClaimLost,
    ClaimTimeout,
    ContentChangedError,
    DedupStoreError,
    DeleteOutcomeUnknown,
    EmptyContentError,
    IndexUnavailable,
)
from dedupstore.storage import DedupStorage

__all__ = [
    "ClaimLost",
    "ClaimTimeout",
    "ContentChangedError",
    "DedupStorage",
    "DedupStoreError",
    "DeleteOutcomeUnknown",
    "EmptyContentError",
    "IndexUnavailable",
]
__version__ = "0.1.0"
