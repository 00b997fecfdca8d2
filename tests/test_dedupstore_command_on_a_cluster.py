"""``manage.py dedupstore`` over an index on a real Redis Cluster (3 primaries, 3 replicas).

The commands read the index in batches (pipelined reads, ``SCAN``): on a cluster they go to
the primary that owns the namespace's slot. The names a site holds come from a reference
source (``DEDUPSTORE_REFERENCE_SOURCES``), so no model's field needs the storage.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages

from dedupstore import DedupStorage
from dedupstore.testing.redis_cluster import RedisCluster
from tests.ops_helpers import DATABASES, dedupstore

pytestmark = [pytest.mark.slow, pytest.mark.django_db(databases=DATABASES, transaction=True)]

ALIAS = "on-cluster"
#: The names the site holds, per namespace: what ``held_names`` yields.
HELD: dict[str, list[str]] = {}


def held_names(storage: DedupStorage) -> Iterable[str]:
    """Yield the names the test's rows would hold (a reference source)."""
    return list(HELD.get(storage.namespace, []))


@pytest.fixture
def on_cluster(
    redis_cluster: RedisCluster, settings: Any, tmp_path: Path
) -> Iterator[DedupStorage]:
    """Return ``STORAGES[ALIAS]``: a DedupStorage whose index is on the shared cluster."""
    namespace = f"ops-{uuid.uuid4().hex}"
    settings.STORAGES = {
        **settings.STORAGES,
        ALIAS: {
            "BACKEND": "dedupstore.DedupStorage",
            "OPTIONS": {
                "inner": {
                    "BACKEND": "django.core.files.storage.FileSystemStorage",
                    "OPTIONS": {"location": str(tmp_path / "media")},
                },
                "index": redis_cluster.url,
                "namespace": namespace,
            },
        },
    }
    settings.DEDUPSTORE_REFERENCE_SOURCES = [f"{__name__}.held_names"]
    storage = storages[ALIAS]
    assert isinstance(storage, DedupStorage)
    yield storage
    HELD.pop(namespace, None)
    storage.index.close()


def test_stats_verify_and_reconcile_read_and_repair_an_index_on_a_cluster(
    on_cluster: DedupStorage,
) -> None:
    shared = on_cluster.save("clips/shared.bin", ContentFile(b"x" * 100))
    assert on_cluster.save("clips/again.bin", ContentFile(b"x" * 100)) == shared
    leaked = on_cluster.save("clips/leaked.bin", ContentFile(b"y" * 50))
    names = [on_cluster.save(f"clips/{n}.bin", ContentFile(b"%d" % n)) for n in range(30)]
    # The rows hold the shared object three times (one more than counted), each of the
    # thirty once, and the leaked object not at all.
    HELD[on_cluster.namespace] = [shared, shared, shared, *names]

    stats = dedupstore("stats", "--storage", ALIAS, "--json")
    assert stats.status == 0, stats.stdout + stats.stderr
    figures = stats.report["figures"]
    assert (figures["objects"], figures["references"]) == (32, 33)
    assert figures["most_shared"][0] == {"name": shared, "references": 2, "size": 100}

    verify = dedupstore("verify", "--storage", ALIAS, "--json")
    assert verify.status == 1, verify.stdout + verify.stderr
    assert verify.found("leaks") == [leaked]
    assert verify.found("undercounted") == [shared]

    repaired = dedupstore("reconcile", "--storage", ALIAS, "--grace", "0", "--json")
    assert repaired.status == 0, repaired.stdout + repaired.stderr
    assert repaired.found("raised") == [shared]
    assert repaired.found("lowered") == [leaked]
    assert (on_cluster.references(shared), on_cluster.references(leaked)) == (3, 0)
    assert on_cluster.index.stats().references == 33  # set again from a scan of the records

    after = dedupstore("verify", "--storage", ALIAS, "--json")
    assert after.status == 0, after.stdout + after.stderr
    assert after.found("garbage") == [leaked]
