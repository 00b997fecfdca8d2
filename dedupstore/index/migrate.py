"""The index's key layout: check it at first use, and move an index to the current one.

Layout 1 (dedupstore before hash tags; never recorded) keys a namespace's records as
``<prefix>:<kind letter>:<rest>``. Layout 2 keys them ``{<prefix>}:<kind letter>:<rest>``
(see ``tagged_prefix``): the braces are the Redis Cluster hash tag that keeps a namespace
in one slot. Layout 2 records itself under ``{<prefix>}:v``.

An index opened for the first time reads that version. Absent, and the Redis database
holds layout 1 keys of the namespace, the index refuses to run (``ImproperlyConfigured``)
until ``migrate_index`` (``manage.py dedupstore migrate-index``) has moved them: reading
an empty layout 2 beside a full layout 1 would forget every count. ``migrate_index``
renames each key as it is (a hash keeps its counts, a key its TTL), one ``RENAMENX`` at a
time, and records the version last, so an interrupted run is simply run again.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
from django.core.exceptions import ImproperlyConfigured

from dedupstore.index.cluster import CLUSTER_SCHEMES, split_wait_replicas
from dedupstore.index.redis import LAYOUT_VERSION, key_prefix, tagged_prefix

__all__ = ["MigrationReport", "check_layout", "layout1_keys", "migrate_index"]

#: Below this many keys in the database, a first use scans it for layout 1 keys; above, it
#: relies on the keys every used layout 1 index has (its mark, or its delete counter).
SCAN_LIMIT = 100_000
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
    """Refuse an index in another layout; record layout 2 on a new one.

    A cluster never held layout 1 (its scripts could not run there): only its version is
    read and recorded.
    """
    version_key = f"{tagged_prefix(namespace)}:v"
    version = client.get(version_key)
    if version is not None:
        if version == str(LAYOUT_VERSION).encode():
            return
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
    moved: int = 0
    #: Layout 1 keys left where they were: a layout 2 key of that name existed already.
    conflicts: list[str] = field(default_factory=list)
    #: The version found before the run (None: none recorded).
    version_before: int | None = None


def migrate_index(url: str, namespace: str) -> MigrationReport:
    """Move ``namespace``'s layout 1 keys at the single-node index ``url`` to layout 2.

    Every process using the namespace must be stopped first (one of an older dedupstore
    would go on writing layout 1 keys). Each key is renamed as it is, keeping its value
    and TTL; a key whose layout 2 name exists already is left and reported in
    ``conflicts``. The version is recorded last: run it again after an interruption. A
    cluster URL raises ``ImproperlyConfigured``: move the index in place first, then copy
    it into the cluster (``redis-cli --cluster import``; see docs/scaling.md).
    """
    if url.partition("://")[0] in CLUSTER_SCHEMES:
        raise ImproperlyConfigured(
            "dedupstore: migrate_index works on the single-node Redis that holds a layout 1 "
            "index; a cluster index is in layout 2 from its start. Migrate in place, then "
            "copy the keys into the cluster with redis-cli --cluster import."
        )
    plain_url, _ = split_wait_replicas(url, url)
    client = redis.Redis.from_url(plain_url)
    try:
        old, new = key_prefix(namespace), tagged_prefix(namespace)
        version_key = f"{new}:v"
        found = client.get(version_key)
        report = MigrationReport(namespace, version_before=int(found) if found else None)
        if found is not None and int(found) > LAYOUT_VERSION:
            raise ImproperlyConfigured(
                f"dedupstore: namespace {namespace!r} is in layout {int(found)}, newer than "
                f"this dedupstore's {LAYOUT_VERSION}"
            )
        old_bytes = old.encode("utf-8", "surrogatepass")
        new_bytes = new.encode("utf-8", "surrogatepass")
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
        client.set(version_key, str(LAYOUT_VERSION))
        return report
    finally:
        client.close()
