"""The index lost in the middle of a workload, for real: nothing a row holds is lost.

A ``FLUSHDB``, and a redis-server killed and started again without persistence, while
files are saved and rows made; then rows are deleted with their files; then
``manage.py dedupstore reconcile`` (and ``gc`` for what nobody holds). Every row's file
reads back, and every count equals the rows that hold the name. SQLite and PostgreSQL.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable

import pytest
import redis
from django.core.files.base import ContentFile

from dedupstore import DedupStorage, IndexLost
from dedupstore.exceptions import IndexUnavailable
from dedupstore.marker import IndexState, index_state
from tests import services
from tests.ops_helpers import DATABASES, dedupstore, empty_ops_storage
from tests.testapp.models import Clip, Reel

pytestmark = pytest.mark.django_db(databases=DATABASES, transaction=True)

CONTENTS = [b"shared by many rows %d" % number for number in range(6)]


@pytest.fixture
def ops() -> DedupStorage:
    return empty_ops_storage()


def flushdb(storage: DedupStorage) -> None:
    client = redis.Redis.from_url(storage.index_url)
    client.flushdb()
    client.close()


def restart_without_persistence(storage: DedupStorage) -> None:
    server = services.OPS_REDIS
    if server is None:
        pytest.skip("the ops Redis was not started by this process")
    server.kill()
    server.restart()
    deadline = time.monotonic() + 60
    while True:  # the storage's pooled connection died with the server: reconnect
        try:
            storage.index.ping()
            return
        except IndexUnavailable:
            if time.monotonic() > deadline:
                raise


def rows_per_name() -> Counter[str]:
    held: Counter[str] = Counter()
    for using in DATABASES:
        for reel in Reel.objects.using(using).all():
            held.update(name for name in (reel.film.name, reel.poster.name) if name)
        held.update(clip.video.name for clip in Clip.objects.using(using).all() if clip.video)
    return held


def content_of(storage: DedupStorage, name: str) -> bytes:
    with storage.open(name) as handle:
        return bytes(handle.read())


@pytest.mark.parametrize("lose", [flushdb, restart_without_persistence], ids=["flushdb", "restart"])
@pytest.mark.parametrize("using", DATABASES)
def test_after_losing_the_index_mid_workload_reconcile_loses_nothing_and_counts_exactly(
    ops: DedupStorage, using: str, lose: Callable[[DedupStorage], None]
) -> None:
    rng = random.Random(12)
    expected: dict[str, bytes] = {}
    rows: list[Reel | Clip] = []

    def make_rows(count: int) -> None:
        for _ in range(count):
            # Some files are shared by many rows, some held by one row only.
            content = rng.choice(CONTENTS) if rng.random() < 0.6 else rng.randbytes(64)
            name = ops.save("reels/file.bin", ContentFile(content))
            expected[name] = content
            row: Reel | Clip = (
                Reel(film=name, poster=name if rng.random() < 0.3 else "")
                if rng.random() < 0.5
                else Clip(video=name)
            )
            row.save(using=using)
            rows.append(row)

    make_rows(30)
    lose(ops)
    assert index_state(ops) is IndexState.LOST
    make_rows(20)  # saves go on: the contents are stored again under new names
    refused: set[str] = set()
    for row in rng.sample(rows, 25):
        names = [row.film.name, row.poster.name] if isinstance(row, Reel) else [row.video.name]
        row.delete()
        rows.remove(row)
        for name in filter(None, names):
            try:
                ops.delete(name)  # the rows that remain keep their files (the guard)
            except IndexLost:
                refused.add(name)  # untracked and unheld: refused until reconcile
    held = rows_per_name()
    for name in held:
        assert content_of(ops, name) == expected[name], name

    run = dedupstore("reconcile", "--storage", "ops", "--grace", "0", "--json")
    assert run.status == 0, run.stdout
    assert run.report["figures"]["index_state_before"] == "lost"
    assert index_state(ops) is IndexState.OK
    for name, count in held.items():
        assert ops.references(name) == count, name
        assert content_of(ops, name) == expected[name], name
    assert ops.index.stats().references == sum(held.values())

    # What the refused deletes left behind is now an orphan: gc takes it, nothing else.
    collected = dedupstore("gc", "--storage", "ops", "--grace", "0", "--apply", "--json")
    assert collected.status == 0, collected.stdout
    for name, count in held.items():
        assert ops.references(name) == count, name
        assert content_of(ops, name) == expected[name], name
    verify = dedupstore("verify", "--storage", "ops", "--json")
    assert verify.status == 0, verify.stdout
    assert refused  # the workload did meet the refusal
    # (A refused name may be gone already: the guard's second ask, after its last row
    # went, deleted it before the application's own delete() came.)
    assert collected.found("deleted")
    assert set(collected.found("deleted")) <= refused
    assert not any(ops.exists(name) for name in refused)
