"""Exceptions raised by dedupstore.

Configuration problems raise Django's ``ImproperlyConfigured``, path traversal raises
``SuspiciousFileOperation`` and missing names raise ``FileNotFoundError``, as Django
developers expect. The classes below cover what only a deduplicating storage can hit.
"""

from __future__ import annotations


class DedupStoreError(Exception):
    """Base class of every dedupstore-specific error."""


class IndexUnavailable(DedupStoreError):
    """The dedup index could not be reached or refused to write; ``outcome`` says what was done.

    Unless the message says otherwise, no name was returned and nothing was deleted; at worst
    one reference too many was counted (a save whose reply was lost), which only delays a
    deletion.
    """

    #: What happened when the message says nothing more precise.
    DEFAULT_OUTCOME = (
        "Nothing was stored or deleted (at worst one reference too many was counted, which "
        "only delays a deletion)."
    )

    def __init__(
        self,
        index_url: str,
        cause: BaseException | None = None,
        outcome: str | None = None,
        *,
        sent: bool = False,
    ) -> None:
        self.index_url = index_url
        self.cause = cause
        #: True when the request reached the index and its reply was lost: it may have
        #: taken effect.
        self.sent = sent
        self.outcome = outcome or self.DEFAULT_OUTCOME
        detail = f": {cause}" if cause else ""
        super().__init__(
            f"The dedupstore index at {index_url} is unavailable{detail}. {self.outcome} "
            "Check that the server runs (saves can store without deduplication while it is "
            "down: on_index_error='bypass')."
        )

    def with_outcome(self, outcome: str) -> IndexUnavailable:
        """Return the same error, saying ``outcome`` happened."""
        return IndexUnavailable(self.index_url, self.cause, outcome, sent=self.sent)


class DeleteOutcomeUnknown(IndexUnavailable):
    """A delete reached the index, and its reply was lost: whether it took effect is unknown.

    The index kept no promise either way, so retrying the delete could drop a second
    reference: a shared object would then be deleted while other records still use it.
    """

    def __init__(self, index_url: str, cause: BaseException | None, name: str) -> None:
        self.name = name
        super().__init__(
            index_url,
            cause,
            f"The delete of {name!r} was sent, but its reply was lost and the index could "
            "not be asked again in time: whether it dropped a reference is unknown. Do not "
            "retry the delete blindly: if it took effect, a retry drops a second reference, "
            "and an object other records still use may be deleted. Check references(name) "
            "against the references you know of first.",
            sent=True,
        )


class ClaimTimeout(DedupStoreError):
    """Another process held a claim for longer than ``wait_timeout``.

    The message says what was done meanwhile: nothing, unless the wait was for a commit.
    """

    def __init__(self, subject: str, waited: float, outcome: str | None = None) -> None:
        self.subject = subject
        self.waited = waited
        outcome = outcome or "nothing was stored or deleted"
        super().__init__(
            f"Gave up after {waited:.1f}s waiting for another process working on {subject}; "
            f"{outcome}. Retry, or raise wait_timeout if your inner storage is slow for large "
            "files."
        )


class ClaimLost(DedupStoreError):
    """This process lost its claim on a name it was replacing; the index was not changed.

    A claim lapses when its renewals stop for ``claim_ttl``: they come every
    ``claim_ttl / 3``, so a holder that stalls for longer than about two thirds of
    ``claim_ttl`` can lose it, and another process may then take the name over. Recording this save
    anyway would overwrite that process's record. ``taken_by`` says who did: ``"save"``
    (the name is that save's now), ``"delete"`` (a ``delete()`` is removing the name) or
    ``"none"`` (a ``delete()`` removed it: the index records nothing under the name).
    """

    _WHO = {
        "save": "another save took the name over; the index was not changed and the name "
        "now belongs to the other save",
        "delete": "a delete() of the name took it over and is deleting it; the index was "
        "not changed and does not record this save, whose object under the name may be "
        "deleted with it",
        "none": "a delete() of the name took it over and removed it from the index; the "
        "index was not changed: the object this save wrote under the name is recorded "
        "nowhere (a delete() of the name removes it)",
    }

    def __init__(self, subject: str, taken_by: str = "save") -> None:
        self.subject = subject
        self.taken_by = taken_by
        who = self._WHO.get(taken_by, self._WHO["save"])
        super().__init__(
            f"Lost the claim on {subject} while writing (this process stalled for about "
            f"two thirds of claim_ttl or more, so its renewal came too late): {who}. Retry "
            "the save, or raise claim_ttl if writes to your inner storage stall."
        )


class EmptyContentError(ValueError, DedupStoreError):
    """Empty content was passed to ``save()``.

    No longer raised: ``DedupStorage`` stores empty content like any other, as Django's
    storages do. Kept so that code catching it still imports.
    """

    def __init__(self, name: str) -> None:
        super().__init__(
            f"Refusing to save {name!r}: the content is empty (0 bytes). "
            "Check the upload; an empty file is almost always a client error."
        )


class ContentChangedError(DedupStoreError):
    """The content changed between hashing and writing; nothing was recorded.

    The object written is removed (``removed``), unless the inner storage is
    content-addressed: its object may be another record's too, so it is left.
    """

    def __init__(self, name: str, problem: str, *, removed: bool) -> None:
        self.name = name
        self.removed = removed
        left = (
            "the written object was removed"
            if removed
            else "the written object was left in place (a content-addressed object may be shared)"
        )
        super().__init__(
            f"The content saved as {name!r} changed between hashing and writing: {problem}. "
            f"Nothing was recorded and {left}. Save a file that nobody modifies meanwhile "
            "(a copy, or an upload Django has finished receiving)."
        )


class IndexLost(DedupStoreError):
    """The database says this namespace's index was initialised, and the index holds nothing.

    Redis was flushed, restarted without persistence, failed over to an empty replica, or
    the namespace changed. Until ``manage.py dedupstore reconcile`` rebuilds the counts from
    the database, every name is untracked: deleting one could remove an object that other
    rows still use, so deletes of untracked names refuse. Saves go on.
    """

    def __init__(self, namespace: str, index_url: str) -> None:
        self.namespace = namespace
        self.index_url = index_url
        super().__init__(
            f"The dedupstore index for namespace {namespace!r} at {index_url} was lost (the "
            "database recorded it, the index holds no trace of it): nothing was deleted. Run "
            "'python manage.py dedupstore reconcile' to rebuild the reference counts from "
            "the database, then delete again."
        )
