"""A reference counted for a row that never committed: verify finds it, reconcile and gc fix it.

``storage.save()`` counts its reference before the row's transaction commits; when that
transaction rolls back, the index counts a reference nobody holds. Run on SQLite and on
PostgreSQL, with the real ``manage.py dedupstore`` commands.
"""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.db import transaction

from dedupstore import DedupStorage
from tests.ops_helpers import DATABASES, dedupstore, empty_ops_storage
from tests.testapp.models import Clip, Reel

pytestmark = pytest.mark.django_db(databases=DATABASES, transaction=True)


@pytest.fixture
def ops() -> DedupStorage:
    return empty_ops_storage()


class RolledBack(Exception):
    pass


def save_then_roll_back(using: str, content: bytes) -> str:
    """Save a file for a row whose transaction rolls back; return the stored name."""
    stored = ""
    with pytest.raises(RolledBack), transaction.atomic(using=using):
        reel = Reel()
        reel.film.save("leak.bin", ContentFile(content), save=False)
        stored = reel.film.name
        reel.save(using=using)
        raise RolledBack
    assert not Reel.objects.using(using).filter(film=stored).exists()
    return stored


@pytest.mark.parametrize("using", DATABASES)
def test_a_rolled_back_save_is_a_leak_that_reconcile_lowers_and_gc_reclaims(
    ops: DedupStorage, using: str
) -> None:
    kept = Clip(video=ops.save("clips/kept.bin", ContentFile(b"a committed row holds me")))
    kept.save(using=using)
    # Enough rows that one leak is within --max-drop (10 %): reconcile and gc act on it.
    for number in range(10):
        Clip(video=ops.save(f"clips/{number}.bin", ContentFile(b"%d" % number))).save(using=using)
    leaked = save_then_roll_back(using, b"nobody holds me")
    assert ops.references(leaked) == 1

    verify = dedupstore("verify", "--storage", "ops", "--json")
    assert verify.status == 1
    assert verify.found("leaks") == [leaked]
    assert verify.report["findings"]["overcounted"]["count"] == 0

    # Within the grace the count stays: the row of a save may not have committed yet.
    within = dedupstore("reconcile", "--storage", "ops", "--json")
    assert within.status == 0
    assert within.found("kept_within_grace") == [leaked]
    assert ops.references(leaked) == 1

    repaired = dedupstore("reconcile", "--storage", "ops", "--grace", "0", "--json")
    assert repaired.status == 0
    assert repaired.found("lowered") == [leaked]
    assert ops.references(leaked) == 0
    after = dedupstore("verify", "--storage", "ops", "--json")
    assert after.status == 0, after.stdout
    assert after.found("garbage") == [leaked]

    dry = dedupstore("gc", "--storage", "ops", "--grace", "0", "--json")
    assert dry.status == 0
    assert dry.found("unreferenced") == [leaked]
    assert ops.exists(leaked)

    applied = dedupstore("gc", "--storage", "ops", "--grace", "0", "--apply", "--json")
    assert applied.status == 0, applied.stdout
    assert applied.found("deleted") == [leaked]
    assert not ops.exists(leaked)
    assert ops.exists(kept.video.name) and ops.references(kept.video.name) == 1
    final = dedupstore("verify", "--storage", "ops", "--json")
    assert final.status == 0
    assert final.report["findings"].get("garbage", {"count": 0})["count"] == 0
    assert final.report["figures"]["counted_references"] == 11


def test_gc_keeps_what_is_younger_than_the_grace(ops: DedupStorage) -> None:
    Clip.objects.create(video=ops.save("clips/held.bin", ContentFile(b"held")))
    leaked = save_then_roll_back("default", b"young leak")
    dedupstore("reconcile", "--storage", "ops", "--grace", "0", "--force")
    run = dedupstore("gc", "--storage", "ops", "--apply", "--json")  # the default grace, 1 h
    assert run.status == 0
    assert run.report["findings"]["unreferenced"]["count"] == 0
    assert ops.exists(leaked)


def test_gc_refuses_when_the_rows_hold_far_fewer_references_than_the_index_counts(
    ops: DedupStorage,
) -> None:
    names = [ops.save(f"clips/{number}.bin", ContentFile(b"x%d" % number)) for number in range(10)]
    Clip.objects.create(video=names[0])  # 1 row, 10 counted: a misconfigured database?
    run = dedupstore("gc", "--storage", "ops", "--grace", "0", "--apply", "--json")
    assert run.status == 1
    assert run.report["refused"]
    assert "--max-drop" in " ".join(run.report["notes"])
    assert all(ops.exists(name) for name in names)


def test_gc_refuses_an_empty_live_set_unless_forced(ops: DedupStorage) -> None:
    name = ops.save("clips/only.bin", ContentFile(b"counted, no row"))
    assert dedupstore("gc", "--storage", "ops", "--grace", "0", "--apply").status == 1
    assert ops.exists(name)
    # reconcile refuses to lower the count too (an empty live set), unless forced.
    assert dedupstore("reconcile", "--storage", "ops", "--grace", "0").status == 1
    assert ops.references(name) == 1
    assert dedupstore("reconcile", "--storage", "ops", "--grace", "0", "--force").status == 0
    # Now the index agrees that nothing is held: there is nothing to refuse.
    run = dedupstore("gc", "--storage", "ops", "--grace", "0", "--apply", "--json")
    assert run.status == 0
    assert not ops.exists(name)


def test_verify_reports_broken_links_untracked_names_orphans_and_wrong_counts(
    ops: DedupStorage,
) -> None:
    shared = ops.save("clips/shared.bin", ContentFile(b"shared"))
    Clip.objects.create(video=shared)
    Reel.objects.create(film=shared)  # two rows, one counted reference
    Clip.objects.create(video="clips/missing.bin")  # no such object
    ops.inner.save("clips/untracked.bin", ContentFile(b"stored before the wrapper"))
    Reel.objects.create(film="clips/untracked.bin")
    orphan = ops.inner.save("clips/orphan.bin", ContentFile(b"nothing knows me"))
    run = dedupstore("verify", "--storage", "ops", "--json")
    assert run.status == 1
    assert run.found("undercounted") == [shared]
    assert run.found("broken_links") == ["clips/missing.bin"]
    assert run.found("untracked") == ["clips/untracked.bin"]
    assert run.found("orphans") == [orphan]
    assert run.report["figures"]["rows"] == 4


def test_verify_deep_reports_an_object_whose_bytes_changed(ops: DedupStorage) -> None:
    name = ops.save("clips/changed.bin", ContentFile(b"original bytes"))
    Clip.objects.create(video=name)
    with open(ops.path(name), "wb") as handle:
        handle.write(b"bytes changed behind the index's back")
    assert dedupstore("verify", "--storage", "ops").status == 0
    deep = dedupstore("verify", "--storage", "ops", "--deep", "--json")
    assert deep.status == 1
    assert deep.found("corrupt") == [name]


def test_reconcile_raises_a_count_below_the_rows_at_once(ops: DedupStorage) -> None:
    name = ops.save("clips/two.bin", ContentFile(b"copied between rows"))
    Clip.objects.create(video=name)
    Reel.objects.create(film=name, poster=name)
    run = dedupstore("reconcile", "--storage", "ops", "--json")  # the default grace
    assert run.found("raised") == [name]
    assert ops.references(name) == 3
    assert dedupstore("verify", "--storage", "ops").status == 0


def test_reconcile_lowers_nothing_when_the_rows_hold_far_fewer_references_unless_forced(
    ops: DedupStorage,
) -> None:
    names = [ops.save(f"clips/{number}.bin", ContentFile(b"y%d" % number)) for number in range(10)]
    Clip.objects.create(video=names[0])  # 1 row, 10 counted: the wrong database?
    held = Clip.objects.create(video=ops.save("clips/held.bin", ContentFile(b"held")))
    Reel.objects.create(film=held.video.name)  # and one count below its rows
    run = dedupstore("reconcile", "--storage", "ops", "--grace", "0", "--json")
    assert run.status == 1 and run.report["refused"]
    assert run.found("lowered") == []
    assert run.found("raised") == [held.video.name]  # raising is always safe
    assert all(ops.references(name) == 1 for name in names)
    forced = dedupstore("reconcile", "--storage", "ops", "--grace", "0", "--force", "--json")
    assert forced.status == 0
    assert len(forced.found("lowered")) == 9
