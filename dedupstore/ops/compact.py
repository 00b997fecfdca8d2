"""``compact``: where rows name different objects with the same content, keep one copy.

``adopt`` records every stored object under its content key; objects with one key and
different names are copies. For each copy, the rows that name it are rewritten to the
name content reuse hands out for that key (the canonical copy), in transactions of
``batch_size`` rows, where the canonical name fits the field's ``max_length``. The content
key includes the reuse scope, so no row moves across a ``reuse_scope`` boundary. Then the
copy, held by nobody, is deleted through the storage's ``delete()``. A dry run unless
``apply``: it shows the bytes it would reclaim.

The canonical count is raised before any row names it and the copy's lowered after its
rows moved, so a crash at any point leaves at worst a count that errs high.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction

from dedupstore import liveset
from dedupstore.index.base import ObjectRecord
from dedupstore.ops.base import Report, batched, progress

if TYPE_CHECKING:
    from dedupstore.storage import DedupStorage

__all__ = ["compact"]


def compact(
    storage: DedupStorage,
    *,
    where: str,
    apply: bool = False,
    batch_size: int = 500,
    show_progress: bool = False,
) -> Report:
    """Find (and with ``apply``, merge) the copies of identical content; see the docstring."""
    report = Report("compact", where, storage.namespace, problem_kinds=("failed",))
    copies = report.finding("copies")
    reclaimable = 0
    index = storage.index
    scanned = progress(index.scan_records(), enabled=show_progress, description="index")
    for batch in batched(scanned):
        live = [item.record for item in batch if item.record.state == "live"]
        canonical_names = index.content_names([record.digest for record in live])
        for record, canonical in zip(live, canonical_names, strict=True):
            if canonical is None or canonical == record.name:
                continue
            kept = index.lookup(canonical)
            if kept is None or kept.state != "live" or kept.digest != record.digest:
                continue
            copies.add(name=record.name, copy_of=canonical, size=record.size)
            reclaimable += record.size
            if apply:
                _merge(storage, report, record, canonical, batch_size)
    report.figures["reclaimable_bytes" if not apply else "reclaimed_bytes"] = reclaimable
    if not apply:
        report.notes.append("dry run: no row was rewritten, nothing deleted (--apply does)")
    return report


def _merge(
    storage: DedupStorage, report: Report, copy: ObjectRecord, canonical: str, batch_size: int
) -> None:
    """Move the rows naming ``copy`` to ``canonical``; delete the copy once nobody holds it."""
    index = storage.index
    moved_total = 0
    for ref in liveset.reference_fields(storage):
        max_length = getattr(ref.model._meta.get_field(ref.field), "max_length", None)
        if max_length is not None and len(canonical) > max_length:
            report.finding("too_long").add(name=copy.name, field=ref.label)
            continue
        while True:
            with transaction.atomic(using=ref.using):
                pks = list(
                    ref.queryset()
                    .filter(**{ref.field: copy.name})
                    .select_for_update()
                    .values_list("pk", flat=True)[:batch_size]
                )
                if not pks:
                    break
                # The canonical count first: a crash leaves it high, never low.
                kept = index.lookup(canonical)
                if kept is None or kept.state != "live":
                    report.finding("failed").add(name=copy.name, error="canonical copy is gone")
                    return
                index.set_references(canonical, kept.refs + len(pks), grace=0.0)
                moved = ref.queryset().filter(pk__in=pks).update(**{ref.field: canonical})
            moved_total += moved
    current = index.lookup(copy.name)
    if current is not None and current.state == "live" and moved_total:
        # The rows moved were ours to move: their references go at once.
        index.set_references(copy.name, max(current.refs - moved_total, 0), grace=0.0)
    if liveset.rows_holding(storage, copy.name):
        report.finding("kept").add(name=copy.name, reason="rows still hold it")
        return
    index.forget_content(digest=copy.digest, name=copy.name)
    current = index.lookup(copy.name)
    if current is not None and current.refs > 0:
        report.finding("kept").add(name=copy.name, reason="referenced since")
        return
    storage.delete(copy.name)
    report.finding("merged").add(name=copy.name, into=canonical, rows=moved_total)
