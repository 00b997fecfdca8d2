"""The save protocol: one ``SaveAttempt`` per save, from ``begin_save`` to ``commit_save``.

``DedupStorage._save_hashed`` runs one attempt. The attempt holds its state explicitly:
the token that identifies it in the index, the names it reserved, what its last write
stored (and replaced), and whether the next round must write again. See
``docs/internals.md`` for the states of the index record these calls move through.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import File

from dedupstore import naming
from dedupstore.exceptions import IndexUnavailable
from dedupstore.hashing import HashedContent
from dedupstore.index import CommitDecision, SaveDecision
from dedupstore.tokens import new_token
from dedupstore.utils import rewritable
from dedupstore.written import WrittenContent

if TYPE_CHECKING:
    from dedupstore.storage import DedupStorage, Reuse

__all__ = ["SaveAttempt", "confirmed_hit", "inner_save", "save_bypassing_index"]

logger = logging.getLogger("dedupstore")

#: How many alternative names a save tries when the ones it finds free are reserved.
MAX_RESERVE_ATTEMPTS = 100
#: What a save that fails after its inner write leaves behind.
ORPHANED = (
    "The content was written to the inner storage but not recorded: no name was returned, "
    "and the written object is orphaned"
)
#: What a save whose commit was sent, with its reply lost, leaves behind.
MAYBE_RECORDED = (
    "The content was written to the inner storage and its commit sent, but the reply was "
    "lost and the index could not be asked again in time: no name was returned; the "
    "commit may have been recorded (one reference counted that nobody holds, which only "
    "delays a deletion) or not (the written object is orphaned)"
)
REPLACED_GONE = (
    "; the name it replaced (overwrite=True) holds this content now, and the index records "
    "nothing under it"
)


class SaveAttempt:
    """One save of content already hashed and keyed (``hashed.digest`` is the content key)."""

    def __init__(
        self,
        storage: DedupStorage,
        name: str,
        hashed: HashedContent,
        max_length: int | None,
        reuse: Reuse | None = None,
    ) -> None:
        self.storage = storage
        self.name = name
        self.hashed = hashed
        self.max_length = max_length
        self.reuse: Reuse = reuse or storage.reuse
        #: This attempt's identity in the index: its claim, reservations and replace lock.
        self.token = new_token()
        #: When the elapsed time of the next commit counts from, and the count of finished
        #: deletes the index reported then (see ``Index.commit_save``).
        self.asked = time.monotonic()
        self.since = 0
        #: Names reserved for our writes; the commit ends the reservation of the one it
        #: records, the others are released at the end.
        self.reserved: list[str] = []
        #: What the last write stored, and the name it replaced (``overwrite``), if any.
        self.stored = ""
        self.replaced: str | None = None
        #: Whether the next round writes (again) before it commits.
        self.needs_write = True
        #: When the latest commit request was sent (None: not yet sent).
        self.commit_sent: float | None = None

    # -- the whole attempt -------------------------------------------------------------

    def run(self) -> str:
        """Return the name to keep: a hit's, or the name a miss was written and recorded under."""
        storage = self.storage
        try:
            decision = self._begin()
        except IndexUnavailable:
            if storage.on_index_error == "bypass":
                return save_bypassing_index(storage, self.name, self.hashed, self.max_length)
            raise
        if decision.action == "hit":
            return storage._confirmed_hit(decision.name, self.name, self.hashed, self.max_length)
        # We hold the claim on the content: concurrent saves of it wait for our commit. The
        # keeper renews it while a slow write runs; if we die, it expires after claim_ttl.
        keeper = storage._claim_keeper
        keeper.keep(self.hashed.digest, self.token)
        self.since = decision.since
        self.hashed = checked_content(storage, self.hashed)
        try:
            while not self._round():
                pass
        except BaseException:
            storage._quietly(
                lambda: storage.index.release_claim(digest=self.hashed.digest, token=self.token)
            )
            self._release_names(self.reserved)
            raise
        finally:
            keeper.release(self.token)
        self._release_names([name for name in self.reserved if name != self.stored])
        return self.stored

    def _begin(self) -> SaveDecision:
        storage = self.storage
        # reuse="name" compares the name the inner storage would store `name` under
        # (Appwrite: "<bucketId>/<fileId>"), which is what the index records.
        name = self.name
        reuse_name = storage.backend.dedupstore_stored_name(name) if self.reuse == "name" else name
        return storage._until_decided(
            lambda: storage.index.begin_save(
                digest=self.hashed.digest,
                reuse=self.reuse,
                name=reuse_name,
                max_length=self.max_length,
                token=self.token,
                claim_ttl=storage.claim_ttl,
                overwrite=storage.overwrite,
            ),
            f"content {self.hashed.digest[:16]}... (saving {self.name!r})",
        )

    def _round(self) -> bool:
        """Write if needed, then commit; return True once the index recorded the write."""
        if self.needs_write:
            self.stored, self.replaced = self._write()
        outcome = self._commit_or_explain()
        if outcome.action == "committed":
            return True
        # outcome.since was read after the answering commit was sent: count from then.
        assert self.commit_sent is not None
        self.since, self.asked = outcome.since, self.commit_sent
        if outcome.action == "verify":
            # A write longer than TOMBSTONE_TTL / 2: if our object still exists, no delete
            # that finished before this commit removed it (see docs/internals.md).
            self.needs_write = not self.storage.inner.exists(self.stored)
            if not self.needs_write:
                return False
        # An untracked delete of `stored` ran while we wrote ("retry"), or the name is out
        # of use ("relocate"): write again, under a free name or the same CID.
        self.needs_write = True
        self.hashed = dataclasses.replace(self.hashed, content=rewritable(self.hashed.content))
        return False

    # -- committing --------------------------------------------------------------------

    def _commit_or_explain(self) -> CommitDecision:
        """Commit; on failure, forget a replaced name and say what the failure left behind."""
        try:
            # A replace commits only while we still hold the record: if another save took
            # the name over while we stalled, this raises ClaimLost instead.
            return self._commit()
        except IndexUnavailable as exc:
            self._forget_replaced()
            raise exc.with_outcome(
                (MAYBE_RECORDED if exc.sent else ORPHANED)
                + (REPLACED_GONE if self.replaced else "")
                + "."
            ) from exc
        except BaseException:
            self._forget_replaced()
            raise

    def _commit(self) -> CommitDecision:
        """Record ``stored``, waiting while an untracked delete of the name is under way."""
        storage = self.storage
        content_addressed = storage.backend.content_addressed
        self.commit_sent = None

        def ask() -> CommitDecision:
            self.commit_sent = time.monotonic()
            decision = storage.index.commit_save(
                digest=self.hashed.digest,
                token=self.token,
                name=self.stored,
                size=self.hashed.size,
                replacing=self.replaced == self.stored,
                since=self.since,
                elapsed=self.commit_sent - self.asked,
            )
            if decision.action == "relocate" and content_addressed:
                # The name is out of use for a while and a CID cannot move: wait for it.
                return dataclasses.replace(decision, action="wait")
            return decision

        return storage._until_decided(
            ask,
            f"{self.stored!r} (a delete or replace of it under way)",
            outcome=ORPHANED[0].lower() + ORPHANED[1:],
        )

    def _forget_replaced(self) -> None:
        """After a failed commit the replaced object is gone: forget its name, not lock it."""
        replaced = self.replaced
        if replaced:
            self.storage._quietly(
                lambda: self.storage.index.abort_replace(
                    name=replaced, token=self.token, inner_deleted=True
                )
            )

    def _release_names(self, names: list[str]) -> None:
        """End our reservations of ``names``: our writes to them are over."""
        for reserved_name in names:

            def release(name: str = reserved_name) -> None:
                self.storage.index.release_name(name=name, token=self.token)

            self.storage._quietly(release)

    # -- writing -----------------------------------------------------------------------

    def _write(self) -> tuple[str, str | None]:
        """Write a miss; return the stored name and the name replaced (overwrite), if any.

        A name written without replacing is reserved in the index first, so no other save
        writes it at the same time.
        """
        storage, inner, hashed = self.storage, self.storage.inner, self.hashed
        name, max_length = self.name, self.max_length
        if storage.backend.content_addressed:
            # Objects are named by their content (an IPFS CID): no name to choose or keep.
            stored = storage.backend.dedupstore_write(name, hashed.content, max_length)
            return checked_write(hashed.content, stored, remove=None), None
        replaced = False
        fits = not max_length or len(name) <= max_length
        if storage.overwrite and fits and inner.exists(name):
            decision = storage._until_decided(
                lambda: storage.index.begin_replace(
                    name=name, token=self.token, digest=hashed.digest
                ),
                repr(name),
            )
            # Only "replace" may write over the name; "shared", "quarantined" and "absent"
            # write elsewhere (see docs/internals.md, "Replacing a name").
            replaced = decision == "replace"
        if not replaced:
            name = self._reserve_free_name()
            return inner_save(storage, name, hashed.content, max_length), None
        # Write the new content first and switch last: until the switch the old object
        # stays readable, and a failed write leaves it, and its count, as they were.
        old_deleted: list[bool] = []
        try:
            stored = inner_save(storage, name, hashed.content, max_length)
            if stored != name:
                stored = self._switch_into(stored, old_deleted)
        except BaseException:
            storage._quietly(
                lambda: storage.index.abort_replace(
                    name=name, token=self.token, inner_deleted=bool(old_deleted)
                )
            )
            raise
        if stored != name:
            # The content landed elsewhere after all: the replaced name is simply gone.
            storage._quietly(
                lambda: storage.index.abort_replace(name=name, token=self.token, inner_deleted=True)
            )
            return stored, None
        return stored, name

    def _switch_into(self, written: str, old_deleted: list[bool]) -> str:
        """Put the object ``written`` in place of ``self.name``; return the name it ends under.

        A local inner storage (``path()``) switches with an atomic rename. One that can
        neither overwrite nor rename (Appwrite) has the old object deleted and the content
        written again under the name (``old_deleted`` says when the old one went).
        """
        storage, inner, name = self.storage, self.storage.inner, self.name
        try:
            source, target = inner.path(written), inner.path(name)
        except NotImplementedError:
            source = target = ""
        try:
            if source:
                os.replace(source, target)
                return name
            inner.delete(name)
            old_deleted.append(True)
            content = rewritable(self.hashed.content)
            with contextlib.suppress(AttributeError, OSError, ValueError):
                content.seek(0)
            stored = inner_save(storage, name, content, self.max_length)
        except BaseException:
            storage._quietly(lambda: inner.delete(written))  # would be an orphan
            raise
        storage._quietly(lambda: inner.delete(written))  # the first copy, an orphan now
        return stored

    def _reserve_free_name(self) -> str:
        """Return a free name for a miss, reserved in the index for our write.

        ``exists()`` alone cannot keep two saves apart on a store whose write replaces (S3,
        GCS, Azure, ``InMemoryStorage``); a name another save reserved is skipped for an
        alternative, as ``get_available_name`` skips existing names.
        """
        storage, name, max_length = self.storage, self.name, self.max_length
        candidate = free_name(storage, name, max_length)
        for _attempt in range(MAX_RESERVE_ATTEMPTS):
            if storage.index.reserve_name(
                name=candidate, token=self.token, digest=self.hashed.digest
            ):
                self.reserved.append(candidate)
                return candidate
            alternative = naming.alternative_name(storage.inner, name)
            candidate = free_name(storage, alternative, max_length)
        raise SuspiciousFileOperation(
            f"dedupstore: no free name for {name!r} after {MAX_RESERVE_ATTEMPTS} attempts"
        )


def confirmed_hit(
    storage: DedupStorage, stored: str, name: str, hashed: HashedContent, max_length: int | None
) -> str:
    """Return ``stored``, a hit, once the inner storage confirms its object exists.

    With ``verify_hits`` one ``exists()`` guards against objects removed behind the index's
    back. A missing object is never handed out: content reuse forgets it, the reference
    the hit counted is dropped again, and the upload is stored anew.
    """
    if not storage.verify_hits or storage.inner.exists(stored):
        return stored
    logger.warning(
        "dedupstore: the object %r of content %s... is missing from the inner storage "
        "(deleted outside the storage?); storing the upload of %r anew",
        stored,
        hashed.digest[:16],
        name,
    )
    storage.index.forget_content(digest=hashed.digest, name=stored)
    storage.delete(stored)
    # Never a hit again on this attempt: the requested name's own record may be the stale one.
    return storage._save_hashed(name, hashed, max_length, reuse="never")


def save_bypassing_index(
    storage: DedupStorage, name: str, hashed: HashedContent, max_length: int | None
) -> str:
    """Store ``hashed`` without the index (``on_index_error="bypass"``), uncounted."""
    inner = storage.inner
    if storage.backend.content_addressed:
        # A content-addressed name may be shared by counted references: never untracked.
        raise IndexUnavailable(
            storage.index.display_url,
            RuntimeError(
                "on_index_error='bypass' is impossible with a content-addressed inner storage"
            ),
        )
    logger.warning(
        "dedupstore index %s unavailable: storing %r without deduplication",
        storage.index.display_url,
        name,
    )
    if not naming.creates_exclusively(inner) and not storage.backend.dedupstore_direct_save:
        # No reservation keeps another save off a free name now, and a write here would
        # replace its object: take a random alternative name nobody else picks.
        name = naming.alternative_name(inner, name)
    name = free_name(storage, name, max_length)
    return inner_save(storage, name, checked_content(storage, hashed).content, max_length)


def checked_content(storage: DedupStorage, hashed: HashedContent) -> HashedContent:
    """Return ``hashed`` with content that checks what the inner write reads.

    Built only for a write: a hit never pays for it. What the write reads is hashed again
    and compared with ``plain_digest``; a file moved or uploaded by path is compared by
    the size and mtime the hasher saw (see ``dedupstore.written``).
    """
    if not hashed.plain_digest or isinstance(hashed.content, WrittenContent):
        return hashed
    plain = dataclasses.replace(hashed, digest=hashed.plain_digest)
    written = WrittenContent(plain, storage.hasher, hashed.identity)
    return dataclasses.replace(hashed, content=written)


def free_name(storage: DedupStorage, name: str, max_length: int | None) -> str:
    """Return a free name for a miss, in the inner storage's own scheme if it has one."""
    if storage.backend.dedupstore_direct_save:
        # Such a storage maps names to its own form (Appwrite: <bucket>/<fileId>).
        return storage.inner.get_available_name(name, max_length=max_length)
    return storage.get_available_name(name, max_length=max_length)


def inner_save(storage: DedupStorage, name: str, content: File, max_length: int | None) -> str:
    """Write ``content`` to the inner storage under ``name``, which is valid and free."""
    stored = storage.backend.dedupstore_write(name, content, max_length)
    return checked_write(content, stored, remove=storage.inner.delete)


def checked_write(content: File, stored: str, remove: Callable[[str], None] | None) -> str:
    """Return ``stored`` if the inner storage wrote exactly what was hashed.

    Otherwise remove the object (``remove``; None for a content-addressed object, which
    another record may share) and raise ``ContentChangedError``.
    """
    if isinstance(content, WrittenContent):
        content.check(stored, remove)
    return stored
