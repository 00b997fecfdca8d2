"""An in-process dedup index (``locmem://``), like Django's LocMemCache: one process only.

It mirrors the Lua scripts of ``dedupstore/index/lua/`` operation for operation, receipts
included; ``tests/index/`` runs one contract against both and feeds both the same random
calls, comparing every decision. The state machine: ``docs/internals.md``.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from dedupstore.exceptions import ClaimLost
from dedupstore.index.base import (
    QUARANTINE_TTL,
    TOMBSTONE_TTL,
    UNTRACKED_DELETE_LEASE,
    CommitDecision,
    DeleteDecision,
    Index,
    IndexStats,
    ObjectRecord,
    ReplaceDecision,
    Reuse,
    SaveDecision,
    ScannedRecord,
    SetReferences,
    untracked_delete_name,
)

__all__ = ["RECEIPT_TTL", "LocMemIndex", "get_locmem_index"]

_Decision = TypeVar("_Decision", CommitDecision, DeleteDecision)
_Method = TypeVar("_Method", bound=Callable[..., Any])


@dataclass(slots=True)
class _Record:
    digest: str
    refs: int
    state: str
    size: int
    token: str = ""
    #: The digest whose claim ``token`` keeps alive while ``replacing`` or ``deleting``.
    lease: str = ""
    #: When the record last changed (``time.time()``; 0.0: never tallied).
    touched: float = 0.0


@dataclass(slots=True)
class _Tombstone:
    """A name an untracked delete holds (``deleting``) or recently released (``deleted``)."""

    state: str
    token: str = ""
    lease: str = ""
    seq: int = 0
    expires: float = math.inf


@dataclass(slots=True)
class _Reservation:
    """A free name one save writes; ``lapsed`` once its lease was seen to lapse."""

    token: str
    lease: str
    lapsed: bool = False
    expires: float = math.inf


@dataclass(slots=True)
class _Claim:
    token: str
    expires: float


@dataclass(slots=True)
class _Receipt:
    """What a ``commit_save`` or ``begin_delete`` decided, for a second run of the call."""

    decision: CommitDecision | DeleteDecision
    expires: float


#: How long (seconds) a receipt stays: the Redis index's with its default ``wait_timeout``.
RECEIPT_TTL = 120.0


class _Store:
    """The shared state of one ``locmem://<name>`` index."""

    def __init__(self) -> None:
        # Reentrant: the tally wrapper holds it around a method that takes it again.
        self.lock = threading.RLock()
        self.records: dict[str, _Record] = {}
        self.content: dict[str, str] = {}
        self.claims: dict[str, _Claim] = {}
        self.tombstones: dict[str, _Tombstone] = {}
        self.reservations: dict[str, _Reservation] = {}
        #: Names out of use until the given time (a holder's lease lapsed).
        self.quarantine: dict[str, float] = {}
        #: Deletes finished (tracked and untracked), per namespace prefix.
        self.untracked_deletes: dict[str, int] = {}
        #: Namespace prefixes whose index carries its initialisation mark.
        self.initialised: set[str] = set()
        #: The answer of a call that changed something, per token, until it expires.
        self.receipts: dict[str, _Receipt] = {}
        #: Per namespace prefix: objects, references, physical bytes, logical bytes.
        self.stats: dict[str, list[int]] = {}


def _tallied(method: _Method) -> _Method:
    """Count the change a method makes to the record of its ``name`` (tally.lua's twin).

    A content hit changes the record the content map names: that one is compared too.
    """

    @functools.wraps(method)
    def tallying(self: LocMemIndex, **kwargs: Any) -> Any:
        with self._store.lock:
            names = [kwargs["name"]]
            if method.__name__ == "begin_save" and kwargs.get("reuse") == "content":
                mapped = self._store.content.get(self._prefix + kwargs["digest"])
                if mapped is not None and mapped != kwargs["name"]:
                    names.append(mapped)
            before = [(name, self._contribution(name)) for name in names]
            try:
                return method(self, **kwargs)
            finally:
                for name, counted in before:
                    self._tally(name, counted)

    return tallying  # type: ignore[return-value]


_stores: dict[str, _Store] = {}
_stores_lock = threading.Lock()


def get_locmem_index(location: str, *, namespace: str) -> LocMemIndex:
    """Return an index over the process-wide store named ``location``."""
    with _stores_lock:
        store = _stores.setdefault(location, _Store())
    return LocMemIndex(store, namespace=namespace, display_url=f"locmem://{location}")


class LocMemIndex(Index):
    """A dedup index held in this process's memory."""

    def __init__(self, store: _Store, *, namespace: str, display_url: str) -> None:
        super().__init__(namespace)
        self.display_url = display_url
        self._store = store
        # Length first: no namespace and name can spell another namespace's key.
        self._prefix = f"{len(namespace)}:{namespace}:"

    def _claim_holder(self, digest: str) -> _Claim | None:
        claim = self._store.claims.get(self._prefix + digest)
        if claim is not None and claim.expires <= time.monotonic():
            del self._store.claims[self._prefix + digest]
            return None
        return claim

    def _set_claim(self, digest: str, token: str, claim_ttl: float) -> None:
        self._store.claims[self._prefix + digest] = _Claim(token, time.monotonic() + claim_ttl)

    def _lease_held(self, record: _Record) -> _Claim | None:
        """Return the claim that keeps ``record``'s holder alive, None if it died."""
        if not record.token:
            return None
        holder = self._claim_holder(record.lease or record.digest)
        return holder if holder is not None and holder.token == record.token else None

    def _tombstone(self, name: str) -> _Tombstone | None:
        tombstone = self._store.tombstones.get(self._prefix + name)
        if tombstone is not None and tombstone.expires <= time.monotonic():
            del self._store.tombstones[self._prefix + name]
            return None
        return tombstone

    def _close_tombstone(self, name: str) -> int:
        """Mark the delete of ``name`` finished; return its sequence number."""
        seq = self._store.untracked_deletes.get(self._prefix, 0) + 1
        self._store.untracked_deletes[self._prefix] = seq
        self._store.tombstones[self._prefix + name] = _Tombstone(
            "deleted", seq=seq, expires=time.monotonic() + TOMBSTONE_TTL
        )
        # Drop expired tombstones now and then, as Redis expires its keys.
        if seq % 256 == 0:
            now = time.monotonic()
            for key in [k for k, t in self._store.tombstones.items() if t.expires <= now]:
                del self._store.tombstones[key]
        return seq

    def _reservation(self, name: str) -> _Reservation | None:
        reservation = self._store.reservations.get(self._prefix + name)
        if reservation is not None and reservation.expires <= time.monotonic():
            del self._store.reservations[self._prefix + name]
            return None
        return reservation

    def _quarantined(self, name: str) -> bool:
        until = self._store.quarantine.get(self._prefix + name)
        if until is not None and until <= time.monotonic():
            del self._store.quarantine[self._prefix + name]
            return False
        return until is not None

    def _quarantine(self, name: str) -> None:
        """Keep ``name`` out of use for QUARANTINE_TTL: a holder's lease lapsed unseen.

        That holder (a writer, replacer or deleter that stalled, or whose renewals could
        not reach the index) may still be at work on the name. Set once, never extended.
        """
        if not self._quarantined(name):
            self._store.quarantine[self._prefix + name] = time.monotonic() + QUARANTINE_TTL

    def _contribution(self, name: str) -> tuple[int, int, int]:
        """Return what the record of ``name`` adds to the counters: (objects, refs, size)."""
        record = self._store.records.get(self._prefix + name)
        return (0, 0, 0) if record is None else (1, record.refs, record.size)

    def _tally(self, name: str, before: tuple[int, int, int]) -> None:
        """Move the counters by the change to the record of ``name`` since ``before``."""
        after = self._contribution(name)
        changed = after != before
        if changed:
            counters = self._store.stats.setdefault(self._prefix, [0, 0, 0, 0])
            counters[0] += after[0] - before[0]
            counters[1] += after[1] - before[1]
            counters[2] += after[2] - before[2]
            counters[3] += after[1] * after[2] - before[1] * before[2]
        record = self._store.records.get(self._prefix + name)
        if record is not None and (changed or not record.touched):
            record.touched = time.time()

    def _usable(self, name: str, digest: str, max_length: int | None) -> bool:
        record = self._store.records.get(self._prefix + name)
        return (
            record is not None
            and record.state == "live"
            and record.digest == digest
            and (not max_length or len(name) <= max_length)
        )

    @_tallied
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
        with self._store.lock:
            candidate = None
            if reuse == "content":
                candidate = self._store.content.get(self._prefix + digest)
            elif reuse == "name":
                candidate = name
            if candidate is not None and self._usable(candidate, digest, max_length):
                self._store.records[self._prefix + candidate].refs += 1
                return SaveDecision("hit", name=candidate)
            holder = self._claim_holder(digest)
            if holder is None or holder.token == token:
                self._set_claim(digest, token, claim_ttl)
                record = self._store.records.get(self._prefix + name)
                if (
                    not overwrite
                    and record is not None
                    and record.state == "deleting"
                    and not self._lease_held(record)
                ):
                    # An interrupted deletion of the requested name (its deleter died, or
                    # could not record its delete): it has no references left. Finish it
                    # rather than let our commit revive it, so the deleter's retry cannot
                    # delete what we store under the name.
                    del self._store.records[self._prefix + name]
                    tombstone = self._tombstone(name)
                    if tombstone is None or tombstone.state != "deleting":
                        self._close_tombstone(name)
                    if record.token:
                        # Its deleter was not seen to finish: it may still delete whatever
                        # the name holds.
                        self._quarantine(name)
                # How many deletes had finished: commit_save compares.
                return SaveDecision(
                    "claimed", since=self._store.untracked_deletes.get(self._prefix, 0)
                )
            return SaveDecision("wait", retry_after=max(holder.expires - time.monotonic(), 0.001))

    @_tallied
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
        with self._store.lock:
            receipt = self._receipt(token)
            if isinstance(receipt, CommitDecision):
                # The same commit again: answer as the first run did, count nothing twice.
                return receipt
            key = self._prefix + name
            previous = self._store.records.get(key)
            reservation = self._reservation(name)
            if reservation is not None and reservation.token != token:
                # Another save reserved the name: ours lapsed long ago, and our write may
                # have landed over theirs. Record nothing under their name.
                raise ClaimLost(repr(name), "save")
            if replacing:
                if previous is None or previous.state != "replacing" or previous.token != token:
                    # We stalled past our lease and another process took the record over
                    # (and may have committed already): the name is theirs, record nothing.
                    # Say whose: a save's, a delete's under way, or nobody's.
                    if previous is None:
                        raise ClaimLost(repr(name), "none")
                    raise ClaimLost(
                        repr(name), "delete" if previous.state == "deleting" else "save"
                    )
                # We held the record since before our write: no untracked delete could
                # touch the name.
            else:
                if self._quarantined(name):
                    # A holder of the name stalled or died at work on it (a delete, say):
                    # it may still delete what we wrote. Store it under another name (or
                    # wait, for a name we cannot choose).
                    until = self._store.quarantine[key]
                    return CommitDecision(
                        "relocate",
                        since=self._store.untracked_deletes.get(self._prefix, 0),
                        retry_after=max(until - time.monotonic(), 0.001),
                    )
                if previous is not None and previous.state == "replacing":
                    # A live replacer holds the name: it deleted the old object, which is why
                    # the name looked free to us, and writes its own now. Wait for it (it
                    # commits, or gives the name up when its write lands elsewhere) rather
                    # than take its record over.
                    lease = self._lease_held(previous)
                    if lease is not None:
                        return CommitDecision(
                            "wait", retry_after=max(lease.expires - time.monotonic(), 0.001)
                        )
                if previous is not None and previous.state == "deleting":
                    # A tracked delete holds the name. Its claim on the record's digest does
                    # not keep us out when we claimed another digest for the same object (a
                    # content-addressed inner storage after a key rotation): wait for it.
                    lease = self._lease_held(previous)
                    if lease is not None:
                        return CommitDecision(
                            "wait", retry_after=max(lease.expires - time.monotonic(), 0.001)
                        )
                    # Its deleter died (or could not record its delete): whether it deleted
                    # our object is unknown. Finish the deletion and write again.
                    del self._store.records[key]
                    if previous.token:
                        self._quarantine(name)
                    return CommitDecision("rewrite", since=self._close_tombstone(name))
                # Did a delete of this name that the index did not track overlap our inner
                # write? It may have deleted the very object we wrote: never record a name
                # whose object may be gone.
                tombstone = self._tombstone(name)
                if tombstone is not None and tombstone.state == "deleting":
                    holder = self._claim_holder(tombstone.lease)
                    if holder is not None and holder.token == tombstone.token:
                        return CommitDecision(
                            "wait", retry_after=max(holder.expires - time.monotonic(), 0.001)
                        )
                    # Its deleter died: whether it deleted our object is unknown. Close its
                    # tombstone and write again (elsewhere: it may still delete the name).
                    self._quarantine(name)
                    return CommitDecision("rewrite", since=self._close_tombstone(name))
                finished = self._store.untracked_deletes.get(self._prefix, 0)
                if tombstone is not None and tombstone.seq > since:
                    return CommitDecision("rewrite", since=finished)
                if 2 * elapsed >= TOMBSTONE_TTL:
                    # A write this long may have outlived the tombstone that would tell (a
                    # 'deleted' one, or a dead deleter's 'deleting' one): record nothing
                    # yet. The saver checks that its object still exists, then commits
                    # again with since = the count now.
                    return CommitDecision("verify", since=finished)
            # A dead replacer's record still counts the reference of the name it was
            # replacing (its holder still names it): keep it, so nothing is deleted early.
            kept = ("live",) if replacing else ("live", "replacing")
            refs = previous.refs + 1 if previous and previous.state in kept else 1
            if previous and previous.digest != digest:
                old_map = self._prefix + previous.digest
                if self._store.content.get(old_map) == name:
                    del self._store.content[old_map]
            self._store.records[key] = _Record(digest, refs, "live", size)
            canonical = self._store.content.get(self._prefix + digest)
            canonical_record = (
                self._store.records.get(self._prefix + canonical) if canonical else None
            )
            if canonical_record is None or canonical_record.state != "live":
                self._store.content[self._prefix + digest] = name
            self._drop_claim(digest, token)
            if reservation is not None:
                del self._store.reservations[key]
            return self._decided(token, CommitDecision("committed"))

    def _receipt(self, token: str) -> CommitDecision | DeleteDecision | None:
        receipt = self._store.receipts.get(self._prefix + token)
        if receipt is not None and receipt.expires <= time.monotonic():
            del self._store.receipts[self._prefix + token]
            return None
        return receipt.decision if receipt is not None else None

    def _decided(self, token: str, decision: _Decision) -> _Decision:
        """Keep ``decision`` as the receipt of ``token``'s call and return it."""
        self._store.receipts[self._prefix + token] = _Receipt(
            decision, time.monotonic() + RECEIPT_TTL
        )
        # Drop expired receipts now and then, as Redis expires its keys.
        if len(self._store.receipts) % 256 == 0:
            now = time.monotonic()
            for key in [k for k, r in self._store.receipts.items() if r.expires <= now]:
                del self._store.receipts[key]
        return decision

    def _drop_claim(self, digest: str, token: str) -> None:
        holder = self._claim_holder(digest)
        if holder is not None and holder.token == token:
            del self._store.claims[self._prefix + digest]

    def release_claim(self, *, digest: str, token: str) -> None:
        with self._store.lock:
            self._drop_claim(digest, token)

    def refresh_claim(self, *, digest: str, token: str, claim_ttl: float) -> bool:
        with self._store.lock:
            holder = self._claim_holder(digest)
            if holder is None or holder.token != token:
                return False
            self._set_claim(digest, token, claim_ttl)
            name = untracked_delete_name(digest, token)
            if name is not None:
                # The lease of an untracked delete: its tombstone lives as long as it does.
                tombstone = self._tombstone(name)
                if tombstone and tombstone.state == "deleting" and tombstone.token == token:
                    tombstone.expires = time.monotonic() + claim_ttl + TOMBSTONE_TTL
            return True

    def reserve_name(self, *, name: str, token: str, digest: str) -> bool:
        with self._store.lock:
            key = self._prefix + name
            if key in self._store.records or self._quarantined(name):
                return False
            reservation = self._reservation(name)
            if reservation is not None and reservation.token != token:
                holder = self._claim_holder(reservation.lease)
                if not reservation.lapsed and (holder is None or holder.token != reservation.token):
                    # Its holder may still be writing: keep the name out of use meanwhile.
                    reservation.lapsed = True
                    reservation.expires = time.monotonic() + QUARANTINE_TTL
                return False
            self._store.reservations[key] = _Reservation(token, digest)
            return True

    def release_name(self, *, name: str, token: str) -> None:
        with self._store.lock:
            reservation = self._reservation(name)
            if reservation is not None and reservation.token == token:
                del self._store.reservations[self._prefix + name]

    @_tallied
    def begin_replace(self, *, name: str, token: str, digest: str) -> ReplaceDecision:
        with self._store.lock:
            record = self._store.records.get(self._prefix + name)
            if record is None:
                return ReplaceDecision("absent")
            if self._quarantined(name):
                return ReplaceDecision("quarantined")
            if record.state == "live":
                if record.refs > 1:
                    return ReplaceDecision("shared")
            elif record.token != token:
                if self._lease_held(record):
                    return ReplaceDecision("wait")
                if record.token:
                    # Its replacer or deleter was not seen to finish: it may still write or
                    # delete the name. Keep the name out of use until its worst case passed.
                    self._quarantine(name)
                    return ReplaceDecision("quarantined")
            # A live record with one reference, or one whose deleter gave up (seen to finish).
            record.state, record.token, record.lease = "replacing", token, digest
            map_key = self._prefix + record.digest
            if self._store.content.get(map_key) == name:
                del self._store.content[map_key]
            return ReplaceDecision("replace")

    @_tallied
    def abort_replace(self, *, name: str, token: str, inner_deleted: bool) -> None:
        with self._store.lock:
            key = self._prefix + name
            record = self._store.records.get(key)
            if record is None or record.state != "replacing" or record.token != token:
                return
            if inner_deleted:
                del self._store.records[key]
            elif record.refs == 0:
                # We had taken over a dead deleter's record: no reference comes back, it is
                # an interrupted deletion again, which the next delete() of the name completes.
                record.state, record.token, record.lease = "deleting", "", ""
            else:
                record.state, record.token, record.lease = "live", "", ""
                self._store.content.setdefault(self._prefix + record.digest, name)

    @_tallied
    def begin_delete(
        self, *, name: str, token: str, claim_ttl: float, unreferenced_only: bool = False
    ) -> DeleteDecision:
        with self._store.lock:
            receipt = self._receipt(token)
            if isinstance(receipt, DeleteDecision):
                return self._delete_again(receipt, name=name, token=token, claim_ttl=claim_ttl)
            if unreferenced_only:
                record = self._store.records.get(self._prefix + name)
                if record is None or record.state != "live" or record.refs != 0:
                    # gc's delete: a reference counted since it looked keeps the object.
                    return DeleteDecision(
                        "kept",
                        digest=record.digest if record else "",
                        refs=record.refs if record else 0,
                    )
            decision = self._decide_delete(name=name, token=token, claim_ttl=claim_ttl)
            return decision if decision.action == "wait" else self._decided(token, decision)

    def _delete_again(
        self, receipt: DeleteDecision, *, name: str, token: str, claim_ttl: float
    ) -> DeleteDecision:
        """Answer a second run of a ``begin_delete`` as the first run did, or ``done``."""
        if receipt.action not in ("delete", "unknown"):
            return receipt
        # The lease the first run took was renewed by nobody since: if it lapsed, a save
        # or delete may have taken the name over, and the inner object now is theirs. Go
        # on only while the record (or tombstone) is still ours and nobody else claims
        # the lease; then renew it for the inner delete.
        held = (
            self._store.records.get(self._prefix + name)
            if receipt.action == "delete"
            else self._tombstone(name)
        )
        claim = self._claim_holder(receipt.digest)
        if (
            held is None
            or held.state != "deleting"
            or held.token != token
            or (claim is not None and claim.token != token)
        ):
            return DeleteDecision("done", digest=receipt.digest)
        self._set_claim(receipt.digest, token, claim_ttl)
        if isinstance(held, _Tombstone):
            held.expires = time.monotonic() + claim_ttl + TOMBSTONE_TTL
        return receipt

    def _decide_delete(self, *, name: str, token: str, claim_ttl: float) -> DeleteDecision:
        record = self._store.records.get(self._prefix + name)
        if record is None:
            # Untracked: stored before the wrapper, deleted already, or the index was
            # lost. A save of this very name may have written its object and not
            # committed yet: hold a tombstone on the name while the inner object is
            # deleted, so that save learns of it (see commit_save). Its lease is a claim
            # of its own; a dead deleter's is taken over.
            tombstone = self._tombstone(name)
            if tombstone is not None and tombstone.state == "deleting":
                holder = self._claim_holder(tombstone.lease)
                if tombstone.token != token and holder and holder.token == tombstone.token:
                    return DeleteDecision(
                        "wait", retry_after=max(holder.expires - time.monotonic(), 0.001)
                    )
                if tombstone.token != token:
                    # A dead (or stalled) deleter's: it may still delete the name.
                    self._quarantine(name)
            # Renewed with its lease (see refresh_claim), the tombstone outlasts a dead
            # deleter's last possible inner delete by TOMBSTONE_TTL.
            lease = f"{UNTRACKED_DELETE_LEASE}{token}:{name}"
            self._set_claim(lease, token, claim_ttl)
            self._store.tombstones[self._prefix + name] = _Tombstone(
                "deleting",
                token=token,
                lease=lease,
                expires=time.monotonic() + claim_ttl + TOMBSTONE_TTL,
            )
            return DeleteDecision("unknown", digest=lease)
        if record.state == "replacing" and record.token != token:
            replacer = self._lease_held(record)
            if replacer is not None:
                return DeleteDecision(
                    "wait",
                    digest=record.digest,
                    retry_after=max(replacer.expires - time.monotonic(), 0.001),
                )
            # The replacer died (or stalled: it may still write the name): the name
            # still has its one reference, which goes now.
            self._quarantine(name)
        if (
            record.state == "deleting"
            and record.token
            and record.token != token
            and self._lease_held(record) is None
        ):
            # An interrupted deletion whose deleter was not seen to finish: it may still
            # delete whatever the name holds once it is saved again.
            self._quarantine(name)
        if record.state == "live" and record.refs > 1:
            record.refs -= 1
            return DeleteDecision("kept", digest=record.digest, refs=record.refs)
        holder = self._claim_holder(record.digest)
        if holder is not None and holder.token != token:
            return DeleteDecision(
                "wait",
                digest=record.digest,
                retry_after=max(holder.expires - time.monotonic(), 0.001),
            )
        self._set_claim(record.digest, token, claim_ttl)
        # That claim is also this deletion's lease.
        record.state, record.refs, record.token = "deleting", 0, token
        record.lease = record.digest
        map_key = self._prefix + record.digest
        if self._store.content.get(map_key) == name:
            del self._store.content[map_key]
        return DeleteDecision("delete", digest=record.digest)

    @_tallied
    def commit_delete(self, *, name: str, digest: str, token: str) -> None:
        with self._store.lock:
            key = self._prefix + name
            record = self._store.records.get(key)
            tombstone = self._tombstone(name)
            if record is not None and record.state == "deleting" and record.token == token:
                # A tracked delete leaves a numbered tombstone too: a save that wrote the
                # same object under another digest (a content-addressed inner storage after
                # a key rotation) and commits after us must write again.
                del self._store.records[key]
                if tombstone is None or tombstone.state != "deleting":
                    self._close_tombstone(name)
            elif (
                tombstone is not None and tombstone.state == "deleting" and tombstone.token == token
            ):
                # Number this delete after every save that began before it finished: such a
                # save's commit then writes again.
                self._close_tombstone(name)
            self._drop_claim(digest, token)

    def lookup(self, name: str) -> ObjectRecord | None:
        with self._store.lock:
            record = self._store.records.get(self._prefix + name)
            if record is None:
                return None
            return ObjectRecord(name, record.digest, record.refs, record.state, record.size)

    def forget_content(self, *, digest: str, name: str) -> None:
        with self._store.lock:
            map_key = self._prefix + digest
            if self._store.content.get(map_key) == name:
                del self._store.content[map_key]

    @_tallied
    def cancel_delete(
        self, *, name: str, token: str, digest: str, refs: int, size: int, lease: str
    ) -> bool:
        with self._store.lock:
            key = self._prefix + name
            record = self._store.records.get(key)
            if record is not None:
                if record.state != "deleting" or record.token != token:
                    return False
                record.state, record.refs, record.token, record.lease = "live", refs, "", ""
                self._store.content.setdefault(self._prefix + record.digest, name)
            else:
                tombstone = self._tombstone(name)
                if tombstone is None or tombstone.state != "deleting" or tombstone.token != token:
                    return False
                del self._store.tombstones[key]
                if digest:
                    self._store.records[key] = _Record(digest, refs, "live", size)
                    self._store.content.setdefault(self._prefix + digest, name)
            holder = self._claim_holder(lease)
            if holder is not None and holder.token == token:
                del self._store.claims[self._prefix + lease]
            return True

    def content_names(self, digests: list[str]) -> list[str | None]:
        with self._store.lock:
            return [self._store.content.get(self._prefix + digest) for digest in digests]

    def scan_records(self, *, batch_size: int = 1000) -> Iterator[ScannedRecord]:
        keys = [key for key in list(self._store.records) if key.startswith(self._prefix)]
        start = len(self._prefix)
        for offset in range(0, len(keys), batch_size):
            chunk = keys[offset : offset + batch_size]
            with self._store.lock:
                batch = [(key, self._store.records.get(key)) for key in chunk]
            for key, record in batch:
                if record is None:
                    continue  # deleted since the scan began
                name = key[start:]
                yield ScannedRecord(
                    ObjectRecord(name, record.digest, record.refs, record.state, record.size),
                    touched=record.touched,
                )

    def stats(self) -> IndexStats:
        with self._store.lock:
            return IndexStats(*self._store.stats.get(self._prefix, [0, 0, 0, 0]))

    def set_stats(self, stats: IndexStats) -> None:
        with self._store.lock:
            self._store.stats[self._prefix] = [
                stats.objects,
                stats.references,
                stats.physical_bytes,
                stats.logical_bytes,
            ]

    def set_references(self, name: str, refs: int, *, grace: float) -> SetReferences:
        with self._store.lock:
            record = self._store.records.get(self._prefix + name)
            if record is None:
                return "absent"
            if record.state != "live":
                return "busy"
            if refs == record.refs:
                return "unchanged"
            if refs < record.refs and time.time() - record.touched < grace:
                return "recent"
            before = self._contribution(name)
            raised = refs > record.refs
            record.refs = refs
            self._tally(name, before)
            return "raised" if raised else "lowered"

    def add_record(self, *, name: str, digest: str, size: int, refs: int) -> bool:
        with self._store.lock:
            key = self._prefix + name
            tombstone = self._tombstone(name)
            if (
                key in self._store.records
                or self._reservation(name) is not None
                or self._quarantined(name)
                or (tombstone is not None and tombstone.state == "deleting")
            ):
                return False
            self._store.records[key] = _Record(digest, refs, "live", size)
            self._tally(name, (0, 0, 0))
            canonical = self._store.content.get(self._prefix + digest)
            canonical_record = (
                self._store.records.get(self._prefix + canonical) if canonical else None
            )
            if canonical_record is None or canonical_record.state != "live":
                self._store.content[self._prefix + digest] = name
            return True

    def is_initialised(self) -> bool:
        with self._store.lock:
            return self._prefix in self._store.initialised

    def mark_initialised(self) -> None:
        with self._store.lock:
            self._store.initialised.add(self._prefix)

    def ping(self) -> None:
        """Answer always: the index lives in this process."""
