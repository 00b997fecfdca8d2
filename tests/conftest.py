"""Fixtures shared by the whole suite: a real redis-server started on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dedupstore.testing.redis import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """Start one private redis-server for the test session and stop it by PID."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """Return the URL of an emptied Redis database for one test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield redis_server.url
    client.close()
