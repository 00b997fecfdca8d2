"""``verify`` and ``reconcile`` over a live set of many batches (``ops.base.compared_batches``).

The index compares one batch while the next is read and the one before is handled: every
finding of every batch must still be reported once, in name order.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.base import ContentFile

from dedupstore import DedupStorage
from dedupstore.ops import base as ops_base
from tests.ops_helpers import DATABASES, dedupstore, empty_ops_storage
from tests.testapp.models import Clip

pytestmark = pytest.mark.django_db(databases=DATABASES, transaction=True)


@pytest.fixture
def ops(monkeypatch: pytest.MonkeyPatch) -> DedupStorage:
    real = ops_base.batched

    def in_twos(items: Any, size: int = 2) -> Any:
        return real(items, 2)

    monkeypatch.setattr(ops_base, "batched", in_twos)
    return empty_ops_storage()


def test_every_batch_s_findings_are_reported_in_name_order(ops: DedupStorage) -> None:
    names = [ops.save(f"clips/{number}.bin", ContentFile(b"%d" % number)) for number in range(9)]
    for name in names:
        Clip.objects.create(video=name)
    Clip.objects.create(video=names[1])  # undercounted, batch 1
    Clip.objects.create(video=names[8])  # undercounted, the last batch (of one)
    ops.index.set_references(names[4], 3, grace=0)  # overcounted, batch 3
    ops.inner.delete(names[6])  # a broken link, batch 4
    Clip.objects.create(video="clips/untracked.bin")  # sorts after clips/8.bin
    ops.inner.save("clips/untracked.bin", ContentFile(b"u"))

    verify = dedupstore("verify", "--storage", "ops", "--json")

    assert verify.status == 1
    assert verify.found("undercounted") == [names[1], names[8]]
    assert verify.found("overcounted") == [names[4]]
    assert verify.found("broken_links") == [names[6]]
    assert verify.found("untracked") == ["clips/untracked.bin"]
    assert verify.report["figures"]["live_names"] == 10

    repaired = dedupstore("reconcile", "--storage", "ops", "--grace", "0", "--json")

    assert repaired.found("raised") == [names[1], names[8]]
    assert repaired.found("lowered") == [names[4]]
    assert repaired.found("recorded") == ["clips/untracked.bin"]
    after = dedupstore("verify", "--storage", "ops", "--json")
    assert after.found("broken_links") == [names[6]]
    assert sum(found["count"] for found in after.report["findings"].values()) == 1


def test_the_most_shared_objects_are_found_across_batches(
    ops: DedupStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dedupstore.ops.verify.TOP", 2)
    # Shares 2, 5, 3, 4, 1, 6 in name order: the index is asked for records with at least
    # as many references as the second most shared met so far.
    shares = [2, 5, 3, 4, 1, 6]
    names = []
    for number, share in enumerate(shares):
        name = ops.save(f"clips/{number}.bin", ContentFile(b"%d" % number))
        names.append(name)
        for _ in range(share):
            Clip.objects.create(video=name)
        ops.index.set_references(name, share, grace=0)

    run = dedupstore("verify", "--storage", "ops", "--json")

    assert run.status == 0, run.stdout
    assert run.report["figures"]["most_shared"] == [
        {"name": names[5], "references": 6, "size": 1},
        {"name": names[1], "references": 5, "size": 1},
    ]
