"""Exceptions raised by dedupstore.

Configuration problems raise Django's ``ImproperlyConfigured``, path traversal raises
``SuspiciousFileOperation`` and missing names raise ``FileNotFoundError``, as Django
developers expect. The classes below cover what only a deduplicating storage can hit.
"""

from __future__ import annotations


class DedupStoreError(Exception):
    """Base class of every dedupstore-specific error."""


class IndexUnavailable(DedupStoreError):
    """The dedup index could not be reached or refused to write; nothing was stored or deleted."""

    def __init__(self, index_url: str, cause: BaseException | None = None) -> None:
        self.index_url = index_url
        detail = f": {cause}" if cause else ""
        super().__init__(
            f"The dedupstore index at {index_url} is unavailable{detail}. "
            "Nothing was stored or deleted. Check that the server runs, or set "
            "on_index_error='bypass' to store without deduplication while it is down."
        )


class ClaimTimeout(DedupStoreError):
    """Another process held a claim for longer than ``wait_timeout``; nothing was changed."""

    def __init__(self, subject: str, waited: float) -> None:
        self.subject = subject
        self.waited = waited
        super().__init__(
            f"Gave up after {waited:.1f}s waiting for another process working on {subject}; "
            "nothing was stored or deleted. Retry, or raise wait_timeout if your inner "
            "storage is slow for large files."
        )


class ClaimLost(DedupStoreError):
    """This process lost its claim on a name it was replacing; the index was not changed.

    A claim lapses when its holder stalls for longer than ``claim_ttl`` (its renewals
    stopped), and another process may then take the name over. Recording this save
    anyway would overwrite that process's record.
    """

    def __init__(self, subject: str) -> None:
        self.subject = subject
        super().__init__(
            f"Lost the claim on {subject} to another process while writing (this process "
            f"stalled for longer than claim_ttl); the index was not changed and the name "
            "now belongs to the other save. Retry the save, or raise claim_ttl if writes "
            "to your inner storage stall."
        )


class EmptyContentError(ValueError, DedupStoreError):
    """Empty content was passed to ``save()``."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"Refusing to save {name!r}: the content is empty (0 bytes). "
            "Check the upload; an empty file is almost always a client error."
        )
