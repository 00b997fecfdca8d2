"""Fixtures shared by the whole suite: real redis-servers and moto's S3 server on loopback."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dedupstore import DedupStorage
from dedupstore.testing.redis import RedisServer
from dedupstore.testing.redis_cluster import RedisCluster
from dedupstore.testing.s3 import S3Server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """Start one private redis-server for the test session and stop it by PID."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """Start one private Redis Cluster (3 primaries, 3 replicas) for the session.

    Shared: tests over it use namespaces of their own and never stop a node (a failover
    test starts a cluster of its own).
    """
    with RedisCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """Start one private moto S3 server (127.0.0.1) for the session and stop it by PID."""
    with S3Server() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """Create an empty bucket of its own for one test and return its name."""
    return s3_server.create_bucket(f"test-{uuid.uuid4().hex[:20]}")


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """Return the URL of an emptied Redis database for one test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield redis_server.url
    client.close()


#: The index kinds most tests run against; the race tests add the cluster (slow).
INDEX_KINDS: list[Any] = ["redis", "locmem"]
INDEX_KINDS_WITH_CLUSTER: list[Any] = [
    *INDEX_KINDS,
    pytest.param("cluster", marks=pytest.mark.slow),
]


def index_url_of_kind(request: pytest.FixtureRequest, redis_url: str) -> str:
    """Return the URL of an index of ``request.param``'s kind (namespaces keep tests apart)."""
    if request.param == "cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    return redis_url if request.param == "redis" else f"locmem://{uuid.uuid4().hex}"


@pytest.fixture(params=INDEX_KINDS)
def index_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    """Return the URL of an empty index of each kind: a real Redis, and its locmem twin."""
    return index_url_of_kind(request, redis_url)


@pytest.fixture
def make_fs_dedup(redis_url: str, tmp_path: Path) -> Callable[..., DedupStorage]:
    """Return a factory of DedupStorage over a FileSystemStorage in ``tmp_path``."""

    def make(**options: Any) -> DedupStorage:
        options.setdefault("index", redis_url)
        options.setdefault("namespace", f"test-{uuid.uuid4().hex}")
        inner = {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        }
        return DedupStorage(inner=inner, **options)

    return make


@pytest.fixture
def busy_redis(redis_url: str) -> Iterator[Callable[[int], None]]:
    """Return a function that keeps the test's Redis busy for some milliseconds, at once."""
    import threading
    import time

    import redis

    from tests.helpers import BUSY_SCRIPT, PATIENCE

    admin = redis.Redis.from_url(redis_url)
    admin.ping()
    threads: list[threading.Thread] = []

    def busy(milliseconds: int) -> None:
        thread = threading.Thread(target=admin.eval, args=(BUSY_SCRIPT, 0, milliseconds))
        thread.start()
        threads.append(thread)
        # The script runs once another client's PING goes unanswered (or it already ended).
        probe = redis.Redis.from_url(redis_url, socket_timeout=0.05)
        deadline = time.monotonic() + PATIENCE
        try:
            while thread.is_alive() and time.monotonic() < deadline:
                try:
                    probe.ping()
                except redis.TimeoutError:
                    return
                time.sleep(0.005)
        finally:
            probe.close()

    yield busy
    for thread in threads:
        thread.join(10.0)
    admin.close()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """Start a redis-server of this test's own: the test breaks it on purpose."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def slow_redis() -> Iterator[tuple[RedisServer, Callable[[int], None]]]:
    """Start a private Redis that answers BUSY once a script runs for 100 ms."""
    import threading
    import time

    import redis

    from tests.helpers import BUSY_SCRIPT, PATIENCE

    with RedisServer() as server:
        admin = redis.Redis.from_url(server.url)
        admin.config_set("lua-time-limit", 100)
        threads: list[threading.Thread] = []

        def busy(milliseconds: int) -> None:
            thread = threading.Thread(target=admin.eval, args=(BUSY_SCRIPT, 0, milliseconds))
            thread.start()
            threads.append(thread)
            # Past lua-time-limit, other clients get BUSY: wait until one does.
            probe = redis.Redis.from_url(server.url, socket_timeout=PATIENCE)
            deadline = time.monotonic() + PATIENCE
            try:
                while thread.is_alive() and time.monotonic() < deadline:
                    try:
                        probe.ping()
                    except redis.ResponseError as exc:
                        if "BUSY" in str(exc):
                            return
                        raise
                    time.sleep(0.005)
            finally:
                probe.close()

        yield server, busy
        for thread in threads:
            thread.join(PATIENCE)
        admin.close()
