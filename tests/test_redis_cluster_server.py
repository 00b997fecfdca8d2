"""The project's private Redis Cluster: 3 primaries and 3 replicas on loopback, stopped by PID."""

from __future__ import annotations

import os
import shutil

import pytest
import redis
from redis.cluster import ClusterNode

from dedupstore.testing.redis_cluster import MAX_NODE_PORT, RedisCluster

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


def test_the_cluster_starts_with_three_primaries_and_three_replicas_and_stops_by_pid() -> None:
    with RedisCluster() as cluster:
        assert len(cluster.ports) == 6 and max(cluster.ports) <= MAX_NODE_PORT
        assert cluster.is_ok()
        roles = [cluster.info(port, "replication")["role"] for port in cluster.ports]
        assert sorted(roles) == ["master"] * 3 + ["slave"] * 3
        client = redis.RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in cluster.nodes]
        )
        for key in ("{a}x", "{b}x", "{c}x", "{d}x"):
            client.set(key, key)
            assert client.get(key) == key.encode()
        client.close()
        pids = list(cluster.pids.values())
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
