"""The database's marker tells a lost index (flushed, restarted empty) from a new one."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.core.management import call_command

from dedupstore import DedupStorage
from dedupstore.marker import IndexState, index_state, initialise_index
from dedupstore.models import IndexMarker

pytestmark = pytest.mark.django_db


def test_a_new_index_is_marked_in_the_index_and_in_the_database(
    make_fs_dedup: Callable[..., DedupStorage],
) -> None:
    storage = make_fs_dedup()
    assert index_state(storage) is IndexState.NEW
    assert initialise_index(storage) is IndexState.NEW
    assert index_state(storage) is IndexState.OK
    marker = IndexMarker.objects.get(namespace=storage.namespace)
    assert marker.index_url == storage.index.display_url


def test_a_flushed_redis_is_a_lost_index_and_stays_lost_until_reconciled(
    make_fs_dedup: Callable[..., DedupStorage], redis_url: str
) -> None:
    storage = make_fs_dedup()
    initialise_index(storage)
    redis.Redis.from_url(redis_url).flushdb()
    assert index_state(storage) is IndexState.LOST
    # Setting up again does not paper over the loss.
    assert initialise_index(storage) is IndexState.LOST
    assert index_state(storage) is IndexState.LOST


def test_an_index_marked_before_the_database_knew_it_gets_its_marker(
    make_fs_dedup: Callable[..., DedupStorage],
) -> None:
    storage = make_fs_dedup()
    storage.index.mark_initialised()
    assert index_state(storage) is IndexState.NEW
    assert initialise_index(storage) is IndexState.NEW
    assert index_state(storage) is IndexState.OK


def test_the_locmem_index_keeps_its_mark_per_namespace() -> None:
    inner = {"BACKEND": "django.core.files.storage.InMemoryStorage"}
    location = f"locmem://{uuid.uuid4().hex}"
    one = DedupStorage(inner=inner, index=location, namespace="one")
    two = DedupStorage(inner=inner, index=location, namespace="two")
    one.index.mark_initialised()
    assert one.index.is_initialised() and not two.index.is_initialised()


def test_migrate_marks_the_index_of_every_configured_dedup_storage(
    settings: Any, redis_url: str, tmp_path: Any
) -> None:
    namespace = f"migrated-{uuid.uuid4().hex}"
    settings.STORAGES = {
        **settings.STORAGES,
        "marked": {
            "BACKEND": "dedupstore.DedupStorage",
            "OPTIONS": {"inner": "plain", "index": redis_url, "namespace": namespace},
        },
    }
    call_command("migrate", verbosity=0)
    assert IndexMarker.objects.filter(namespace=namespace).exists()
    assert redis.Redis.from_url(redis_url).exists(f"{{{namespace}}}:i")
