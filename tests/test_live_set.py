"""The live set: which names the database's rows hold for a storage, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import storages

from dedupstore import DedupStorage
from dedupstore.liveset import holders_of, live_counts, reference_fields
from tests.testapp.models import Album, Track

DATABASES = ["default", "postgres"] if "postgres" in settings.DATABASES else ["default"]
needs_postgres = pytest.mark.skipif(
    "postgres" not in settings.DATABASES,
    reason="PostgreSQL is not installed (make test installs Debian's postgresql)",
)
pytestmark = pytest.mark.django_db(databases=DATABASES)

#: Names the sources below yield, read by the reference-source tests.
EXTRA_NAMES: list[str] = []


def extra_names(storage: DedupStorage) -> list[str]:
    return list(EXTRA_NAMES)


@pytest.fixture
def live() -> DedupStorage:
    storage = storages["live"]
    assert isinstance(storage, DedupStorage)
    return storage


def test_every_file_field_on_the_storage_is_a_reference_field_in_every_database(
    live: DedupStorage,
) -> None:
    found = {(ref.model, ref.field, ref.using) for ref in reference_fields(live)}
    for using in DATABASES:
        assert {(Album, "cover", using), (Album, "back", using), (Track, "audio", using)} <= found
    # Fields on other storages (other namespaces) are not part of this storage's live set.
    assert not any(ref.field in ("file", "image") for ref in reference_fields(live))


def test_a_storage_with_the_same_namespace_shares_the_live_set(live: DedupStorage) -> None:
    twin = DedupStorage(inner="plain", index="locmem://elsewhere", namespace=live.namespace)
    assert {(r.model, r.field) for r in reference_fields(twin)} == {
        (r.model, r.field) for r in reference_fields(live)
    }
    stranger = DedupStorage(inner="plain", index="locmem://live", namespace="another")
    assert reference_fields(stranger) == []


def test_holders_names_each_field_with_a_row_that_holds_the_name(live: DedupStorage) -> None:
    Album.objects.create(cover="albums/a.png", back="albums/b.png")
    Track.objects.create(audio="albums/a.png")
    assert sorted(holders_of(live, "albums/a.png")) == [
        "testapp.Album.cover (default)",
        "testapp.Track.audio (default)",
    ]
    assert holders_of(live, "albums/b.png") == ["testapp.Album.back (default)"]
    assert holders_of(live, "albums/none.png") == []


@needs_postgres
def test_holders_finds_rows_in_postgresql_too(live: DedupStorage) -> None:
    Album.objects.using("postgres").create(cover="albums/pg.png")
    assert holders_of(live, "albums/pg.png") == ["testapp.Album.cover (postgres)"]


def test_live_counts_counts_rows_per_name_across_fields_models_and_databases(
    live: DedupStorage,
) -> None:
    for using in DATABASES:
        Album.objects.using(using).create(cover="z/one.txt", back="a/two.txt")
        Album.objects.using(using).create(cover="a/two.txt", back="")
        Track.objects.using(using).create(audio="z/one.txt")
    per_db = len(DATABASES)
    assert list(live_counts(live, chunk_size=1)) == [
        ("a/two.txt", 2 * per_db),
        ("z/one.txt", 2 * per_db),
    ]


@needs_postgres
def test_live_counts_orders_names_by_code_point_on_postgresql(live: DedupStorage) -> None:
    # PostgreSQL's default collation would put "B" after "a"; the merge needs one order.
    names = ["a/x", "B/x", "_/x", "é/x", "Z/x", "a/X"]
    for name in names:
        Track.objects.using("postgres").create(audio=name)
    assert [name for name, _ in live_counts(live)] == sorted(names)


def test_reference_sources_add_names_held_outside_file_fields(
    live: DedupStorage, settings: Any
) -> None:
    settings.DEDUPSTORE_REFERENCE_SOURCES = ["tests.test_live_set.extra_names"]
    EXTRA_NAMES[:] = ["json/held.txt", "json/held.txt"]
    try:
        Track.objects.create(audio="json/held.txt")
        assert list(live_counts(live)) == [("json/held.txt", 3)]
        assert holders_of(live, "json/held.txt")[-1] == "tests.test_live_set.extra_names"
    finally:
        EXTRA_NAMES.clear()


@pytest.mark.parametrize(
    "value",
    ["tests.test_live_set.extra_names", ["no.such.module.f"], ["tests.test_live_set.EXTRA_NAMES"]],
)
def test_a_bad_reference_sources_setting_is_improperly_configured(
    live: DedupStorage, settings: Any, value: Any
) -> None:
    settings.DEDUPSTORE_REFERENCE_SOURCES = value
    with pytest.raises(ImproperlyConfigured, match="DEDUPSTORE_REFERENCE_SOURCES"):
        list(live_counts(live))
