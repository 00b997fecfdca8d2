"""The suite's private redis-server: a persistent one survives a crash and a restart."""

from __future__ import annotations

import pytest
import redis

from dedupstore.testing.redis import RedisServer, RedisServerError


def test_a_killed_persistent_redis_restarts_on_its_port_with_every_acknowledged_write() -> None:
    with RedisServer(appendonly=True) as server:
        port, first_pid = server.port, server.pid
        client = redis.Redis.from_url(server.url)
        client.set("kept", "yes")
        client.close()
        server.kill()
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(server.url).ping()
        server.restart()
        assert server.port == port and server.pid != first_pid
        client = redis.Redis.from_url(server.url)
        assert client.get("kept") == b"yes"
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
        client.close()


def test_a_running_redis_is_not_restarted_over_itself() -> None:
    with RedisServer() as server, pytest.raises(RedisServerError, match="kill"):
        server.restart()
