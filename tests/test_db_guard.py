"""Deletes need two witnesses: an object goes only when the index and the database agree.

The storage under test is ``STORAGES["live"]`` (a Redis index), used by the file fields of
``tests.testapp``'s ``Album`` and ``Track``, on SQLite and on PostgreSQL. django-cleanup,
the real package, deletes the old files of those models.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import storages

from dedupstore import DedupStorage, IndexLost
from dedupstore.marker import initialise_index
from tests.testapp.models import Album, Track

DATABASES = ["default", "postgres"] if "postgres" in settings.DATABASES else ["default"]
pytestmark = pytest.mark.django_db(databases=DATABASES, transaction=True)


@pytest.fixture
def live() -> Iterator[DedupStorage]:
    storage = storages["live"]
    assert isinstance(storage, DedupStorage)
    if not storage.index_url.startswith("redis"):
        pytest.skip("needs redis-server (make test installs it)")
    yield storage


def flush(storage: DedupStorage) -> None:
    """Lose the index as a Redis restarted without persistence does."""
    client = redis.Redis.from_url(storage.index_url)
    client.flushdb()
    client.close()


def unique(prefix: str = "albums/") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}.bin"


def reads_back(storage: DedupStorage, name: str, content: bytes) -> bool:
    if not storage.exists(name):
        return False
    with storage.open(name) as handle:
        return bool(handle.read() == content)


def test_a_delete_the_index_counts_as_the_last_keeps_an_object_rows_still_hold(
    live: DedupStorage,
) -> None:
    name = live.save(unique(), ContentFile(b"held twice"))
    # Copied between fields by the application: one counted reference, two rows.
    Album.objects.create(cover=name)
    Track.objects.create(audio=name)
    live.delete(name)
    assert reads_back(live, name, b"held twice")
    assert live.references(name) == 2  # repaired from the rows


@pytest.mark.skipif("postgres" not in settings.DATABASES, reason="needs PostgreSQL")
def test_a_row_in_another_database_is_a_witness_too(live: DedupStorage) -> None:
    name = live.save(unique(), ContentFile(b"held in postgres"))
    Track.objects.using("postgres").create(audio=name)
    live.delete(name)
    assert reads_back(live, name, b"held in postgres")
    Track.objects.using("postgres").filter(audio=name).delete()  # django-cleanup deletes it
    assert not live.exists(name)


def test_without_rows_the_last_delete_removes_the_object(live: DedupStorage) -> None:
    name = live.save(unique(), ContentFile(b"nobody holds me"))
    live.delete(name)
    assert not live.exists(name)


def test_after_a_flushdb_deleting_rows_loses_nothing_the_others_hold(
    live: DedupStorage,
) -> None:
    first = Album()
    first.cover.save("shared.png", ContentFile(b"shared picture"))
    name = first.cover.name
    second = Album.objects.create(cover=name)
    track = Track.objects.create(audio=name)
    flush(live)  # every name is untracked now
    second.delete()  # django-cleanup deletes the file of the deleted row, through the index
    assert reads_back(live, name, b"shared picture")
    assert live.references(name) == 2  # adopted: hashed and counted from the rows
    first.delete()
    assert reads_back(live, name, b"shared picture")
    track.delete()
    assert not live.exists(name)


def _actions(name: str, rows: dict[str, Album | Track]) -> dict[str, Callable[[], None]]:
    def change_back() -> None:
        album = rows["album"]
        assert isinstance(album, Album)
        album.back.save("other.txt", ContentFile(b"another file"))  # the old one goes

    return {
        "change a field": change_back,
        "delete the second album": lambda: rows.pop("second").delete(),
        "delete the track": lambda: rows.pop("track").delete(),
    }


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_django_cleanup_with_one_file_in_several_fields_and_models_loses_nothing(
    live: DedupStorage, order: tuple[int, ...]
) -> None:
    album = Album()
    album.cover.save("one.bin", ContentFile(b"one file, many fields"))
    name = album.cover.name
    album.back = name
    album.save()
    rows: dict[str, Album | Track] = {
        "album": album,
        "second": Album.objects.create(cover=name),
        "track": Track.objects.create(audio=name),
    }
    actions = list(_actions(name, rows).values())
    for index in order:
        actions[index]()
        holders = [
            *Album.objects.filter(cover=name),
            *Album.objects.filter(back=name),
            *Track.objects.filter(audio=name),
        ]
        assert holders, "the album's cover still holds the file"
        assert reads_back(live, name, b"one file, many fields")
    other = album.back.name
    album.delete()  # the last row: both its files go
    assert not live.exists(name)
    assert not live.exists(other)


def test_an_untracked_delete_after_the_index_was_lost_raises_index_lost(
    live: DedupStorage, tmp_path: Path
) -> None:
    initialise_index(live)
    name = live.save(unique(), ContentFile(b"counted before the loss"))
    flush(live)
    with pytest.raises(IndexLost, match=r"manage\.py dedupstore reconcile"):
        live.delete(name)
    assert reads_back(live, name, b"counted before the loss")  # nothing was deleted


def test_the_guard_makes_no_query_on_saves_hits_and_non_last_deletes(
    live: DedupStorage, django_assert_num_queries: Callable[..., object]
) -> None:
    name = unique()
    with django_assert_num_queries(0):  # type: ignore[operator]
        stored = live.save(name, ContentFile(b"counted twice"))
        assert live.save(unique(), ContentFile(b"counted twice")) == stored  # a hit
        live.delete(stored)  # one reference left: no query
    assert live.exists(stored)


def test_db_guard_false_trusts_the_index_alone(live: DedupStorage) -> None:
    name = live.save(unique(), ContentFile(b"index alone"))
    Track.objects.create(audio=name)
    unguarded = DedupStorage(
        inner="plain", index=live.index_url, namespace=live.namespace, db_guard=False
    )
    unguarded.delete(name)
    assert not live.exists(name)
