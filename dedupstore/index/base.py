"""The dedup index: which content is stored under which name, and how many references it has.

Its records, claims, reservations, tombstones, quarantines and receipts, and every
transition between them, are described once, in ``docs/internals.md``. Every decision is
one atomic operation (one round trip to Redis).
"""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, cast

__all__ = [
    "QUARANTINE_TTL",
    "TOMBSTONE_TTL",
    "UNTRACKED_DELETE_LEASE",
    "ClaimKeeper",
    "CommitDecision",
    "CountCheck",
    "DeleteDecision",
    "Index",
    "IndexStats",
    "ObjectRecord",
    "ReplaceDecision",
    "SaveDecision",
    "ScannedRecord",
    "SetReferences",
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
    """What ``begin_save`` decided (the decisions: docs/internals.md)."""

    action: Literal["hit", "claimed", "wait"]
    name: str = ""
    retry_after: float = 0.0
    #: ``claimed``: how many deletes had finished; pass it to ``commit_save``.
    since: int = 0


@dataclass(frozen=True, slots=True)
class CommitDecision:
    """What ``commit_save`` decided (the decisions: docs/internals.md)."""

    action: Literal["committed", "wait", "rewrite", "verify", "relocate"]
    since: int = 0
    retry_after: float = 0.0


@dataclass(frozen=True, slots=True)
class DeleteDecision:
    """What ``begin_delete`` decided (the decisions: docs/internals.md)."""

    action: Literal["unknown", "kept", "delete", "wait", "done"]
    digest: str = ""
    refs: int = 0
    retry_after: float = 0.0


ReplaceAction = Literal["absent", "shared", "replace", "wait", "quarantined"]


class ReplaceDecision(str):
    """What ``begin_replace`` decided (the decisions: docs/internals.md).

    A string (``decision == "replace"``) with the ``action`` of the other decisions, so
    every decision is read the same way. It has no ``retry_after``: a "wait" here gives no
    lifetime to wait for.
    """

    __slots__ = ()

    @property
    def action(self) -> ReplaceAction:
        return cast(ReplaceAction, str(self))


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    """An object record, as ``lookup`` returns it."""

    name: str
    digest: str
    refs: int
    state: str
    size: int


@dataclass(frozen=True, slots=True)
class ScannedRecord:
    """An object record as ``scan_records`` yields it, with the time of its last change."""

    record: ObjectRecord
    #: Seconds since the epoch of the record's last change (0.0: before this was kept).
    touched: float


@dataclass(frozen=True, slots=True)
class IndexStats:
    """The index's counters: the sum over its records (kept by every change, O(1) to read).

    ``logical_bytes`` is what the references would take if each had its own copy.
    """

    objects: int = 0
    references: int = 0
    physical_bytes: int = 0
    logical_bytes: int = 0


@dataclass(frozen=True, slots=True)
class CountCheck:
    """What ``compare_counts`` found for one batch of names: only what the ops act on.

    Positions index the batch's names. ``sums`` add up every record found (any state) as
    the counters do: records, their references, sizes and references times sizes.
    """

    #: How many of the names have a record (any state).
    matched: int
    #: ``(position, state, refs, size)`` of each name whose record is missing (state
    #: None), not live, or live with a count other than the rows'.
    differences: list[tuple[int, str | None, int, int]]
    #: ``(position, refs, size)`` of each live record with at least ``shared_from`` refs.
    shared: list[tuple[int, int, int]]
    sums: IndexStats


#: What ``set_references`` did (``recent``: a lower count refused within the grace).
SetReferences = Literal["raised", "lowered", "unchanged", "recent", "busy", "absent"]


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
        """Reuse a stored object for ``digest`` or claim the digest (docs/internals.md)."""

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
        """Record that ``name`` now holds ``digest``; drop the claim (docs/internals.md)."""

    @abc.abstractmethod
    def release_claim(self, *, digest: str, token: str) -> None:
        """Drop the claim on ``digest`` if ``token`` still holds it."""

    @abc.abstractmethod
    def refresh_claim(self, *, digest: str, token: str, claim_ttl: float) -> bool:
        """Extend the claim on ``digest``; return False if ``token`` lost it."""

    @abc.abstractmethod
    def reserve_name(self, *, name: str, token: str, digest: str) -> bool:
        """Reserve the free ``name`` for one inner write; return False if taken."""

    @abc.abstractmethod
    def release_name(self, *, name: str, token: str) -> None:
        """End the reservation of ``name`` if ``token`` holds it (the write is over)."""

    @abc.abstractmethod
    def begin_replace(self, *, name: str, token: str, digest: str) -> ReplaceDecision:
        """Decide whether ``overwrite=True`` may replace ``name`` (docs/internals.md)."""

    @abc.abstractmethod
    def abort_replace(self, *, name: str, token: str, inner_deleted: bool) -> None:
        """Undo ``begin_replace`` after a failed write."""

    @abc.abstractmethod
    def begin_delete(
        self, *, name: str, token: str, claim_ttl: float, unreferenced_only: bool = False
    ) -> DeleteDecision:
        """Drop one reference to ``name``; on the last, claim it for deletion.

        ``unreferenced_only`` (``gc``): claim it only while it is a live record with no
        reference, in the same atomic step, else answer ``kept`` and change nothing; a
        reference counted since the caller looked (a hit by name) keeps the object.
        """

    @abc.abstractmethod
    def commit_delete(self, *, name: str, digest: str, token: str) -> None:
        """Forget ``name`` after its inner object was deleted; drop the claim."""

    @abc.abstractmethod
    def lookup(self, name: str) -> ObjectRecord | None:
        """Return the record of ``name``, or None."""

    @abc.abstractmethod
    def forget_content(self, *, digest: str, name: str) -> None:
        """Stop content reuse of ``digest`` from handing out ``name``."""

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

    # -- maintenance (manage.py dedupstore) ----------------------------------------

    def lookup_many(self, names: list[str]) -> list[ObjectRecord | None]:
        """Return the record of each name (None if unknown), in order: one batch."""
        return [self.lookup(name) for name in names]

    def compare_counts(
        self, names: list[str], counts: list[int], *, shared_from: int = 2
    ) -> CountCheck:
        """Compare the record of each of ``names`` with ``counts`` (the rows holding it).

        One batch; see ``CountCheck``. A generic default over ``lookup_many``.
        """
        differences: list[tuple[int, str | None, int, int]] = []
        shared: list[tuple[int, int, int]] = []
        matched = references = physical = logical = 0
        for position, (record, held) in enumerate(
            zip(self.lookup_many(names), counts, strict=True)
        ):
            if record is None:
                differences.append((position, None, 0, 0))
                continue
            matched += 1
            references += record.refs
            physical += record.size
            logical += record.refs * record.size
            if record.state != "live" or record.refs != held:
                differences.append((position, record.state, record.refs, record.size))
            if record.state == "live" and record.refs >= shared_from:
                shared.append((position, record.refs, record.size))
        sums = IndexStats(matched, references, physical, logical)
        return CountCheck(matched, differences, shared, sums)

    def count_records(self) -> int:
        """Return how many object records there are (one scan; writes during it may be missed)."""
        return sum(1 for _ in self.scan_records())

    def content_names(self, digests: list[str]) -> list[str | None]:
        """Return the name content reuse hands out for each content key (None: none)."""
        raise NotImplementedError

    @abc.abstractmethod
    def scan_records(self, *, batch_size: int = 1000) -> Iterator[ScannedRecord]:
        """Yield every object record once, in no order, holding one batch in memory.

        Records changed during the scan may be yielded in either state (Redis ``SCAN``).
        """

    @abc.abstractmethod
    def stats(self) -> IndexStats:
        """Return the counters the index keeps (one read)."""

    @abc.abstractmethod
    def set_stats(self, stats: IndexStats) -> None:
        """Overwrite the counters (``reconcile`` sets them from a scan of the records)."""

    @abc.abstractmethod
    def set_references(self, name: str, refs: int, *, grace: float) -> SetReferences:
        """Set the count of the live record of ``name`` to ``refs`` (the rows holding it).

        A higher count is set at once; a lower one only if the record is unchanged for
        ``grace`` seconds, so a save whose row is not committed yet keeps its reference.
        """

    @abc.abstractmethod
    def add_record(self, *, name: str, digest: str, size: int, refs: int) -> bool:
        """Record the stored object ``name`` (content key ``digest``), live with ``refs``.

        Only for a name the index does not know and nobody is saving or deleting; return
        False, changing nothing, otherwise. Content reuse finds it unless another live
        name already holds the digest.
        """

    def add_records(self, records: list[tuple[str, str, int, int]]) -> list[bool]:
        """``add_record`` each of ``records`` (name, digest, size, refs): one batch.

        Return, in order, whether each was recorded. A generic default, one call each.
        """
        return [
            self.add_record(name=name, digest=digest, size=size, refs=refs)
            for name, digest, size, refs in records
        ]

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
