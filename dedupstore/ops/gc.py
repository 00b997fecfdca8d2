"""``gc``: remove the objects no row holds and the index counts no reference to.

The candidates are the live records with no reference left (``reconcile`` lowers a leak to
0) and the inner objects neither a record nor a row knows (orphans, where the inner
storage can list), each unchanged for ``grace`` seconds. Each goes through the storage's
own ``delete()`` (the index's claim and the database guard included). A dry run unless
``apply``; it refuses, unless ``force``, when the live set is empty or smaller than the
index's counts by more than ``max_drop``: a run pointed at the wrong database must not
wipe the storage.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING

from dedupstore.deleting import DeleteAttempt
from dedupstore.exceptions import IndexLost
from dedupstore.marker import IndexState, index_state
from dedupstore.ops.base import (
    Report,
    batched,
    held_counts,
    inner_names,
    live_total,
    progress,
    source_counts,
    too_small,
)
from dedupstore.ops.reconcile import DEFAULT_GRACE, DEFAULT_MAX_DROP

if TYPE_CHECKING:
    from dedupstore.storage import DedupStorage

__all__ = ["DEFAULT_MAX_DROP", "gc"]


def gc(
    storage: DedupStorage,
    *,
    where: str,
    apply: bool = False,
    force: bool = False,
    grace: float = DEFAULT_GRACE,
    max_drop: float = DEFAULT_MAX_DROP,
    orphans: bool = True,
    show_progress: bool = False,
) -> Report:
    """Find (and with ``apply``, delete) what nothing references; see the module docstring."""
    report = Report("gc", where, storage.namespace, problem_kinds=("failed",))
    state = index_state(storage)
    if state is IndexState.LOST:
        report.refused = True
        report.notes.append(
            "refused: the index was lost; run 'manage.py dedupstore reconcile' first"
        )
        return report
    sources = source_counts(storage)
    rows = live_total(storage, sources)
    counted = storage.index.stats().references
    report.figures.update(rows=rows, counted_references=counted, applied=apply)
    if not force and too_small(rows, counted, max_drop):
        report.refused = True
        report.notes.append(
            f"refused: the rows hold {rows:,} references, the index counts {counted:,}; "
            f"more than --max-drop {max_drop:.0%} would go. Check the database and "
            "DEDUPSTORE_REFERENCE_SOURCES, run reconcile, or pass --force."
        )
        return report
    candidates = report.finding("unreferenced")
    reclaimed = 0
    cutoff = time.time() - grace
    scanned = progress(storage.index.scan_records(), enabled=show_progress, description="index")
    for batch in batched(scanned):
        old = [
            item.record
            for item in batch
            if item.record.state == "live" and item.record.refs == 0 and item.touched <= cutoff
        ]
        held = held_counts(storage, [record.name for record in old], sources)
        for record in old:
            if held.get(record.name):
                continue
            candidates.add(name=record.name, size=record.size)
            reclaimed += record.size
            if apply:
                _delete_unreferenced(storage, report, record.name, record.digest)
    if orphans:
        reclaimed += _orphans(storage, report, sources, cutoff, apply, show_progress)
    report.figures["reclaimable_bytes" if not apply else "reclaimed_bytes"] = reclaimed
    if not apply:
        report.notes.append("dry run: nothing was deleted (--apply deletes)")
    return report


def _delete_unreferenced(storage: DedupStorage, report: Report, name: str, digest: str) -> None:
    # Content reuse must not hand the name out while it goes; then look once more: a hit
    # through its name (reuse="name") since the scan makes it referenced again.
    storage.index.forget_content(digest=digest, name=name)
    record = storage.index.lookup(name)
    if record is None or record.state != "live" or record.refs != 0:
        report.finding("kept").add(name=name, reason="referenced again")
        return
    # The delete itself checks again, atomically: a hit after that look keeps the object.
    try:
        outcome = DeleteAttempt(storage, name, unreferenced_only=True).run()
    except (IndexLost, OSError) as exc:
        report.finding("failed").add(name=name, error=f"{type(exc).__name__}: {exc}")
        return
    if outcome == "deleted":
        report.finding("deleted").add(name=name)
    else:
        report.finding("kept").add(name=name, reason="referenced again, or rows hold it")


def _delete(storage: DedupStorage, report: Report, name: str) -> None:
    try:
        storage.delete(name)
    except (IndexLost, OSError) as exc:
        report.finding("failed").add(name=name, error=f"{type(exc).__name__}: {exc}")
        return
    if storage.exists(name):
        report.finding("kept").add(name=name, reason="the database guard found a row")
    else:
        report.finding("deleted").add(name=name)


def _orphans(
    storage: DedupStorage,
    report: Report,
    sources: Counter[str],
    cutoff: float,
    apply: bool,
    show_progress: bool,
) -> int:
    """Find (and delete) the old inner objects nothing knows; return their bytes.

    An object whose age the inner storage cannot tell is left alone.
    """
    found = report.finding("orphans")
    reclaimed = 0
    try:
        listed = progress(inner_names(storage), enabled=show_progress, description="inner")
        for batch in batched(listed):
            records = storage.index.lookup_many(batch)
            held = held_counts(storage, batch, sources)
            for name, record in zip(batch, records, strict=True):
                if record is not None or held.get(name):
                    continue
                try:
                    if storage.inner.get_modified_time(name).timestamp() > cutoff:
                        continue
                except (NotImplementedError, OSError):
                    continue
                size = storage.inner.size(name)
                found.add(name=name, size=size)
                reclaimed += size
                if apply:
                    _delete(storage, report, name)
    except NotImplementedError:
        report.notes.append("orphans: the inner storage cannot list its objects; not looked for")
    return reclaimed
