"""Content-addressed, deduplicated Django file storage."""

from __future__ import annotations

from django.core import checks as _checks

from dedupstore.checks import check_old_settings as _check_old_settings
from dedupstore.exceptions import (
    ClaimLost,
    ClaimTimeout,
    ContentChangedError,
    DedupStoreError,
    DeleteOutcomeUnknown,
    EmptyContentError,
    IndexLost,
    IndexUnavailable,
)
from dedupstore.storage import DedupStorage

# Settings written for the old packages come from projects that may not list "dedupstore"
# in INSTALLED_APPS (the old packages needed no app): warn wherever dedupstore is imported.
# Registering a check twice (here and in DedupStoreConfig.ready) keeps one.
_checks.register(_check_old_settings, _checks.Tags.compatibility)

__all__ = [
    "ClaimLost",
    "ClaimTimeout",
    "ContentChangedError",
    "DedupStorage",
    "DedupStoreError",
    "DeleteOutcomeUnknown",
    "EmptyContentError",
    "IndexLost",
    "IndexUnavailable",
]
__version__ = "0.1.0"
