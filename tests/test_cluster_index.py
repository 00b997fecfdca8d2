"""An index on a Redis Cluster: its URL, one slot per namespace, and every cluster error.

Against real clusters of Debian's ``redis-server`` (3 primaries, 3 replicas): a shared one
for what changes nothing but its own namespaces, a private one for resharding and script
flushes, another for a cluster that is down. URL checks need no server.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from redis.crc import key_slot

from dedupstore import DedupStorage, IndexUnavailable
from dedupstore.index import validate_index_url
from dedupstore.index.cluster import parse_cluster_url
from dedupstore.index.redis import RedisIndex, tagged_prefix
from dedupstore.testing.index_layouts import record_fields
from dedupstore.testing.redis_cluster import RedisCluster
from tests.contract import read_all

#: How long a test waits for a cluster to notice a dead node (node timeout 2 s, busy CPUs).
PATIENCE = 90.0


def _storage(
    url: str, location: Path, namespace: str | None = None, **options: Any
) -> DedupStorage:
    inner = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(location)},
    }
    return DedupStorage(
        inner=inner, index=url, namespace=namespace or f"c-{uuid.uuid4().hex}", **options
    )


def _slot(namespace: str) -> int:
    return key_slot(tagged_prefix(namespace)[1:-1].encode())


def _node_ids(cluster: RedisCluster) -> dict[int, tuple[str, str, int | None]]:
    """Map each port to (node id, role, the port of its primary for a replica).

    Waits until the first node sees as many replicas as primaries: just after the cluster
    is created, a replica may still be listed as a primary without slots.
    """
    found: dict[int, tuple[str, str, int | None]] = {}

    def settled() -> bool:
        found.clear()
        found.update(_read_node_ids(cluster))
        return sum(role == "slave" for _, role, _ in found.values()) == cluster.primaries

    _wait_for(settled, "every replica to be known")
    return found


def _read_node_ids(cluster: RedisCluster) -> dict[int, tuple[str, str, int | None]]:
    client = redis.Redis(host=cluster.host, port=cluster.ports[0], decode_responses=True)
    try:
        lines = client.execute_command("CLUSTER", "NODES").splitlines()
    finally:
        client.close()
    by_id: dict[str, tuple[int, str, str]] = {}
    for line in lines:
        fields = line.split()
        port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
        role = "master" if "master" in fields[2] else "slave"
        by_id[fields[0]] = (port, role, fields[3])
    return {
        port: (node_id, role, by_id[primary][0] if primary in by_id else None)
        for node_id, (port, role, primary) in by_id.items()
    }


def _owner(cluster: RedisCluster, slot: int) -> int:
    """Return the port of the primary that serves ``slot``."""
    client = redis.Redis(host=cluster.host, port=cluster.ports[0])
    try:
        for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(primary[1])
    finally:
        client.close()
    raise AssertionError(f"slot {slot} is not served")


def _node(cluster: RedisCluster, port: int) -> redis.Redis:
    return redis.Redis(host=cluster.host, port=port)


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def private_cluster() -> Iterator[RedisCluster]:
    """A cluster of this module's own: its tests reshard it and flush its scripts."""
    with RedisCluster() as cluster:
        yield cluster


# -- the URL ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "nodes", "password", "tls"),
    [
        ("redis+cluster://10.0.0.1:7000", (("10.0.0.1", 7000),), None, False),
        (
            "redis+cluster://:s3cr%2Ft@a:7000,b:7001/",
            (("a", 7000), ("b", 7001)),
            "s3cr/t",
            False,
        ),
        (
            "rediss+cluster://u:p@[::1]:7000,h:7001/0?ssl_cert_reqs=none",
            (("::1", 7000), ("h", 7001)),
            "p",
            True,
        ),
    ],
)
def test_a_cluster_url_names_its_seed_nodes_its_password_and_tls(
    url: str, nodes: tuple[tuple[str, int], ...], password: str | None, tls: bool
) -> None:
    assert validate_index_url(url) == url
    parsed = parse_cluster_url(url, url)
    assert (parsed.nodes, parsed.password, parsed.tls) == (nodes, password, tls)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+cluster://", "names no seed node"),
        ("redis+cluster://a:7000,,b:7001", "names no seed node"),
        ("redis+cluster://a", "has no port"),
        ("redis+cluster://a:x", "no valid port"),
        ("redis+cluster://a:70000", "no valid port"),
        ("redis+cluster://:7000", "names no host"),
        ("redis+cluster://a:7000/3", "only database 0"),
        ("redis+cluster://a:7000?db=0", "unknown option 'db'"),
        ("redis+cluster://a:7000?ssl_ca_certs=/x", "TLS options need rediss"),
        ("redis+cluster://a:7000?wait_replicas=-1", "whole number of replicas"),
        ("redis+cluster://a:7000?wait_replicas=one", "whole number of replicas"),
        ("redis://localhost:6379/0?wait_replicas=x", "whole number of replicas"),
    ],
)
def test_a_bad_cluster_url_is_refused_with_the_form_it_should_have(url: str, problem: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=problem):
        validate_index_url(url)


def test_a_bad_cluster_url_never_shows_its_password() -> None:
    with pytest.raises(ImproperlyConfigured) as caught:
        validate_index_url("redis+cluster://:hunter2@a:7000/5")
    assert "hunter2" not in str(caught.value)
    assert "redis+cluster://" in str(caught.value)


def test_wait_replicas_comes_from_the_url_then_the_setting(settings: Any, redis_url: str) -> None:
    settings.DEDUPSTORE_INDEX_WAIT_REPLICAS = 2
    from_setting = RedisIndex(redis_url, namespace="w", display_url=redis_url)
    from_url = RedisIndex(redis_url + "?wait_replicas=1", namespace="w", display_url=redis_url)
    given = RedisIndex(redis_url, namespace="w", display_url=redis_url, wait_replicas=0)
    assert (from_setting.wait_replicas, from_url.wait_replicas, given.wait_replicas) == (2, 1, 0)
    from_url.ping()  # redis-py never sees the option
    for index in (from_setting, from_url, given):
        index.close()


def test_index_wait_replicas_is_a_storage_option_that_beats_the_url_and_the_setting(
    settings: Any, redis_url: str, tmp_path: Path
) -> None:
    settings.DEDUPSTORE_INDEX_WAIT_REPLICAS = 2
    assert _storage(redis_url, tmp_path).index.wait_replicas == 2
    assert _storage(redis_url + "?wait_replicas=1", tmp_path).index.wait_replicas == 1
    given = _storage(redis_url + "?wait_replicas=1", tmp_path, index_wait_replicas=0)
    assert given.index.wait_replicas == 0
    name = given.save("a.txt", ContentFile(b"acknowledged at once"))
    assert given.references(name) == 1
    for bad in (-1, "one", True):
        with pytest.raises(ImproperlyConfigured, match="index_wait_replicas"):
            _storage(redis_url, tmp_path, index_wait_replicas=bad)


def test_wait_replicas_with_too_few_replicas_reports_a_save_as_maybe_counted(
    redis_url: str, tmp_path: Path
) -> None:
    # A single redis-server has no replica: WAIT 1 never succeeds. The save's first call
    # ran (it claimed the content) and says so; nothing is returned.
    storage = _storage(redis_url + "?wait_replicas=1", tmp_path, index_timeout=0.5)
    with pytest.raises(IndexUnavailable, match="WAIT 1: 0 replica") as caught:
        storage.save("a.txt", ContentFile(b"A"))
    assert caught.value.sent is True


# -- the shared cluster ----------------------------------------------------------------------


@pytest.mark.slow
def test_namespaces_spread_over_the_primaries_and_each_keeps_to_one_slot(
    redis_cluster: RedisCluster, tmp_path: Path
) -> None:
    owners = set()
    for number in range(12):
        namespace = f"spread-{number}-{uuid.uuid4().hex}"
        storage = _storage(redis_cluster.url, tmp_path / str(number), namespace)
        name = storage.save("a.txt", ContentFile(b"same"))
        assert storage.save("b.txt", ContentFile(b"same")) == name
        storage.delete(name)
        assert storage.references(name) == 1 and read_all(storage, name) == b"same"
        owner = _owner(redis_cluster, _slot(namespace))
        client = _node(redis_cluster, owner)
        try:
            keys = client.execute_command("CLUSTER", "GETKEYSINSLOT", _slot(namespace), 100)
        finally:
            client.close()
        prefix = tagged_prefix(namespace).encode()
        assert keys and all(key.startswith(prefix) for key in keys)
        owners.add(owner)
    assert len(owners) == 3  # 12 random namespaces all on one of 3 primaries: p < 1e-5


@pytest.mark.slow
def test_a_cluster_hit_whose_reply_is_lost_is_never_resent(
    redis_cluster: RedisCluster, tmp_path: Path
) -> None:
    storage = _storage(redis_cluster.url, tmp_path)
    name = storage.save("a.txt", ContentFile(b"shared"))
    index = storage.index
    client = index.client  # type: ignore[attr-defined]
    node = client.nodes_manager.get_node_from_slot(_slot(storage.namespace))
    server = client.get_redis_connection(node)
    sent = []
    real_parse = server.parse_response

    def reply_lost(connection: Any, command: str, **options: Any) -> Any:
        sent.append(command)
        real_parse(connection, command, **options)
        raise redis.TimeoutError("Timeout reading from socket")

    server.parse_response = reply_lost
    try:
        with pytest.raises(IndexUnavailable) as caught:
            storage.save("b.txt", ContentFile(b"shared"))
        with pytest.raises(IndexUnavailable):
            storage.references(name)  # through RedisCluster itself: never retried either
    finally:
        del server.parse_response
    assert caught.value.sent is True
    # Each sent once (the slot map is read again between them, after the lost reply).
    # The hit's function, then read_records.lua (loaded first if the node lacked it). The
    # slot map is read again from a node the client picks: this one, or another.
    scripts = [command for command in sent if not command.startswith("CLUSTER")]
    assert scripts in (["FCALL", "EVALSHA"], ["FCALL", "EVALSHA", "SCRIPT LOAD"])
    assert storage.references(name) == 2


@pytest.mark.slow
def test_a_cluster_index_needs_noeviction_on_every_node(
    redis_cluster: RedisCluster, tmp_path: Path
) -> None:
    replica = next(
        port for port, (_, role, _) in _node_ids(redis_cluster).items() if role == "slave"
    )
    client = _node(redis_cluster, replica)
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with pytest.raises(ImproperlyConfigured, match="allkeys-lru"):
            _storage(redis_cluster.url, tmp_path).save("a.txt", ContentFile(b"A"))
    finally:
        client.config_set("maxmemory-policy", "noeviction")
        client.close()


# -- the private cluster: scripts flushed, slots moved --------------------------------------


@pytest.mark.slow
def test_a_script_flushed_from_its_node_is_loaded_again_and_runs_once(
    private_cluster: RedisCluster, tmp_path: Path
) -> None:
    storage = _storage(private_cluster.url, tmp_path)
    name = storage.save("a.txt", ContentFile(b"shared"))
    owner = _node(private_cluster, _owner(private_cluster, _slot(storage.namespace)))
    try:
        owner.script_flush()
        assert storage.save("b.txt", ContentFile(b"shared")) == name  # begin_save: NOSCRIPT
        owner.script_flush()
        other = storage.save("c.txt", ContentFile(b"other"))  # reserve_name too
        owner.script_flush()
        storage.delete("c.txt")
    finally:
        owner.close()
    assert storage.references(name) == 2
    assert not storage.exists(other)


def _move_slot(cluster: RedisCluster, slot: int, target: int, *, finish: bool) -> int:
    """Move ``slot`` to the primary on ``target``: keys, then (``finish``) ownership.

    Unfinished, the slot stays MIGRATING on its owner and IMPORTING on the target with its
    keys still on the owner. Return the owner's port.
    """
    ids = _node_ids(cluster)
    source = _owner(cluster, slot)
    source_client, target_client = _node(cluster, source), _node(cluster, target)
    try:
        target_client.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source][0])
        source_client.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target][0])
        if finish:
            while keys := source_client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                source_client.execute_command(
                    "MIGRATE", cluster.host, target, "", 0, 5000, "KEYS", *keys
                )
            for port in ids:
                if ids[port][1] == "master":
                    _node(cluster, port).execute_command(
                        "CLUSTER", "SETSLOT", slot, "NODE", ids[target][0]
                    )
    finally:
        source_client.close()
        target_client.close()
    return source


def _stabilise(cluster: RedisCluster, slot: int, *ports: int) -> None:
    for port in ports:
        client = _node(cluster, port)
        try:
            client.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
        finally:
            client.close()


@pytest.mark.slow
def test_a_namespace_whose_slot_moved_is_followed_to_its_new_node(
    private_cluster: RedisCluster, tmp_path: Path
) -> None:
    storage = _storage(private_cluster.url, tmp_path)
    name = storage.save("a.txt", ContentFile(b"moved"))
    slot = _slot(storage.namespace)
    primaries = [p for p, (_, role, _) in _node_ids(private_cluster).items() if role == "master"]
    target = next(port for port in primaries if port != _owner(private_cluster, slot))
    _move_slot(private_cluster, slot, target, finish=True)
    _wait_for(lambda: _owner(private_cluster, slot) == target, "the slot's new owner")
    # The index still maps the slot to its old owner: MOVED, nothing ran, sent again.
    assert storage.save("b.txt", ContentFile(b"moved")) == name
    storage.delete("a.txt")
    assert storage.references(name) == 1 and read_all(storage, name) == b"moved"


@pytest.mark.slow
def test_a_save_during_a_resharding_of_its_slot_did_not_run_and_says_so(
    private_cluster: RedisCluster, tmp_path: Path
) -> None:
    storage = _storage(private_cluster.url, tmp_path, reuse="content")
    name = storage.save("a.txt", ContentFile(b"resharded"))
    slot = _slot(storage.namespace)
    source = _owner(private_cluster, slot)
    primaries = [p for p, (_, role, _) in _node_ids(private_cluster).items() if role == "master"]
    target = next(port for port in primaries if port != source)
    _move_slot(private_cluster, slot, target, finish=False)
    try:
        # Every script declares a key that never exists (layout 3's logical record and map
        # keys, or the slot probe) beside one that does: while the slot migrates, some of
        # its keys are missing, so TRYAGAIN, and nothing ran. A hit too: the buckets it
        # would read (undeclared) may have left for the other node already.
        for content in (b"resharded", b"new content"):
            with pytest.raises(IndexUnavailable, match=r"TRYAGAIN|rehashing") as caught:
                storage.save("b.txt", ContentFile(content))
            assert caught.value.sent is False
    finally:
        _stabilise(private_cluster, slot, source, target)
    assert storage.references(name) == 1
    assert storage.save("b.txt", ContentFile(b"resharded")) == name
    assert storage.references(name) == 2


@pytest.mark.slow
def test_a_save_whose_keys_are_on_neither_node_of_a_migrating_slot_is_refused_by_both(
    private_cluster: RedisCluster, tmp_path: Path
) -> None:
    storage = _storage(private_cluster.url, tmp_path)
    old = storage.save("old.txt", ContentFile(b"before"))
    slot = _slot(storage.namespace)
    source = _owner(private_cluster, slot)
    primaries = [p for p, (_, role, _) in _node_ids(private_cluster).items() if role == "master"]
    target = next(port for port in primaries if port != source)
    _move_slot(private_cluster, slot, target, finish=False)
    try:
        # None of this save's keys is on the owner: ASK sends it to the importing node,
        # which refuses a script of several keys it does not all hold yet (TRYAGAIN).
        with pytest.raises(IndexUnavailable) as caught:
            storage.save("new.txt", ContentFile(b"during"))
        assert caught.value.sent is False
        assert isinstance(caught.value.__cause__, redis.exceptions.TryAgainError)
    finally:
        _move_slot(private_cluster, slot, target, finish=True)
    _wait_for(lambda: _owner(private_cluster, slot) == target, "the slot's new owner")
    new = storage.save("new.txt", ContentFile(b"during"))
    assert storage.save("again.txt", ContentFile(b"during")) == new
    assert (storage.references(old), storage.references(new)) == (1, 2)
    assert read_all(storage, new) == b"during"


# -- a cluster that is down ------------------------------------------------------------------


@pytest.mark.slow
def test_a_cluster_that_is_down_runs_nothing_and_says_nothing_was_sent(tmp_path: Path) -> None:
    with RedisCluster() as cluster:
        storage = _storage(cluster.url, tmp_path)
        name = storage.save("a.txt", ContentFile(b"kept"))
        assert storage.save("b.txt", ContentFile(b"kept")) == name
        ids = _node_ids(cluster)
        ours = _owner(cluster, _slot(storage.namespace))
        victim = next(p for p, (_, role, _) in ids.items() if role == "master" and p != ours)
        replica = next(p for p, (_, _, primary) in ids.items() if primary == victim)
        _node(cluster, replica).config_set("cluster-replica-no-failover", "yes")
        cluster.kill_node(victim)  # its slots have nobody now: the cluster goes down
        owner = _node(cluster, ours)
        _wait_for(
            lambda: (
                owner.execute_command("CLUSTER", "INFO").decode().find("cluster_state:fail") >= 0
            ),
            "cluster_state:fail",
        )
        with pytest.raises(IndexUnavailable) as saved:
            storage.save("c.txt", ContentFile(b"kept"))
        with pytest.raises(IndexUnavailable, match="Nothing was deleted") as deleted:
            storage.delete("b.txt")
        assert saved.value.sent is False
        assert isinstance(saved.value.__cause__, redis.exceptions.ClusterDownError)
        assert isinstance(deleted.value.__cause__, redis.exceptions.ClusterDownError)
        owner.config_set("cluster-allow-reads-when-down", "yes")
        fields = record_fields(storage.index, name, client=owner)  # type: ignore[arg-type]
        assert fields["refs"] == "2"
        owner.close()


@pytest.mark.slow
def test_the_batch_reads_follow_a_namespace_whose_slot_moved(
    private_cluster: RedisCluster, tmp_path: Path
) -> None:
    storage = _storage(private_cluster.url, tmp_path)
    names = [storage.save(f"{n}.txt", ContentFile(b"%d" % n)) for n in range(5)]
    index = storage.index
    before = index.stats()
    slot = _slot(storage.namespace)
    primaries = [p for p, (_, role, _) in _node_ids(private_cluster).items() if role == "master"]
    target = next(port for port in primaries if port != _owner(private_cluster, slot))
    _move_slot(private_cluster, slot, target, finish=True)
    _wait_for(lambda: _owner(private_cluster, slot) == target, "the slot's new owner")
    # The index still maps the slot to its old owner: MOVED, nothing ran, asked again.
    assert index.stats() == before
    assert [record.name for record in index.lookup_many(names) if record] == names
    assert sorted(item.record.name for item in index.scan_records()) == sorted(names)


@pytest.mark.slow
def test_a_scan_of_a_namespace_whose_slot_is_being_migrated_is_refused(
    private_cluster: RedisCluster, tmp_path: Path
) -> None:
    storage = _storage(private_cluster.url, tmp_path)
    name = storage.save("a.txt", ContentFile(b"scanned"))
    index = storage.index
    slot = _slot(storage.namespace)
    source = _owner(private_cluster, slot)
    primaries = [p for p, (_, role, _) in _node_ids(private_cluster).items() if role == "master"]
    target = next(port for port in primaries if port != source)
    _move_slot(private_cluster, slot, target, finish=False)
    try:
        # SCAN is keyless (no redirection): records already moved would go unseen.
        with pytest.raises(IndexUnavailable, match="being migrated"):
            list(index.scan_records())
    finally:
        _stabilise(private_cluster, slot, source, target)
    assert [item.record.name for item in index.scan_records()] == [name]


# -- wait_replicas: WAIT covers every write the call made ------------------------------------


def _stalled_replica_of_owner(cluster: RedisCluster, namespace: str) -> int:
    owner = _owner(cluster, _slot(namespace))
    return next(p for p, (_, _, primary) in _node_ids(cluster).items() if primary == owner)


def _first_reply_lost(server: redis.Redis, sent: list[str]) -> None:
    """Make ``server`` lose the reply of its next script only (it still ran)."""
    real_parse = server.parse_response

    def parse(connection: Any, command: str, **options: Any) -> Any:
        sent.append(command)
        reply = real_parse(connection, command, **options)
        if command == "EVALSHA" and sent.count("EVALSHA") == 1:
            raise redis.TimeoutError("Timeout reading from socket")
        return reply

    server.parse_response = parse  # type: ignore[method-assign]


@pytest.mark.slow
def test_a_retry_after_a_lost_reply_waits_for_the_first_attempts_write_too(
    private_cluster: RedisCluster,
) -> None:
    from dedupstore.exceptions import DeleteOutcomeUnknown
    from tests.index.test_index_contract import TTL, save

    namespace = f"c-{uuid.uuid4().hex}"
    index = RedisIndex(
        private_cluster.url,
        namespace=namespace,
        display_url=private_cluster.url,
        socket_timeout=2.0,  # WAIT blocks up to 1 s
        wait_timeout=3.0,
        wait_replicas=1,
    )
    save(index, "a")
    client = index.client
    server = client.get_redis_connection(client.nodes_manager.get_node_from_slot(_slot(namespace)))
    sent: list[str] = []
    _first_reply_lost(server, sent)
    replica = _stalled_replica_of_owner(private_cluster, namespace)
    # A stopped replica stays connected (until repl-timeout) with its last acknowledged
    # offset: WAIT on a connection that wrote nothing counts it at once.
    private_cluster.kill_node(replica, signal.SIGSTOP)
    try:
        # The first attempt ran (its write never reached the replica) and lost its reply;
        # the retry, answered from the receipt on a new connection, must not claim success.
        with pytest.raises(DeleteOutcomeUnknown):
            index.begin_delete(name="a", token="deleter", claim_ttl=TTL)
    finally:
        private_cluster.kill_node(replica, signal.SIGCONT)
        del server.parse_response
    assert sent.count("EVALSHA") >= 2 and "SET" in sent
    index.close()
