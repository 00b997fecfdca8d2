"""``reconcile``: set every count from the live set, safely while the site runs.

A count below the rows is raised at once (a delete could otherwise remove what rows
hold). A count above them is lowered only when its record is unchanged for ``grace``
seconds: a save counts its reference before its row commits, and that row may commit
any moment. A name the rows hold and the index does not know (after a ``FLUSHDB``, a
restart without persistence) is hashed and recorded. Then the counters are set: from the
records as the live set met them (the index compares a batch of counts at a time and sums
its records) when the index holds no other record and nothing else changed one meanwhile,
else from a scan of the records. A lost index is then marked initialised again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.utils import timezone

from dedupstore import liveset
from dedupstore.index.base import IndexStats, SetReferences
from dedupstore.marker import IndexState, index_state
from dedupstore.ops.base import (
    Report,
    batched,
    compared_batches,
    held_counts,
    live_total,
    progress,
    source_counts,
    stored_content_key,
    too_small,
)

if TYPE_CHECKING:
    from dedupstore.storage import DedupStorage

__all__ = ["DEFAULT_GRACE", "reconcile", "recount"]

#: Seconds a record must be unchanged before reconcile lowers its count (or gc takes it).
DEFAULT_GRACE = 3600.0
#: The largest share by which the live set may be smaller than the index's counts.
DEFAULT_MAX_DROP = 0.10

#: What reconcile could not repair: the rows name objects the inner storage lacks.
PROBLEMS = ("broken_links",)


def reconcile(
    storage: DedupStorage,
    *,
    where: str,
    grace: float = DEFAULT_GRACE,
    max_drop: float = DEFAULT_MAX_DROP,
    force: bool = False,
    show_progress: bool = False,
) -> Report:
    """Set each count to the rows holding it (see the module's docstring).

    When the rows hold far fewer references than the index counts (``too_small``), no
    count is lowered unless ``force``: counts are still raised and names recorded.
    """
    report = Report("reconcile", where, storage.namespace, problem_kinds=PROBLEMS)
    for kind in ("raised", "lowered", "recorded", "broken_links", "kept_within_grace"):
        report.finding(kind)
    state = index_state(storage)
    index = storage.index
    rows, counted = live_total(storage), index.stats().references
    lowering = force or state is IndexState.LOST or not too_small(rows, counted, max_drop)
    if not lowering:
        # A live set this small more likely is a misconfiguration: lower nothing.
        report.refused = True
        report.notes.append(
            f"no count was lowered: the rows hold {rows:,} references, the index counts "
            f"{counted:,} (more than --max-drop {max_drop:.0%} fewer). Check the database "
            "and DEDUPSTORE_REFERENCE_SOURCES, or pass --force."
        )
    matched = 0
    # The counters, summed from the records as the live set meets them and the changes
    # made: exact unless something else changed a record meanwhile ("settled" False).
    sums = _Sums()
    live = progress(liveset.live_counts(storage), enabled=show_progress, description="live set")
    # The index compares the counts itself and answers only what differs.
    for batch_names, batch_rows, check in compared_batches(storage, live):
        matched += check.matched
        sums.add(check.sums)
        for position, record_state, refs, size in check.differences:
            name, held = batch_names[position], batch_rows[position]
            if record_state is None:
                matched += _record(storage, report, name, held, sums)
            elif record_state != "live":
                report.finding("busy").add(name=name, state=record_state)
            elif refs < held or (lowering and refs > held):
                outcome = _set(storage, report, name, held, refs, grace)
                sums.changed(outcome, refs, held, size)
    records = index.count_records()
    if lowering and records > matched:
        # Records the live set did not meet: lower those no row holds, then count again.
        _lower_unheld(storage, report, grace, show_progress)
        counters = recount(storage)
    elif sums.settled and records == sums.objects:
        # Every record was met and nothing else changed one: the sums are the counters.
        counters = sums.stats()
        index.set_stats(counters)
    else:
        counters = recount(storage)
    if state in (IndexState.LOST, IndexState.NEW):
        index.mark_initialised()
    _mark_reconciled(storage, state)
    report.figures.update(
        index_state_before=state.value,
        objects=counters.objects,
        references=counters.references,
        physical_bytes=counters.physical_bytes,
        logical_bytes=counters.logical_bytes,
        grace_seconds=grace,
        rows=rows,
    )
    return report


def _lower_unheld(storage: DedupStorage, report: Report, grace: float, show_progress: bool) -> None:
    """Lower to 0 the counts of the live records no row holds (after the grace)."""
    sources = source_counts(storage)
    scanned = progress(storage.index.scan_records(), enabled=show_progress, description="index")
    for batch in batched(scanned):
        held_by = held_counts(storage, [item.record.name for item in batch], sources)
        for item in batch:
            record = item.record
            if record.state == "live" and record.refs and not held_by.get(record.name):
                _set(storage, report, record.name, 0, record.refs, grace)


class _Sums:
    """The counters (records, references, bytes) summed over the records reconcile met."""

    def __init__(self) -> None:
        self.objects = self.references = self.physical = self.logical = 0
        #: False once a record changed by someone else was seen: then recount.
        self.settled = True

    def add(self, stats: IndexStats) -> None:
        self.objects += stats.objects
        self.references += stats.references
        self.physical += stats.physical_bytes
        self.logical += stats.logical_bytes

    def recorded(self, refs: int, size: int) -> None:
        self.add(IndexStats(1, refs, size, refs * size))

    def changed(self, outcome: SetReferences, was: int, refs: int, size: int) -> None:
        """Account for ``set_references``'s ``outcome`` on a record read with ``was``."""
        if outcome in ("raised", "lowered"):
            self.references += refs - was
            self.logical += (refs - was) * size
        elif outcome != "recent":  # "recent" changed nothing; the others: changed meanwhile
            self.settled = False

    def stats(self) -> IndexStats:
        return IndexStats(self.objects, self.references, self.physical, self.logical)


def _record(storage: DedupStorage, report: Report, name: str, held: int, sums: _Sums) -> bool:
    """Record a name the rows hold and the index does not know (hash its object).

    Return True if the index has (or a save under way is making) a record of it.
    """
    stored = stored_content_key(storage, name)
    if stored is None:
        report.finding("broken_links").add(name=name, rows=held)
        return False
    digest, size = stored
    if storage.index.add_record(name=name, digest=digest, size=size, refs=held):
        report.finding("recorded").add(name=name, references=held)
        sums.recorded(held, size)
    else:
        # A save or delete of the name is under way: the next run sees its outcome.
        report.finding("busy").add(name=name, state="being saved or deleted")
        sums.settled = False
    return True


def _set(
    storage: DedupStorage, report: Report, name: str, held: int, counted: int, grace: float
) -> SetReferences:
    outcome = storage.index.set_references(name, held, grace=grace)
    if outcome == "raised":
        report.finding("raised").add(name=name, references=held, was=counted)
    elif outcome == "lowered":
        report.finding("lowered").add(name=name, references=held, was=counted)
    elif outcome == "recent":
        report.finding("kept_within_grace").add(name=name, rows=held, references=counted)
    elif outcome == "busy":
        report.finding("busy").add(name=name, state="being saved or deleted")
    return outcome


def recount(storage: DedupStorage) -> IndexStats:
    """Set the index's counters from one scan of its records; return them.

    Writes that land during the scan can leave the counters off by their own change
    until the next recount: reconcile at a quiet time for exact figures.
    """
    objects = references = physical = logical = 0
    for item in storage.index.scan_records():
        record = item.record
        objects += 1
        references += record.refs
        physical += record.size
        logical += record.refs * record.size
    counters = IndexStats(objects, references, physical, logical)
    storage.index.set_stats(counters)
    return counters


def _mark_reconciled(storage: DedupStorage, state: IndexState) -> None:
    """Record the namespace's marker (a new or lost index is now the database's again)."""
    from django.apps import apps

    if state is IndexState.UNMARKED:
        return
    marker = apps.get_model("dedupstore", "IndexMarker")
    marker._default_manager.update_or_create(
        namespace=storage.namespace,
        defaults={"index_url": storage.index.display_url, "reconciled": timezone.now()},
    )
