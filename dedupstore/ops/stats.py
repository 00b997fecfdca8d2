"""``stats``: the index's counters (O(1)), and the most shared objects (a bounded scan)."""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from dedupstore.ops.base import Report

if TYPE_CHECKING:
    from dedupstore.storage import DedupStorage

__all__ = ["most_shared", "stats"]


def most_shared(storage: DedupStorage, top: int) -> list[dict[str, object]]:
    """Return the ``top`` live records with the most references (one scan, ``top`` kept)."""
    if top <= 0:
        return []
    best = heapq.nlargest(
        top,
        (
            (item.record.refs, item.record.size, item.record.name)
            for item in storage.index.scan_records()
            if item.record.state == "live" and item.record.refs > 1
        ),
    )
    return [{"name": name, "references": refs, "size": size} for refs, size, name in best]


def stats(storage: DedupStorage, *, where: str, top: int = 10) -> Report:
    """Report objects, references, physical and logical bytes and the dedup ratio.

    The figures are the counters the index scripts keep (one read); ``top`` > 0 adds the
    most shared objects, which takes one scan of the records (memory: ``top`` entries).
    """
    counters = storage.index.stats()
    ratio = counters.logical_bytes / counters.physical_bytes if counters.physical_bytes else 1.0
    report = Report("stats", where, storage.namespace)
    report.figures.update(
        objects=counters.objects,
        references=counters.references,
        physical_bytes=counters.physical_bytes,
        logical_bytes=counters.logical_bytes,
        saved_bytes=counters.logical_bytes - counters.physical_bytes,
        dedup_ratio=round(ratio, 3),
    )
    if top > 0:
        report.figures["most_shared"] = most_shared(storage, top)
    return report
