"""``verify``: compare the rows (the truth) with the index (a cache of it); change nothing.

Three passes, each with bounded memory:

1. the live set, in name order, a batch at a time against the index's records (the index
   compares the counts and answers only the differences and the most shared) and the
   inner storage: counts that differ, names the index does not track, broken links;
2. the index's records, counted without reading them (``--deep`` reads and re-hashes
   each); when there are more records than pass 1 matched, a scan asks the rows, a batch
   at a time, which records nobody holds: counted references (leaks) and records with no
   count left (garbage for ``gc``);
3. the inner storage's listing, where it can list: objects neither the index nor a row
   knows (orphans).
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from typing import TYPE_CHECKING

from django.utils import timezone

from dedupstore import liveset
from dedupstore.marker import IndexState, index_state
from dedupstore.ops.base import (
    Existence,
    Report,
    batched,
    compared_batches,
    held_counts,
    inner_names,
    progress,
    source_counts,
    stored_content_key,
)

if TYPE_CHECKING:
    from dedupstore.storage import DedupStorage

__all__ = ["PROBLEMS", "TOP", "verify"]

#: How many of the most shared objects a verify keeps in its result.
TOP = 10

#: The findings that make ``verify`` exit 1.
PROBLEMS = (
    "index_lost",
    "undercounted",
    "overcounted",
    "untracked",
    "broken_links",
    "leaks",
    "orphans",
    "corrupt",
)


def verify(
    storage: DedupStorage,
    *,
    where: str,
    deep: bool = False,
    orphans: bool = True,
    show_progress: bool = False,
    save_result: bool = True,
) -> Report:
    """Report every difference between the live set, the index and the inner storage."""
    report = Report("verify", where, storage.namespace, problem_kinds=PROBLEMS)
    for kind in PROBLEMS[:7] + (("corrupt",) if deep else ()):
        report.finding(kind)
    state = index_state(storage)
    if state is IndexState.LOST:
        report.finding("index_lost").add(
            index=storage.index.display_url, fix="manage.py dedupstore reconcile"
        )
    rows = names = matched = 0
    shared: list[tuple[int, int, str]] = []  # the most shared objects (memory: TOP)
    existence = Existence(storage)
    live = progress(liveset.live_counts(storage), enabled=show_progress, description="live set")
    # The index compares the counts itself and answers only what differs.
    compared = compared_batches(
        storage, live, shared_from=lambda: shared[0][0] if len(shared) >= TOP else 2
    )
    for batch_names, batch_rows, check in compared:
        names += len(batch_names)
        rows += sum(batch_rows)
        matched += check.matched
        for position, refs, size in check.shared:
            _keep_shared(shared, (refs, size, batch_names[position]))
        # Whether each object exists, for the whole batch at once (a listing per directory).
        present = existence.existing(batch_names)
        differing = {position: (found, refs) for position, found, refs, _ in check.differences}
        absent = (
            [position for position, name in enumerate(batch_names) if name not in present]
            if len(present) < len(batch_names)
            else []
        )
        # Findings in name order, as the live set yields them.
        for position in sorted(differing.keys() | absent):
            name, held = batch_names[position], batch_rows[position]
            record_state, refs = differing.get(position, ("live", held))
            if record_state is None:
                kind = "untracked" if name in present else "broken_links"
                report.finding(kind).add(name=name, rows=held)
                continue
            if record_state != "live":
                report.finding("busy").add(name=name, state=record_state)
                continue
            if refs < held:
                report.finding("undercounted").add(name=name, rows=held, references=refs)
            elif refs > held:
                report.finding("overcounted").add(name=name, rows=held, references=refs)
            if name not in present:
                report.finding("broken_links").add(name=name, rows=held)
    sources = source_counts(storage)
    # Every record whose name the live set holds was met above ("matched"); only when the
    # index holds more records than that does a scan ask the rows which ones nobody holds
    # (counting the records reads none of them). --deep re-hashes every live record.
    if deep:
        records_seen = _find_corrupt(storage, report, show_progress)
    else:
        records_seen = storage.index.count_records()
    if records_seen > matched:
        _find_unheld(storage, report, sources, shared, show_progress)
    if orphans:
        _find_orphans(storage, report, sources, show_progress)
    counters = storage.index.stats()
    report.figures.update(
        index_state=state.value,
        live_names=names,
        rows=rows,
        records=records_seen,
        counted_references=counters.references,
        most_shared=[
            {"name": name, "references": refs, "size": size}
            for refs, size, name in sorted(shared, reverse=True)
        ],
    )
    if save_result:
        _save_result(storage, report)
    return report


def _keep_shared(shared: list[tuple[int, int, str]], entry: tuple[int, int, str]) -> None:
    """Keep ``entry`` (refs, size, name) if it is among the ``TOP`` most shared so far."""
    if len(shared) < TOP:
        heapq.heappush(shared, entry)
    else:
        heapq.heappushpop(shared, entry)


def _find_corrupt(storage: DedupStorage, report: Report, show_progress: bool) -> int:
    """Re-hash every live record's object (``--deep``); return how many records there are."""
    records = 0
    scanned = progress(storage.index.scan_records(), enabled=show_progress, description="index")
    for item in scanned:
        record = item.record
        records += 1
        if record.state == "live":
            stored = stored_content_key(storage, record.name)
            if stored is not None and stored[0] != record.digest:
                report.finding("corrupt").add(name=record.name, size=stored[1])
    return records


def _find_unheld(
    storage: DedupStorage,
    report: Report,
    sources: Counter[str],
    shared: list[tuple[int, int, str]],
    show_progress: bool,
) -> None:
    """Report the live records no row holds: leaks (counted) and garbage (count 0).

    They count among the most shared too (``shared``): the live set did not meet them.
    """
    scanned = progress(storage.index.scan_records(), enabled=show_progress, description="rows")
    for batch in batched(scanned):
        held_by = held_counts(storage, [item.record.name for item in batch], sources)
        for item in batch:
            record = item.record
            if record.state == "live" and not held_by.get(record.name):
                if record.refs > 1:
                    _keep_shared(shared, (record.refs, record.size, record.name))
                if record.refs:
                    report.finding("leaks").add(name=record.name, references=record.refs)
                else:
                    report.finding("garbage").add(name=record.name, size=record.size)


def _find_orphans(
    storage: DedupStorage, report: Report, sources: Counter[str], show_progress: bool
) -> None:
    """Report the listed objects that neither a record nor a row knows."""
    try:
        listing = inner_names(storage)
        first = next(listing, None)
    except NotImplementedError:
        report.notes.append("orphans: the inner storage cannot list its objects; not looked for")
        return
    if first is None:
        return
    listed = progress(
        itertools.chain([first], listing), enabled=show_progress, description="inner storage"
    )
    for batch in batched(listed):
        records = storage.index.lookup_many(batch)
        held = held_counts(storage, batch, sources)
        for name, record in zip(batch, records, strict=True):
            if record is None and not held.get(name):
                report.finding("orphans").add(name=name)


def _save_result(storage: DedupStorage, report: Report) -> None:
    """Keep the result on the namespace's marker for the admin page (if there is one)."""
    from django.apps import apps
    from django.db import DatabaseError

    if not apps.is_installed("dedupstore"):
        return
    marker = apps.get_model("dedupstore", "IndexMarker")
    try:
        marker._default_manager.filter(namespace=storage.namespace).update(
            last_verify=report.as_json(), last_verify_at=timezone.now()
        )
    except DatabaseError:
        report.notes.append("the result could not be kept in the database (not migrated?)")
