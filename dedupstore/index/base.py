"""The dedup index: which content is stored under which name, and how many references it has.

An index keeps, per namespace:

* an *object record* per inner name: the content digest, the reference count, and a
  state (``live``; ``replacing`` while ``overwrite=True`` swaps its content; ``deleting``
  while its last reference is removed from the inner storage). A ``replacing`` or
  ``deleting`` record names its holder's token and the digest whose claim the holder keeps
  alive, its *lease*: the state counts only while that claim is the holder's, so a holder
  that dies blocks the name for at most ``claim_ttl``, then the next replace or delete of
  the name takes the record over;
* a *content map* from digest to the name of the object that content reuse returns;
* short-lived *claims* on a digest, held by the one process that writes (or deletes) that
  content in the inner storage, so concurrent saves of the same new content write once;
* a *tombstone* per name that a delete found untracked (no record): ``deleting`` while
  its deleter, leased like the states above, deletes the inner object, then ``deleted``
  with a sequence number for ``TOMBSTONE_TTL`` seconds (a tracked delete leaves a numbered
  ``deleted`` one too). A save whose inner write overlapped such a delete of its name may
  have lost its object: its commit waits for the deleter and then tells it to write
  again, instead of recording a name whose object is gone.

Every decision is one atomic operation (one round trip to Redis).
"""

from __future__ import annotations

import abc
import logging
import threading
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "QUARANTINE_TTL",
    "TOMBSTONE_TTL",
    "UNTRACKED_DELETE_LEASE",
    "ClaimKeeper",
    "CommitDecision",
    "DeleteDecision",
    "Index",
    "ObjectRecord",
    "ReplaceDecision",
    "SaveDecision",
    "untracked_delete_name",
]

Reuse = Literal["content", "name", "never"]

logger = logging.getLogger("dedupstore")

#: How long (seconds) the tombstone of a finished delete stays (a ``deleting`` one: as
#: long as its lease, plus this). A save whose write took longer than half of it cannot
#: rely on the tombstone still being there, so its commit answers ``verify``: the saver
#: checks that its object still exists and commits again.
TOMBSTONE_TTL = 600.0

#: How long (seconds) a name stays out of use after its holder's lease was seen to lapse
#: (a writer, replacer or deleter that stalled or died without being seen to finish): that
#: holder may still be at work, so nobody else writes the name meanwhile.
QUARANTINE_TTL = TOMBSTONE_TTL

#: How the lease (claim) of an untracked delete is named: ``<prefix><token>:<name>``.
UNTRACKED_DELETE_LEASE = "untracked-delete:"


def untracked_delete_name(lease: str, token: str) -> str | None:
    """Return the name whose tombstone ``lease`` keeps for ``token``, or None.

    The claim keeper renews that tombstone's lifetime with the lease.
    """
    prefix = f"{UNTRACKED_DELETE_LEASE}{token}:"
    return lease[len(prefix) :] if lease.startswith(prefix) else None


@dataclass(frozen=True, slots=True)
class SaveDecision:
    """What ``begin_save`` decided."""

    #: ``hit``: reuse ``name`` (its count was incremented); ``claimed``: write the content;
    #: ``wait``: another writer holds the claim, ask again after ``retry_after`` seconds.
    action: Literal["hit", "claimed", "wait"]
    name: str = ""
    retry_after: float = 0.0
    #: ``claimed``: how many untracked deletes the namespace had finished; pass it to
    #: ``commit_save``.
    since: int = 0


@dataclass(frozen=True, slots=True)
class CommitDecision:
    """What ``commit_save`` decided."""

    #: ``committed``: recorded; ``wait``: a delete (tracked or untracked) or a replace of
    #: the name is under way, ask again after ``retry_after`` seconds; ``rewrite``: an
    #: untracked delete of the name overlapped the inner write and may have deleted the
    #: object: write the content again, then commit with ``since``; ``verify``: the write
    #: took so long that a tombstone telling of such a delete may have expired: check
    #: that the stored object still exists (write it again if not), then commit again
    #: with ``since`` and ``elapsed`` counted from the commit that answered ``verify``;
    #: ``relocate``: the name is out of use (a holder of it stalled or died at work on
    #: it, and may still delete or write it): write the content under another name (one
    #: that cannot be chosen, a CID, waits ``retry_after`` and asks again).
    action: Literal["committed", "wait", "rewrite", "verify", "relocate"]
    since: int = 0
    retry_after: float = 0.0


@dataclass(frozen=True, slots=True)
class DeleteDecision:
    """What ``begin_delete`` decided."""

    #: ``unknown``: the index has no record of the name (stored before the wrapper, deleted
    #: already, or the index was lost): a tombstone now holds the name, leased by the claim
    #: ``digest``; delete the inner object then ``commit_delete``. ``kept``: other
    #: references remain; ``delete``: the last reference went, delete the inner object
    #: then ``commit_delete``; ``wait``: the object is being written, replaced or deleted
    #: by someone else, ask again later; ``done``: nothing left to do (a run of this
    #: delete whose reply was lost decided, and its lease lapsed before this run: the
    #: name was taken over, its reference is gone already).
    action: Literal["unknown", "kept", "delete", "wait", "done"]
    digest: str = ""
    refs: int = 0
    retry_after: float = 0.0


#: ``absent``: the index has no record of the name; ``shared``: other references share
#: the object, so it must not be modified; ``replace``: the caller may replace it;
#: ``wait``: the object is being deleted or replaced by someone else; ``quarantined``: a
#: holder of the name stalled or died at work on it (it may still write or delete it), so
#: the name is out of use until its worst case has passed: write elsewhere.
ReplaceDecision = Literal["absent", "shared", "replace", "wait", "quarantined"]


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    """An object record, as ``lookup`` returns it."""

    name: str
    digest: str
    refs: int
    state: str
    size: int


class Index(abc.ABC):
    """Interface of a dedup index. All methods are atomic and thread-safe."""

    #: The index URL with any password masked, for messages.
    display_url: str

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    @abc.abstractmethod
    def begin_save(
        self,
        *,
        digest: str,
        reuse: Reuse,
        name: str,
        max_length: int | None,
        token: str,
        claim_ttl: float,
        overwrite: bool = False,
    ) -> SaveDecision:
        """Reuse a stored object for ``digest`` or claim the digest for writing.

        On a claim, an interrupted deletion of ``name`` (a ``deleting`` record whose lease
        lapsed) is finished, so the save's commit does not revive it, unless ``overwrite``:
        then ``begin_replace`` takes it over.
        """

    @abc.abstractmethod
    def commit_save(
        self,
        *,
        digest: str,
        token: str,
        name: str,
        size: int,
        replacing: bool = False,
        since: int = 0,
        elapsed: float = 0.0,
    ) -> CommitDecision:
        """Record that ``name`` now holds ``digest`` with one more reference; drop the claim.

        With ``replacing`` (the save replaced ``name`` after ``begin_replace``), raise
        ``ClaimLost`` and change nothing unless ``token`` still holds the record: another
        process that took over an apparently dead replacer's record owns the name now.

        Otherwise record nothing while a delete or replace of ``name`` is under way (an
        untracked delete's tombstone, or a ``deleting`` or ``replacing`` record, whose lease
        is held: ``wait``; a dead replacer's record keeps its reference), or if one
        finished after ``begin_save`` returned ``since`` (``rewrite``): the object may be
        gone. When ``elapsed``, the seconds since ``since`` was read, reaches half of
        ``TOMBSTONE_TTL``, the tombstone that would tell may have expired: ``verify``
        (record nothing; the caller checks its object and commits again with the returned
        ``since``). A ``deleting`` record or tombstone whose lease lapsed is finished, and
        the save told to ``rewrite``.
        """

    @abc.abstractmethod
    def release_claim(self, *, digest: str, token: str) -> None:
        """Drop the claim on ``digest`` if ``token`` still holds it."""

    @abc.abstractmethod
    def refresh_claim(self, *, digest: str, token: str, claim_ttl: float) -> bool:
        """Extend the claim on ``digest``; return False if ``token`` lost it.

        The lease of an untracked delete extends its ``deleting`` tombstone too, to
        ``claim_ttl + TOMBSTONE_TTL``: a dead deleter's tombstone then goes by itself, but
        only ``TOMBSTONE_TTL`` after the last moment the deleter could still delete.
        """

    @abc.abstractmethod
    def reserve_name(self, *, name: str, token: str, digest: str) -> bool:
        """Reserve the free name ``name`` for one inner write; return False if it is taken.

        A name is taken while it has a record, or while another save's reservation holds
        it. A reservation is leased by the claim of ``token`` on ``digest`` (the caller
        keeps it alive while it writes) and ends with ``commit_save`` or ``release_name``:
        two saves through one index never write the same inner name at once, even on
        inner storages whose write replaces whatever the name holds. A reservation whose
        holder's lease lapsed is never taken over: that holder may still be writing.
        """

    @abc.abstractmethod
    def release_name(self, *, name: str, token: str) -> None:
        """End the reservation of ``name`` if ``token`` holds it (the write is over)."""

    @abc.abstractmethod
    def begin_replace(self, *, name: str, token: str, digest: str) -> ReplaceDecision:
        """Decide whether ``overwrite=True`` may replace the object stored under ``name``.

        ``digest`` is the content the caller holds a claim on (``begin_save``): that claim
        is the lease of the ``replacing`` state, so the caller must keep it alive.
        """

    @abc.abstractmethod
    def abort_replace(self, *, name: str, token: str, inner_deleted: bool) -> None:
        """Undo ``begin_replace`` after a failed write."""

    @abc.abstractmethod
    def begin_delete(self, *, name: str, token: str, claim_ttl: float) -> DeleteDecision:
        """Drop one reference to ``name``; on the last one, claim its content for deletion.

        A name without a record gets a tombstone leased by a claim of its own (named
        ``untracked-delete:<token>:<name>``), which lives ``claim_ttl + TOMBSTONE_TTL``,
        renewed with the lease.
        """

    @abc.abstractmethod
    def commit_delete(self, *, name: str, digest: str, token: str) -> None:
        """Forget ``name`` after its inner object was deleted; drop the claim.

        The name's tombstone becomes ``deleted``, numbered after every earlier delete (a
        tracked delete's too: a save of the same object under another digest then writes
        again).
        """

    @abc.abstractmethod
    def lookup(self, name: str) -> ObjectRecord | None:
        """Return the record of ``name``, or None."""

    @abc.abstractmethod
    def forget_content(self, *, digest: str, name: str) -> None:
        """Stop content reuse of ``digest`` from handing out ``name`` (its object is gone).

        Only the content map changes, and only if it still names ``name``: the record of
        ``name`` keeps its references, so its holders' deletes stay counted and the name
        is not handed out as free while they hold it.
        """

    @abc.abstractmethod
    def cancel_delete(
        self, *, name: str, token: str, digest: str, refs: int, size: int, lease: str
    ) -> bool:
        """Undo ``begin_delete`` before the inner object was touched: it stays, held by rows.

        A ``delete`` decision's record (``deleting``, ``token``'s) is live again with
        ``refs`` references and content reuse finds it again; an ``unknown`` decision's
        tombstone is dropped and, when ``digest`` is given, a live record made with ``refs``
        references and ``size``. ``lease`` is the claim the decision named; it is released.
        Return False, changing nothing, if ``token`` no longer holds the name.
        """

    @abc.abstractmethod
    def is_initialised(self) -> bool:
        """Return True if this namespace's index carries its initialisation mark."""

    @abc.abstractmethod
    def mark_initialised(self) -> None:
        """Set the initialisation mark (kept for good: it never expires)."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise ``IndexUnavailable`` unless the index answers."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class ClaimKeeper:
    """Keep claims alive while long inner writes or deletes run.

    One daemon thread per index refreshes every registered claim each ``claim_ttl / 3``
    seconds, so a slow writer keeps its claim while a crashed one's claim expires. A claim
    the index reports lost (this process stalled for about two thirds of ``claim_ttl`` or
    more, so a renewal came too late, and another process claimed the digest) is no longer
    refreshed and is reported by ``lost``; the index
    itself refuses the commits that would overwrite the new holder's state.
    """

    def __init__(self, index: Index, claim_ttl: float) -> None:
        self._index = index
        self._claim_ttl = claim_ttl
        self._claims: dict[str, str] = {}
        self._lost: set[str] = set()
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def keep(self, digest: str, token: str) -> None:
        """Start refreshing the claim of ``token`` on ``digest``."""
        with self._lock:
            self._claims[token] = digest
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="dedupstore-claim-keeper", daemon=True
                )
                self._thread.start()

    def release(self, token: str) -> None:
        """Stop refreshing the claim of ``token`` and forget it."""
        with self._lock:
            self._claims.pop(token, None)
            self._lost.discard(token)

    def lost(self, token: str) -> bool:
        """Return True if a refresh found the claim of ``token`` held by nobody or another."""
        with self._lock:
            return token in self._lost

    def _run(self) -> None:
        while True:
            with self._lock:
                self._wakeup.wait(timeout=self._claim_ttl / 3)
                claims = list(self._claims.items())
                if not claims:
                    self._thread = None
                    return
            for token, digest in claims:
                try:
                    held = self._index.refresh_claim(
                        digest=digest, token=token, claim_ttl=self._claim_ttl
                    )
                except Exception:
                    continue  # the index may answer again before the claim expires
                if held:
                    continue
                # Renewing is pointless now: the claim expired (or was released) and may
                # belong to another process, whose claim refresh_claim would never touch.
                with self._lock:
                    if self._claims.get(token) != digest:
                        continue  # released meanwhile: the holder is done
                    del self._claims[token]
                    self._lost.add(token)
                logger.warning(
                    "dedupstore lost its claim on content %s... (the process stalled for "
                    "about two thirds of claim_ttl=%ss or more); another process may take "
                    "it over",
                    digest[:16],
                    self._claim_ttl,
                )
