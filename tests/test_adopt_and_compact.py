"""A site moving to dedupstore: ``adopt`` records its files, ``compact`` merges the copies.

The files were written by a plain storage (the ops storage's inner storage, directly), as
a site on django-cloud-storages or FileSystemStorage has them: one content stored several
times under several names, each held by rows.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import redis
from django.core.files.base import ContentFile

from dedupstore import DedupStorage
from dedupstore.ops import base as ops_base
from tests.ops_helpers import DATABASES, dedupstore, empty_ops_storage
from tests.testapp.models import Clip, Reel

pytestmark = pytest.mark.django_db(databases=DATABASES, transaction=True)

SAME = b"the same picture, uploaded three times" * 10
OTHER = b"another picture"


@pytest.fixture
def ops() -> DedupStorage:
    return empty_ops_storage()


def plain_site(storage: DedupStorage, using: str = "default") -> dict[str, str]:
    """Store files as a storage without dedup did, with rows holding them."""
    names = {
        "first": storage.inner.save("clips/first.bin", ContentFile(SAME)),
        "second": storage.inner.save("clips/second.bin", ContentFile(SAME)),
        "third": storage.inner.save("reels/third.bin", ContentFile(SAME)),
        "other": storage.inner.save("clips/other.bin", ContentFile(OTHER)),
        "unheld": storage.inner.save("clips/unheld.bin", ContentFile(b"no row holds me")),
    }
    Clip.objects.using(using).create(video=names["first"])
    Clip.objects.using(using).create(video=names["second"])
    Reel.objects.using(using).create(film=names["third"], poster=names["second"])
    Reel.objects.using(using).create(film=names["other"])
    return names


@pytest.mark.parametrize("using", DATABASES)
def test_adopt_records_every_name_the_rows_hold_with_their_counts(
    ops: DedupStorage, using: str
) -> None:
    names = plain_site(ops, using)
    run = dedupstore("adopt", "--storage", "ops", "--json")
    assert run.status == 0, run.stdout
    assert sorted(run.found("recorded")) == sorted(
        names[key] for key in ("first", "second", "third", "other")
    )
    assert [ops.references(names[key]) for key in ("first", "second", "third", "other")] == [
        1,
        2,
        1,
        1,
    ]
    assert ops.references(names["unheld"]) == 0
    assert ops.index.stats().references == 5
    # Content reuse finds adopted objects: a new upload of the same bytes is a hit.
    assert ops.save("clips/again.bin", ContentFile(OTHER)) == names["other"]


def test_adopt_all_records_what_no_row_holds_too(ops: DedupStorage) -> None:
    names = plain_site(ops)
    run = dedupstore("adopt", "--storage", "ops", "--all", "--jobs", "3", "--json")
    assert run.status == 0
    assert names["unheld"] in run.found("recorded")
    record = ops.index.lookup(names["unheld"])
    assert record is not None and record.refs == 0


def test_adopt_hashes_on_every_core_by_default_and_records_what_one_job_does(
    ops: DedupStorage,
) -> None:
    names = plain_site(ops)
    run = dedupstore("adopt", "--storage", "ops", "--all", "--json")
    assert run.status == 0
    assert run.report["figures"]["jobs"] == (os.cpu_count() or 1)  # a plain FileSystemStorage
    parallel = {name: ops.index.lookup(name) for name in names.values()}
    client = redis.Redis.from_url(ops.index_url)  # the same files, an empty index
    client.flushdb()
    client.close()
    assert dedupstore("adopt", "--storage", "ops", "--all", "--jobs", "1").status == 0
    assert {name: ops.index.lookup(name) for name in names.values()} == parallel
    assert all(record is not None for record in parallel.values())


def test_adopt_interrupted_resumes_where_it_stopped(
    ops: DedupStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = plain_site(ops)
    hashed: list[str] = []
    real = ops_base.StoredHasher.__call__

    def interrupted(hasher: ops_base.StoredHasher, name: str) -> Any:
        if len(hashed) == 2:
            raise KeyboardInterrupt
        hashed.append(name)
        return real(hasher, name)

    monkeypatch.setattr(ops_base.StoredHasher, "__call__", interrupted)
    monkeypatch.setattr("dedupstore.ops.base.BATCH_SIZE", 1)
    monkeypatch.setattr("dedupstore.ops.adopt.batched", _batches_of_one)
    with pytest.raises(KeyboardInterrupt):
        dedupstore("adopt", "--storage", "ops")
    assert len(hashed) == 2
    monkeypatch.undo()
    counted: list[str] = []

    def counting(hasher: ops_base.StoredHasher, name: str) -> Any:
        counted.append(name)
        return real(hasher, name)

    monkeypatch.setattr(ops_base.StoredHasher, "__call__", counting)
    run = dedupstore("adopt", "--storage", "ops", "--json")
    assert run.status == 0
    assert sorted(run.found("already_known")) == sorted(hashed)
    assert not set(counted) & set(hashed)  # nothing hashed twice
    assert ops.references(names["second"]) == 2


def _batches_of_one(items: Any, size: int = 1) -> Any:
    for item in items:
        yield [item]


@pytest.mark.parametrize("using", DATABASES)
def test_compact_rewrites_rows_to_one_copy_and_deletes_the_others(
    ops: DedupStorage, using: str
) -> None:
    names = plain_site(ops, using)
    assert dedupstore("adopt", "--storage", "ops").status == 0
    dry = dedupstore("compact", "--storage", "ops", "--json")
    assert dry.status == 0
    assert dry.report["findings"]["copies"]["count"] == 2
    assert dry.report["figures"]["reclaimable_bytes"] == 2 * len(SAME)
    assert all(ops.exists(name) for name in names.values())

    run = dedupstore("compact", "--storage", "ops", "--apply", "--json")
    assert run.status == 0, run.stdout
    copies = [names[key] for key in ("first", "second", "third")]
    kept = [name for name in copies if ops.exists(name)]
    assert len(kept) == 1
    canonical = kept[0]
    assert ops.references(canonical) == 4  # every row that held one of the copies
    assert {clip.video.name for clip in Clip.objects.using(using).all()} == {canonical}
    reel = Reel.objects.using(using).get(film__in=[*copies, canonical])
    assert (reel.film.name, reel.poster.name) == (canonical, canonical)
    with ops.open(canonical) as handle:
        assert handle.read() == SAME
    assert dedupstore("verify", "--storage", "ops", "--no-orphans").status == 0


def test_compact_leaves_rows_whose_field_cannot_hold_the_canonical_name(
    ops: DedupStorage,
) -> None:
    long_name = ops.inner.save("clips/" + "a-rather-long-name-" * 2 + ".bin", ContentFile(SAME))
    short = ops.inner.save("r/s.bin", ContentFile(SAME))
    Clip.objects.create(video=long_name)
    Reel.objects.create(poster=short)  # poster: max_length=40
    assert dedupstore("adopt", "--storage", "ops").status == 0
    record = ops.index.lookup(short)
    assert record is not None
    # Adopted in name order, the long name came first: content reuse hands it out.
    assert ops.index.content_names([record.digest]) == [long_name]
    run = dedupstore("compact", "--storage", "ops", "--apply", "--json")
    assert set(run.found("too_long")) == {short}  # once per database
    assert Reel.objects.get().poster.name == short
    assert ops.exists(short) and ops.exists(long_name)
