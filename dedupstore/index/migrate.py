"""The index's key layout: check it at first use, and move an index to the current one.

Layout 1 (dedupstore before hash tags; never recorded) keys a namespace's records as
``<prefix>:<kind letter>:<rest>``. Layout 2 keys them ``{<prefix>}:<kind letter>:<rest>``
(see ``tagged_prefix``): the braces are the Redis Cluster hash tag that keeps a namespace
in one slot. Layout 3 keeps layout 2's keys except the two per object, records
(``{<prefix>}:o:<name>`` hashes) and content maps (``{<prefix>}:d:<digest>`` strings),
which it packs into buckets (``lua/packed.lua``). Layouts 2 and 3 record themselves under
``{<prefix>}:v``.

An index opened for the first time reads that version. Layout 2, or (none recorded) a
Redis database holding layout 1 keys of the namespace, is refused (``ImproperlyConfigured``)
until ``migrate_index`` (``manage.py dedupstore migrate-index``) has moved it: reading an
empty layout 3 beside a full older layout would forget every count. ``migrate_index``
renames each layout 1 key as it is (a hash keeps its counts, a key its TTL), one
``RENAMENX`` at a time, then packs layout 2's records and maps in batches (one script a
batch: read, write packed, delete the old keys), and records the version last, so an
interrupted run is simply run again.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import redis
from django.core.exceptions import ImproperlyConfigured

from dedupstore.index.cluster import CLUSTER_SCHEMES
from dedupstore.index.redis import LAYOUT_VERSION, RedisIndex, key_prefix, tagged_prefix

__all__ = ["MigrationReport", "check_layout", "layout1_keys", "migrate_index"]

#: Below this many keys in the database, a first use scans it for layout 1 keys; above, it
#: relies on the keys every used layout 1 index has (its mark, or its delete counter).
SCAN_LIMIT = 100_000
#: Layout 2 keys packed per script call by ``migrate_index``.
MIGRATE_BATCH = 500
#: After ``<prefix>:``, a layout 1 key of the namespace goes on with a kind letter alone or
#: a kind letter and ``:`` (``key_prefix`` keeps every other key out of that shape).
_KIND = re.compile(rb"[a-z](?::.*)?", re.DOTALL)


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def layout1_keys(client: redis.Redis, namespace: str) -> Iterator[bytes]:
    """Yield every layout 1 key of ``namespace`` in ``client``'s database (SCAN)."""
    prefix = key_prefix(namespace).encode("utf-8", "surrogatepass") + b":"
    pattern = _glob_escape(key_prefix(namespace)) + ":*"
    for key in client.scan_iter(match=pattern, count=1000):
        if key.startswith(prefix) and _KIND.fullmatch(key[len(prefix) :]):
            yield key


def _layout1_present(client: redis.Redis, namespace: str) -> bool:
    prefix = key_prefix(namespace)
    if client.exists(f"{prefix}:i", f"{prefix}:u"):
        return True
    if int(client.dbsize()) > SCAN_LIMIT:
        return False
    return next(layout1_keys(client, namespace), None) is not None


def check_layout(client: Any, namespace: str, display_url: str, *, cluster: bool) -> None:
    """Refuse an index in another layout; record the current layout on a new one.

    A cluster never held layout 1 (its scripts could not run there): only its version is
    read and recorded.
    """
    version_key = f"{tagged_prefix(namespace)}:v"
    version = client.get(version_key)
    if version is not None:
        if version == str(LAYOUT_VERSION).encode():
            return
        if version in (b"1", b"2"):
            raise ImproperlyConfigured(
                f"dedupstore: the index of namespace {namespace!r} at {display_url} is in key "
                f"layout {version.decode()}, which this dedupstore (layout {LAYOUT_VERSION}) "
                "stores more compactly. Stop every process that uses it, then run 'python "
                "manage.py dedupstore migrate-index' (or "
                "dedupstore.index.migrate.migrate_index(url, namespace)) once; it moves every "
                "record without changing a count."
            )
        raise ImproperlyConfigured(
            f"dedupstore: the index of namespace {namespace!r} at {display_url} is in key "
            f"layout {version.decode(errors='replace')}, which this dedupstore (layout "
            f"{LAYOUT_VERSION}) cannot read: upgrade dedupstore in this process."
        )
    if not cluster and _layout1_present(client, namespace):
        raise ImproperlyConfigured(
            f"dedupstore: the index of namespace {namespace!r} at {display_url} is in the key "
            "layout of dedupstore before hash-tagged keys (layout 1). Stop every process "
            "that uses it, then run 'python manage.py dedupstore migrate-index' (or "
            "dedupstore.index.migrate.migrate_index(url, namespace)) once; it moves every "
            "key without changing a count."
        )
    client.set(version_key, str(LAYOUT_VERSION), nx=True)


@dataclass
class MigrationReport:
    """What ``migrate_index`` did for one namespace."""

    namespace: str
    #: Layout 1 keys renamed to their layout 2 names.
    moved: int = 0
    #: Layout 2 records and content maps packed into layout 3's buckets.
    packed: int = 0
    #: Layout 1 keys left where they were: a layout 2 key of that name existed already.
    conflicts: list[str] = field(default_factory=list)
    #: The version found before the run (None: none recorded).
    version_before: int | None = None


def migrate_index(url: str, namespace: str) -> MigrationReport:
    """Move ``namespace``'s index at ``url`` to the current layout (3), keeping every count.

    Every process using the namespace must be stopped first (one of an older dedupstore
    would go on writing the old layout). Layout 1 keys (a single node only: a cluster
    never held layout 1) are renamed as they are, keeping value and TTL; a key whose
    layout 2 name exists already is left and reported in ``conflicts``. Then layout 2's
    records and content maps are packed, ``MIGRATE_BATCH`` keys per script (each read,
    written packed and deleted atomically); every other key (claims, leases, tombstones,
    receipts, counters) is kept as it is. The version is recorded last: run it again
    after an interruption.
    """
    is_cluster = url.partition("://")[0] in CLUSTER_SCHEMES
    index = RedisIndex(url, namespace=namespace, display_url=url)
    # The layout check of a first use would refuse this very index: skip it (the
    # eviction policy is the operator's to keep; the migration only moves keys).
    index._policy_checked = True
    try:
        new = tagged_prefix(namespace)
        version_key = f"{new}:v"
        found = index._on_namespace_server(lambda server: server.get(version_key))
        report = MigrationReport(namespace, version_before=int(found) if found else None)
        if found is not None and int(found) > LAYOUT_VERSION:
            raise ImproperlyConfigured(
                f"dedupstore: namespace {namespace!r} is in layout {int(found)}, newer than "
                f"this dedupstore's {LAYOUT_VERSION}"
            )
        if found == str(LAYOUT_VERSION).encode():
            return report
        if not is_cluster and found is None:
            _rename_layout1(index.client, namespace, report)
        _pack_layout2(index, new, report)
        index._on_namespace_server(lambda server: server.set(version_key, str(LAYOUT_VERSION)))
        return report
    finally:
        index.close()


def _rename_layout1(client: redis.Redis, namespace: str, report: MigrationReport) -> None:
    """Rename every layout 1 key of ``namespace`` to its layout 2 name (``RENAMENX``)."""
    old_bytes = key_prefix(namespace).encode("utf-8", "surrogatepass")
    new_bytes = tagged_prefix(namespace).encode("utf-8", "surrogatepass")
    for key in list(layout1_keys(client, namespace)):
        target = new_bytes + key[len(old_bytes) :]
        try:
            moved = client.renamenx(key, target)
        except redis.ResponseError:  # expired since the scan (a claim, a receipt)
            continue
        if moved:
            report.moved += 1
        else:
            report.conflicts.append(key.decode("utf-8", "replace"))


def _scan(server: redis.Redis, *, pattern: str) -> list[bytes]:
    return list(server.scan_iter(match=pattern, count=1000))


def _pack_layout2(index: RedisIndex, prefix: str, report: MigrationReport) -> None:
    """Pack every layout 2 record and content map of the namespace, batch by batch.

    The keys are found with ``SCAN`` on the node that owns the namespace's slot; each
    pass packs (and deletes) what it found, and passes go on until one moves nothing.
    """
    patterns = [_glob_escape(prefix) + ":o:*", _glob_escape(prefix) + ":d:*"]
    while True:
        found = 0
        for pattern in patterns:
            # Sent as the bytes SCAN returned (redis-py takes bytes keys as they are).
            keys = cast(
                list[str], index._on_namespace_server(functools.partial(_scan, pattern=pattern))
            )
            for start in range(0, len(keys), MIGRATE_BATCH):
                batch = keys[start : start + MIGRATE_BATCH]
                packed = int(index._run(index._migrate_layout3, batch, []))
                report.packed += packed
                found += packed
        if not found:
            return
