"""The index records its key layout, refuses an older one, and migrates it keeping every count.

An index in layout 1 (the keys of dedupstore before hash tags, ``<namespace>:o:<name>``) is
filled by the index code path itself, with only its key prefixes set back to layout 1's:
the same scripts, called by ``DedupStorage`` saves, hits and deletes. Then the current
code must refuse it, ``migrate_index`` (or the management command) must move it, and every
count, tombstone and behaviour must be there afterwards.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.management import call_command

from dedupstore import DedupStorage
from dedupstore.index.base import ClaimKeeper
from dedupstore.index.migrate import layout1_keys, migrate_index
from dedupstore.index.redis import RedisIndex, key_prefix, tagged_prefix
from dedupstore.testing.index_layouts import Layout2RedisIndex, record_fields
from tests.contract import read_all


class Layout1Index(Layout2RedisIndex):
    """The Redis index with the key layout of dedupstore before hash tags.

    Layout 2's scripts, which keep records in hashes as layout 1 did, with layout 1's
    prefixes.
    """

    def __init__(self, url: str, *, namespace: str) -> None:
        super().__init__(url, namespace=namespace, display_url=url)
        prefix = key_prefix(namespace)
        self._record_prefix = f"{prefix}:o:"
        self._map_prefix = f"{prefix}:d:"
        self._claim_prefix = f"{prefix}:c:"
        self._tombstone_prefix = f"{prefix}:t:"
        self._untracked_deletes = f"{prefix}:u"
        self._receipt_prefix = f"{prefix}:r:"
        self._reservation_prefix = f"{prefix}:n:"
        self._quarantine_prefix = f"{prefix}:q:"
        self._initialised_key = f"{prefix}:i"

    def _check_eviction_policy(self) -> None:
        # Layout 1 knew no version: it checked the eviction policy only.
        self._policy_checked = True


def _storage(url: str, location: Path, namespace: str, layout1: bool = False) -> DedupStorage:
    inner = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(location)},
    }
    storage = DedupStorage(inner=inner, index=url, namespace=namespace, reuse="content")
    if layout1:
        storage._index = Layout1Index(url, namespace=namespace)  # type: ignore[assignment]
        storage._keeper = ClaimKeeper(storage._index, storage.claim_ttl)
    return storage


def _fill_layout1(url: str, location: Path, namespace: str) -> dict[str, Any]:
    """Save, hit and delete through a layout 1 index; return what the counts must be."""
    old = _storage(url, location, namespace, layout1=True)
    shared = old.save("shared.txt", ContentFile(b"shared"))
    for copy in range(3):
        assert old.save(f"copy-{copy}.txt", ContentFile(b"shared")) == shared
    old.delete(shared)  # 4 references, 3 left
    single = old.save("single.txt", ContentFile(b"single"))
    gone = old.save("gone.txt", ContentFile(b"gone"))
    old.delete(gone)  # a tombstone and the delete counter
    old.inner.save("untracked.txt", ContentFile(b"untracked"))
    old.delete("untracked.txt")  # an untracked delete: a tombstone too
    old.index.mark_initialised()
    client = redis.Redis.from_url(url)
    try:
        assert client.hget(f"{key_prefix(namespace)}:o:{shared}", "refs") == b"3"
        counter = client.get(f"{key_prefix(namespace)}:u")
        assert counter is not None
    finally:
        client.close()
    return {"shared": shared, "single": single, "gone": gone, "counter": counter}


def test_an_index_in_the_old_layout_is_refused_until_it_is_migrated(
    redis_url: str, tmp_path: Path
) -> None:
    namespace = f"old-{uuid.uuid4().hex}"
    _fill_layout1(redis_url, tmp_path, namespace)
    new = _storage(redis_url, tmp_path, namespace)
    with pytest.raises(ImproperlyConfigured, match="dedupstore migrate-index"):
        new.save("another.txt", ContentFile(b"shared"))
    with pytest.raises(ImproperlyConfigured, match="layout 1"):
        new.references("shared.txt")


def test_an_old_index_with_records_alone_is_found_and_refused(
    redis_url: str, tmp_path: Path
) -> None:
    # No mark (the dedupstore app not installed) and no delete yet: found by a scan.
    namespace = f"old-{uuid.uuid4().hex}"
    old = _storage(redis_url, tmp_path, namespace, layout1=True)
    old.save("only.txt", ContentFile(b"only"))
    with pytest.raises(ImproperlyConfigured, match="layout 1"):
        _storage(redis_url, tmp_path, namespace).references("only.txt")


def test_migrating_keeps_every_count_tombstone_and_behaviour(
    redis_url: str, tmp_path: Path
) -> None:
    namespace = f"old-{uuid.uuid4().hex}"
    filled = _fill_layout1(redis_url, tmp_path, namespace)
    client = redis.Redis.from_url(redis_url)
    old_keys = set(layout1_keys(client, namespace))
    tombstone = f"{key_prefix(namespace)}:t:{filled['gone']}".encode()
    assert tombstone in old_keys and client.pttl(tombstone) > 0

    report = migrate_index(redis_url, namespace)

    assert report.moved == len(old_keys) and not report.conflicts
    assert list(layout1_keys(client, namespace)) == []
    prefix = tagged_prefix(namespace)
    assert client.get(f"{prefix}:v") == b"3"
    assert report.packed > 0 and not list(client.scan_iter(match=f"{prefix}:o:*"))
    assert client.get(f"{prefix}:u") == filled["counter"]
    assert client.pttl(f"{prefix}:t:{filled['gone']}") > 0  # kept its lifetime
    assert client.exists(f"{prefix}:i")
    client.close()

    new = _storage(redis_url, tmp_path, namespace)
    shared, single = filled["shared"], filled["single"]
    assert (new.references(shared), new.references(single)) == (3, 1)
    assert new.references(filled["gone"]) == 0 and not new.exists(filled["gone"])
    assert new.save("more.txt", ContentFile(b"shared")) == shared  # the content map moved
    assert new.references(shared) == 4
    for _ in range(3):
        new.delete(shared)
    assert new.references(shared) == 1 and read_all(new, shared) == b"shared"
    new.delete(shared)
    assert not new.exists(shared)
    assert new.save("single-again.txt", ContentFile(b"single")) == single


def test_a_migration_run_again_moves_nothing_and_leaves_clashing_keys_alone(
    redis_url: str, tmp_path: Path
) -> None:
    namespace = f"old-{uuid.uuid4().hex}"
    filled = _fill_layout1(redis_url, tmp_path, namespace)
    client = redis.Redis.from_url(redis_url)
    # A half-done run: one record moved already, another present in both layouts.
    prefix = tagged_prefix(namespace)
    old_prefix = key_prefix(namespace)
    client.rename(f"{old_prefix}:o:{filled['single']}", f"{prefix}:o:{filled['single']}")
    client.hset(f"{prefix}:o:{filled['shared']}", mapping={"refs": "9"})
    report = migrate_index(redis_url, namespace)
    assert report.conflicts == [f"{old_prefix}:o:{filled['shared']}"]
    index = RedisIndex(redis_url, namespace=namespace, display_url=redis_url)
    assert record_fields(index, filled["shared"])["refs"] == "9"  # not overwritten
    assert record_fields(index, filled["single"])["refs"] == "1"  # moved, then packed
    assert client.hget(f"{old_prefix}:o:{filled['shared']}", "refs") == b"3"  # nor lost
    again = migrate_index(redis_url, namespace)
    assert (again.moved, again.packed) == (0, 0)
    index.close()
    client.close()


def test_a_new_namespace_records_the_current_layout_at_first_use(
    redis_url: str, tmp_path: Path
) -> None:
    namespace = f"new-{uuid.uuid4().hex}"
    _storage(redis_url, tmp_path, namespace).save("a.txt", ContentFile(b"A"))
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.get(f"{tagged_prefix(namespace)}:v") == b"3"
    finally:
        client.close()


def test_an_index_in_a_newer_layout_is_refused(redis_url: str, tmp_path: Path) -> None:
    namespace = f"new-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(redis_url)
    client.set(f"{tagged_prefix(namespace)}:v", "4")
    client.close()
    with pytest.raises(ImproperlyConfigured, match="layout 4"):
        _storage(redis_url, tmp_path, namespace).save("a.txt", ContentFile(b"A"))


def test_the_migrate_command_moves_every_dedup_storage_in_settings(
    redis_url: str, tmp_path: Path, settings: Any
) -> None:
    namespace = f"old-{uuid.uuid4().hex}"
    filled = _fill_layout1(redis_url, tmp_path, namespace)
    settings.STORAGES = {
        **settings.STORAGES,
        "media": {
            "BACKEND": "dedupstore.DedupStorage",
            "OPTIONS": {
                "inner": {
                    "BACKEND": "django.core.files.storage.FileSystemStorage",
                    "OPTIONS": {"location": str(tmp_path)},
                },
                "index": redis_url,
                "namespace": namespace,
            },
        },
    }
    from io import StringIO

    out = StringIO()
    call_command("dedupstore_migrate_index", "media", stdout=out)
    assert f"media: {namespace}:" in out.getvalue() and "moved" in out.getvalue()
    assert _storage(redis_url, tmp_path, namespace).references(filled["shared"]) == 3
    # `manage.py dedupstore migrate-index` runs the same; a second run moves nothing more.
    out = StringIO()
    call_command("dedupstore", "migrate-index", "media", stdout=out)
    assert f"media: {namespace}:" in out.getvalue()
    assert _storage(redis_url, tmp_path, namespace).references(filled["shared"]) == 3
