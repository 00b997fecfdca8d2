"""The delete protocol: one ``DeleteAttempt`` per ``delete()``, from ``begin_delete`` on.

The attempt holds its state explicitly: its token, and the index's decision (whose digest
is the lease it holds while the inner delete runs). See ``docs/internals.md`` for the
record states.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from django.db import DatabaseError

from dedupstore.exceptions import IndexLost, IndexUnavailable
from dedupstore.index import DeleteDecision
from dedupstore.tokens import new_token

if TYPE_CHECKING:
    from dedupstore.storage import DedupStorage

__all__ = ["DeleteAttempt"]

logger = logging.getLogger("dedupstore")

#: What a delete whose inner delete ran, and whose index could not record it, leaves.
UNRECORDED_DELETE = (
    "The inner object was deleted and the reference dropped, but the index could not record "
    "the deletion: do not retry this delete (a retry would drop a reference saved under the "
    "name meanwhile). The name stays marked as being deleted, with no references, until the "
    "next save or delete() of it completes that."
)


def failed_inner_delete_note(name: str, *, tracked: bool) -> str:
    """Say what a failed inner delete left behind, and when calling delete() again is safe."""
    held = (
        f"the last reference to {name!r} was already dropped and the inner object is kept, "
        "marked as being deleted"
        if tracked
        else f"{name!r} had no counted reference; the inner object is kept"
    )
    return (
        f"dedupstore: {held}. Calling delete({name!r}) again retries the inner delete, but "
        "not if the name may have been saved again since: it would drop that save's reference."
    )


class DeleteAttempt:
    """Drop one reference to a validated ``name``; delete the inner object with the last."""

    def __init__(
        self, storage: DedupStorage, name: str, *, unreferenced_only: bool = False
    ) -> None:
        self.storage = storage
        self.name = name
        #: gc: delete only a record that still has no reference (see ``Index.begin_delete``).
        self.unreferenced_only = unreferenced_only
        #: This attempt's identity in the index: the lease on the content or tombstone.
        self.token = new_token()

    def run(self) -> str:
        """Return what became of the object: ``deleted``, ``kept`` (references remain, or
        rows hold it: the database guard), or ``done`` (an earlier run dropped ours)."""
        storage, name, token = self.storage, self.name, self.token
        decision = storage._until_decided(
            lambda: storage.index.begin_delete(
                name=name,
                token=token,
                claim_ttl=storage.claim_ttl,
                unreferenced_only=self.unreferenced_only,
            ),
            repr(name),
        )
        if decision.action in ("kept", "done"):
            # "done": a run whose reply was lost dropped our reference already.
            return decision.action
        # "delete": the last reference went, we hold the content's claim. "unknown": no
        # record, we hold a tombstone on the name. The keeper renews either lease.
        keeper = storage._claim_keeper
        keeper.keep(decision.digest, token)
        try:
            if storage.db_guard and self._kept_for_rows(decision):
                return "kept"
            self._delete_inner(tracked=decision.action == "delete")
            try:
                storage.index.commit_delete(name=name, digest=decision.digest, token=token)
            except IndexUnavailable as exc:
                # commit_delete retried already; a retried delete() would drop another
                # reference, so the message must not invite one.
                raise exc.with_outcome(UNRECORDED_DELETE) from exc
        except BaseException:
            # The record stays "deleting" with no references: no save reuses it, and the
            # next save or delete() of the name finishes it (see docs/internals.md).
            storage._quietly(
                lambda: storage.index.release_claim(digest=decision.digest, token=token)
            )
            raise
        finally:
            keeper.release(token)
        return "deleted"

    def _delete_inner(self, *, tracked: bool) -> None:
        try:
            with contextlib.suppress(FileNotFoundError):
                self.storage.inner.delete(self.name)
        except Exception as exc:
            # The inner error keeps its type (callers catch OSError...); the note says what
            # the index did, since a blind retry is not always safe.
            exc.add_note(failed_inner_delete_note(self.name, tracked=tracked))
            raise

    def _kept_for_rows(self, decision: DeleteDecision) -> bool:
        """Keep the object while database rows hold the name: the second witness.

        Rows that still hold it win: the delete is cancelled and the record counts one
        reference per row. Without rows, a name the index did not know in a namespace the
        database says had an index means the index was lost: ``IndexLost``. Storages no
        model field uses have no second witness: nothing is asked.
        """
        from dedupstore import liveset
        from dedupstore.marker import IndexState, index_state

        storage, name, token = self.storage, self.name, self.token
        if not liveset.has_witnesses(storage):
            return False
        try:
            rows = liveset.rows_holding(storage, name)
        except DatabaseError:
            logger.warning(
                "dedupstore: the database could not say whether rows hold %r; keeping it",
                name,
                exc_info=True,
            )
            rows = {"(database unavailable)": 1}
        if not rows:
            if decision.action == "unknown" and index_state(storage) is IndexState.LOST:
                storage.index.cancel_delete(
                    name=name, token=token, digest="", refs=0, size=0, lease=decision.digest
                )
                raise IndexLost(storage.namespace, storage.index.display_url)
            return False
        digest, size = decision.digest, 0
        if decision.action == "unknown":
            digest, size = self.storage._content_key_of_stored(self.name)
        cancelled = storage.index.cancel_delete(
            name=name,
            token=token,
            digest=digest,
            refs=sum(rows.values()),
            size=size,
            lease=decision.digest,
        )
        logger.warning(
            "dedupstore: kept %r: the index %s, but rows still hold it (%s)%s",
            name,
            "counted no reference left" if decision.action == "delete" else "did not know it",
            ", ".join(f"{label}: {count}" for label, count in sorted(rows.items())),
            "; its count is repaired" if cancelled else "",
        )
        # The caller may be FieldFile.delete(), whose own row forgets the name only next.
        liveset.delete_again_after_rows_change(storage, name)
        return True
