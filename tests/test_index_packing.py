"""Layout 3 packs records and content maps into buckets, grows them, and migrates layout 2.

Every test runs the real scripts on a real redis-server (and, where it says so, on the
test cluster): a fresh namespace is written packed; buckets split as the namespace grows
while saves, hits and deletes go on, and lose nothing (checked against the locmem twin);
a content map whose truncated digest collides only misses a deduplication; a layout 2
index, filled by layout 2's own scripts, is refused until ``migrate_index`` packs it, and
every count, lease and statistic survives that.
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile

from dedupstore import DedupStorage
from dedupstore.index.base import Index
from dedupstore.index.locmem import get_locmem_index
from dedupstore.index.migrate import migrate_index
from dedupstore.index.redis import RedisIndex, tagged_prefix
from dedupstore.testing.index_layouts import Layout2RedisIndex, record_fields
from dedupstore.testing.redis_cluster import RedisCluster

TTL = 3600.0


def _index(url: str, namespace: str, cls: type[RedisIndex] = RedisIndex) -> RedisIndex:
    return cls(url, namespace=namespace, display_url=url)


def _save(index: Index, name: str, digest: str, size: int = 5) -> str:
    """Store ``name`` as a fresh save does (claim, reserve, commit); return the decision."""
    token = uuid.uuid4().hex
    decision = index.begin_save(
        digest=digest, reuse="content", name=name, max_length=None, token=token, claim_ttl=TTL
    )
    if decision.action == "hit":
        return f"hit:{decision.name}"
    assert decision.action == "claimed", decision
    if not index.reserve_name(name=name, token=token, digest=digest):
        index.release_claim(digest=digest, token=token)
        return "taken"
    committed = index.commit_save(
        digest=digest, token=token, name=name, size=size, since=decision.since
    )
    assert committed.action == "committed", committed
    return "committed"


def _delete(index: Index, name: str) -> str:
    token = uuid.uuid4().hex
    decision = index.begin_delete(name=name, token=token, claim_ttl=TTL)
    if decision.action in ("delete", "unknown"):
        index.commit_delete(name=name, digest=decision.digest, token=token)
    return decision.action


def _digest(number: int) -> str:
    return f"{number * 2654435761 % 2**64:016x}" * 4


def test_a_fresh_namespace_is_written_in_layout_3_with_no_key_per_object(
    redis_url: str,
) -> None:
    namespace = f"fresh-{uuid.uuid4().hex}"
    index = _index(redis_url, namespace)
    for number in range(200):
        assert _save(index, f"file-{number}.txt", _digest(number)) == "committed"
    client = redis.Redis.from_url(redis_url)
    prefix = tagged_prefix(namespace)
    try:
        assert client.get(f"{prefix}:v") == b"3"
        kinds = {key.decode()[len(prefix) + 1 :].split(":")[0] for key in client.keys("*")}
        # Buckets, their growth, counters, version, and the commits' receipts (they expire).
        assert kinds <= {"b", "m", "l", "s", "v", "r"}
        buckets = client.keys(f"{prefix}:b:*") + client.keys(f"{prefix}:m:*")
        assert 8 <= len(buckets) <= 32  # 200 records and 200 maps, about 32 a bucket
        assert {client.object("encoding", key) for key in buckets} == {b"listpack"}
    finally:
        client.close()
    fields = record_fields(index, "file-7.txt")
    assert (fields["digest"], fields["refs"], fields["state"], fields["size"]) == (
        _digest(7),
        "1",
        "live",
        "5",
    )
    assert index.stats().objects == 200
    index.close()


@pytest.mark.parametrize("where", ["one Redis", "cluster"])
def test_buckets_split_while_saves_hits_and_deletes_run_and_lose_nothing(
    where: str, redis_url: str, redis_cluster: RedisCluster
) -> None:
    url = redis_url if where == "one Redis" else redis_cluster.url
    namespace = f"grow-{uuid.uuid4().hex}"
    packed = _index(url, namespace)
    twin = get_locmem_index(uuid.uuid4().hex, namespace=namespace)
    chooser = random.Random(20261202)
    names = [f"uploads/{number:05d}.bin" for number in range(1500)]
    digests = [_digest(number) for number in range(1200)]  # some content saved twice
    for step in range(4000):
        name = chooser.choice(names)
        if step % 5 == 4:
            assert _delete(packed, name) == _delete(twin, name), name
        else:
            digest = chooser.choice(digests)
            assert _save(packed, name, digest) == _save(twin, name, digest), (step, name)
    # Many splits happened (a bucket holds about 32 entries); every record is where its
    # address says, with its fields, its counts and its content map.
    state = packed._namespace_server().hgetall(packed._bucket_state_key)
    assert 2 ** int(state[b"rl"]) + int(state[b"rs"]) > 16
    assert packed.lookup_many(names) == twin.lookup_many(names)
    assert packed.content_names(digests) == twin.content_names(digests)
    assert packed.stats() == twin.stats()
    scanned = sorted(
        (item.record for item in packed.scan_records(batch_size=100)), key=lambda r: r.name
    )
    assert scanned == [record for record in twin.lookup_many(names) if record is not None]
    packed.close()


def test_a_content_map_whose_truncated_digest_collides_only_misses_a_deduplication(
    redis_url: str,
) -> None:
    index = _index(redis_url, f"collide-{uuid.uuid4().hex}")
    # The same first 10 bytes (20 hex digits), the map's field: one entry for both.
    first, second = "ab" * 10 + "01" * 22, "ab" * 10 + "02" * 22
    assert _save(index, "first.txt", first) == "committed"
    # No wrong hit: the map names first.txt, whose record holds the other digest.
    assert _save(index, "second.txt", second) == "committed"
    assert _save(index, "again.txt", second) == "committed"  # the missed deduplication
    assert _save(index, "first-again.txt", first) == "hit:first.txt"
    assert index.content_names([first, second]) == ["first.txt", None]
    record = index.lookup("second.txt")
    assert record is not None and (record.digest, record.refs) == (second, 1)
    index.close()


def test_a_name_longer_than_a_listpack_value_is_kept_exactly(redis_url: str) -> None:
    index = _index(redis_url, f"long-{uuid.uuid4().hex}")
    long_name = "a-very-long-directory-name/" * 4 + "file.txt"
    assert _save(index, long_name, _digest(1)) == "committed"
    assert _save(index, "other.txt", _digest(1)) == f"hit:{long_name}"
    record = index.lookup(long_name)
    assert record is not None and (record.refs, record.digest) == (2, _digest(1))
    assert [item.record.name for item in index.scan_records()] == [long_name]
    index.close()


def _fill_layout2(url: str, namespace: str) -> dict[str, Any]:
    """Write a layout 2 index with layout 2's scripts: counts, a pending delete, a replace."""
    old = _index(url, namespace, Layout2RedisIndex)
    for number in range(300):
        _save(old, f"file-{number}.txt", _digest(number), size=number)
    for number in range(0, 300, 3):
        assert _save(old, f"copy-{number}.txt", _digest(number)) == f"hit:file-{number}.txt"
    for number in range(1, 300, 7):
        _delete(old, f"file-{number}.txt")
    deleting = old.begin_delete(name="file-2.txt", token="deleter", claim_ttl=TTL)
    assert deleting.action == "delete"  # left under way: its lease must survive
    assert old.begin_replace(name="file-4.txt", token="replacer", digest=_digest(999)) == (
        "replace"
    )
    names = [f"file-{number}.txt" for number in range(300)] + ["copy-0.txt"]
    return {
        "names": names,
        "records": old.lookup_many(names),
        "stats": old.stats(),
        "holders": {name: record_fields(old, name) for name in ("file-2.txt", "file-4.txt")},
        "deleting": deleting,
    }


@pytest.mark.parametrize("where", ["one Redis", "cluster"])
def test_migrating_layout_2_to_3_keeps_every_count_lease_and_statistic(
    where: str, redis_url: str, redis_cluster: RedisCluster, tmp_path: Path
) -> None:
    url = redis_url if where == "one Redis" else redis_cluster.url
    namespace = f"two-{uuid.uuid4().hex}"
    filled = _fill_layout2(url, namespace)
    storage = DedupStorage(
        inner={
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
        index=url,
        namespace=namespace,
    )
    with pytest.raises(ImproperlyConfigured, match=r"layout 2.*dedupstore migrate-index"):
        storage.save("new.txt", ContentFile(b"new"))

    report = migrate_index(url, namespace)
    assert report.packed > 300 and report.moved == 0 and not report.conflicts

    index = _index(url, namespace)
    assert index.lookup_many(filled["names"]) == filled["records"]
    assert index.stats() == filled["stats"]
    for name, fields in filled["holders"].items():
        kept = record_fields(index, name)
        for field in ("state", "refs", "digest", "size", "token", "lease"):
            assert kept[field] == fields[field], field  # the holder's token and lease too
        assert abs(float(kept["t"]) - float(fields["t"])) < 0.001  # kept to the millisecond
    server = index._namespace_server()
    prefix = tagged_prefix(namespace)
    assert server.get(f"{prefix}:v") == b"3"
    assert not list(server.scan_iter(match=f"{prefix}:o:*"))
    assert not list(server.scan_iter(match=f"{prefix}:d:*"))
    # The holders carry on where they were: the delete commits, the replace aborts.
    index.commit_delete(name="file-2.txt", digest=filled["deleting"].digest, token="deleter")
    assert index.lookup("file-2.txt") is None
    index.abort_replace(name="file-4.txt", token="replacer", inner_deleted=False)
    record = index.lookup("file-4.txt")
    assert record is not None and (record.state, record.refs) == ("live", 1)
    # The content maps moved: content saved before hits its old name.
    assert _save(index, "later.txt", _digest(9)) == "hit:file-9.txt"
    assert index.lookup("file-9.txt").refs == 3  # type: ignore[union-attr]
    assert sorted(r.record.name for r in index.scan_records()) == sorted(
        r.name for r in index.lookup_many(filled["names"]) if r is not None
    )
    again = migrate_index(url, namespace)
    assert (again.moved, again.packed, again.version_before) == (0, 0, 3)
    index.close()


@pytest.mark.parametrize(
    ("name", "digest", "size"),
    [
        ("plain.bin", "ab" * 32, 4096),  # a hex digest: raw bytes in the value
        ("empty.bin", "cd" * 32, 0),
        ("naïve-ünïcode.txt", "ef" * 32, 7),  # nlen (characters) differs from the bytes
        ("scoped.bin", "12" * 32 + "+tenant-key", 11),  # a content key: not 64 hex digits
    ],
)
def test_a_hit_changes_only_the_references_and_the_time_of_a_packed_record(
    redis_url: str, name: str, digest: str, size: int
) -> None:
    index = _index(redis_url, f"test-{uuid.uuid4().hex}")
    assert _save(index, name, digest, size) == "committed"
    before = record_fields(index, name)
    for refs in range(2, 5):  # refs 1 is a flag of the value; 2 and more are in its array
        assert _save(index, "other", digest) == f"hit:{name}"
        after = record_fields(index, name)
        assert after.pop("refs") == str(refs)
        assert float(after.pop("t")) >= float(before["t"])
        assert after == {k: v for k, v in before.items() if k not in ("refs", "t")}
    record = index.lookup(name)
    assert record is not None
    assert (record.digest, record.refs, record.state, record.size) == (digest, 4, "live", size)
    stats = index.stats()
    assert (stats.references, stats.logical_bytes) == (4, 4 * size)
