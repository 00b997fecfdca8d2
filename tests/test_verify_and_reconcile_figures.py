"""The figures ``verify`` and ``reconcile`` report: the most shared objects, the counters.

Both commands compare the rows with the index a batch at a time inside the index
(``Index.compare_counts``) and read no record twice when every record is held: these tests
pin that the figures stay what a full scan of the records gives.
"""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile

from dedupstore import DedupStorage
from dedupstore.index.base import IndexStats
from tests.ops_helpers import DATABASES, dedupstore, empty_ops_storage
from tests.testapp.models import Clip

pytestmark = pytest.mark.django_db(databases=DATABASES, transaction=True)


@pytest.fixture
def ops() -> DedupStorage:
    return empty_ops_storage()


def scanned_counters(storage: DedupStorage) -> IndexStats:
    """The counters as a scan of every record adds them up."""
    records = [item.record for item in storage.index.scan_records()]
    return IndexStats(
        len(records),
        sum(record.refs for record in records),
        sum(record.size for record in records),
        sum(record.refs * record.size for record in records),
    )


def test_verify_lists_the_most_shared_objects_rows_hold_and_those_nobody_holds(
    ops: DedupStorage,
) -> None:
    held = ops.save("clips/held.bin", ContentFile(b"h" * 30))
    for _ in range(3):
        Clip.objects.create(video=held)
    for _ in range(2):
        ops.save("clips/held.bin", ContentFile(b"h" * 30))
    # Counted twice, held by no row: a leak, and still among the most shared.
    leaked = ops.save("clips/leaked.bin", ContentFile(b"l" * 20))
    assert ops.save("clips/leaked-again.bin", ContentFile(b"l" * 20)) == leaked
    Clip.objects.create(video=ops.save("clips/single.bin", ContentFile(b"s")))

    run = dedupstore("verify", "--storage", "ops", "--json")

    assert run.report["figures"]["most_shared"] == [
        {"name": held, "references": 3, "size": 30},
        {"name": leaked, "references": 2, "size": 20},
    ]
    assert run.found("leaks") == [leaked]
    assert run.report["figures"]["records"] == 3


def test_reconcile_sets_the_counters_from_the_records_when_every_record_is_held(
    ops: DedupStorage,
) -> None:
    first = ops.save("clips/first.bin", ContentFile(b"f" * 40))
    Clip.objects.create(video=first)
    Clip.objects.create(video=first)  # a second row the index does not count: raised
    Clip.objects.create(video=ops.save("clips/second.bin", ContentFile(b"s" * 7)))
    ops.index.set_stats(IndexStats(99, 99, 99, 99))

    run = dedupstore("reconcile", "--storage", "ops", "--json")

    assert run.found("raised") == [first]
    assert ops.index.stats() == scanned_counters(ops) == IndexStats(2, 3, 47, 87)
    assert run.report["figures"]["logical_bytes"] == 87


def test_reconcile_counts_a_record_no_row_holds_in_the_counters(ops: DedupStorage) -> None:
    Clip.objects.create(video=ops.save("clips/held.bin", ContentFile(b"h" * 10)))
    for number in range(10):
        Clip.objects.create(video=ops.save(f"clips/{number}.bin", ContentFile(b"%d" % number)))
    ops.save("clips/unheld.bin", ContentFile(b"u" * 5))  # within the grace: kept
    ops.index.set_stats(IndexStats())

    run = dedupstore("reconcile", "--storage", "ops", "--json")

    assert run.found("kept_within_grace") == ["clips/unheld.bin"]
    assert ops.index.stats() == scanned_counters(ops)
    assert ops.index.stats().objects == 12
