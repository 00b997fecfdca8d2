"""Content-addressed, deduplicated Django file storage."""

from __future__ import annotations

from dedupstore.exceptions import (
    ClaimLost,
    ClaimTimeout,
    DedupStoreError,
    DeleteOutcomeUnknown,
    EmptyContentError,
    IndexLost,
    IndexUnavailable,
)
from dedupstore.storage import DedupStorage

__all__ = [
    "ClaimLost",
    "ClaimTimeout",
    "DedupStorage",
    "DedupStoreError",
    "DeleteOutcomeUnknown",
    "EmptyContentError",
    "IndexLost",
    "IndexUnavailable",
]
__version__ = "0.1.0"
