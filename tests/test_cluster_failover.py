"""A primary SIGKILLed in the middle of a multi-process save/delete workload.

A real cluster of our own; three processes save and delete in one namespace (so every call
goes to the killed primary's shard); the primary is killed once each has made progress,
its replica is promoted, the dead node comes back (as the new primary's replica), and
the workload goes on. Then every name's count is compared with what the processes were
told: acknowledged saves minus acknowledged deletes, give or take the calls whose outcome
they were told is unknown.

Replication is asynchronous: without ``wait_replicas`` an acknowledged call whose write
had not reached the replica is lost with the primary. The test measures that loss and
prints it: with a replica that keeps up, and with one made to lag (SIGSTOPped for a few
calls of every worker before the kill with its replication link dropped, SIGCONTed
after), where acknowledged references must be lost. With ``wait_replicas=1`` nothing
acknowledged may be lost, even from a lagging replica, and no name may point at missing
content.
"""

from __future__ import annotations

import json
import multiprocessing
import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from dedupstore import DedupStorage
from dedupstore.index.redis import tagged_prefix
from dedupstore.testing.redis_cluster import RedisCluster
from tests.failover_worker import work
from tests.test_cluster_index import PATIENCE, _node_ids, _owner, _slot, _wait_for

WORKERS = 3
#: Acknowledged calls each worker makes before the kill, and after the promotion.
BEFORE, AFTER = 40, 40
#: Calls each worker makes while the replica lags (is stopped), before the kill.
LAG_CALLS = 3


def _role(cluster: RedisCluster, port: int) -> str:
    return cluster.info(port, "replication").get("role", "")


def _measure(storage: DedupStorage, logs: list[Path]) -> dict[str, Any]:
    """Compare each name's count with what the workers were told."""
    acked: Counter[str] = Counter()
    unsure_deletes: Counter[str] = Counter()
    unsure_saves: Counter[int] = Counter()
    content_of: dict[str, int] = {}
    outcomes: Counter[str] = Counter()
    errors: list[Any] = []
    for log in logs:
        for line in log.read_text(encoding="utf-8").splitlines():
            kind, name, content = json.loads(line)
            outcomes[kind] += 1
            if kind == "saved":
                acked[name] += 1
                content_of[name] = content
            elif kind == "deleted":
                acked[name] -= 1
            elif kind == "delete?":
                unsure_deletes[name] += 1
            elif kind == "save?":
                unsure_saves[content] += 1
            elif kind == "error":
                errors.append((name, content))
    lost_references = 0  # acknowledged references the index no longer counts
    extra_references = 0  # counted beyond the acknowledged ones (the safe direction)
    missing_content = []  # names someone holds whose object is gone
    for name, expected in acked.items():
        actual = storage.references(name)
        low = expected - unsure_deletes[name]
        high = expected + unsure_saves[content_of[name]]
        if actual < low:
            lost_references += low - actual
        elif actual > high:
            extra_references += actual - high
        if low > 0 and not storage.inner.exists(name):
            missing_content.append(name)
    return {
        "outcomes": dict(outcomes),
        "lost_references": lost_references,
        "extra_references": extra_references,
        "missing_content": missing_content,
        "errors": errors,
        "names": len(acked),
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("wait_replicas", "lagging"),
    [(0, False), (0, True), (1, True)],
    ids=["0", "0-lagging", "1-lagging"],
)
def test_a_primary_killed_mid_workload_is_replaced_and_the_workload_goes_on(
    tmp_path: Path, wait_replicas: int, lagging: bool
) -> None:
    context = multiprocessing.get_context("spawn")
    namespace = f"failover-{uuid.uuid4().hex}"
    location = tmp_path / "media"
    with RedisCluster() as cluster:
        url = f"{cluster.url}?wait_replicas={wait_replicas}"
        ids = _node_ids(cluster)
        primary = _owner(cluster, _slot(namespace))
        replica = next(port for port, (_, _, of) in ids.items() if of == primary)
        stop = context.Event()
        counters = [context.Value("i", 0) for _ in range(WORKERS)]
        attempts = [context.Value("i", 0) for _ in range(WORKERS)]
        logs = [tmp_path / f"worker-{number}.jsonl" for number in range(WORKERS)]
        workers = [
            context.Process(
                target=work,
                args=(
                    url,
                    str(location),
                    namespace,
                    str(logs[n]),
                    n,
                    counters[n],
                    attempts[n],
                    stop,
                    1.0,  # index_timeout: WAIT gives up after 0.5 s
                ),
            )
            for n in range(WORKERS)
        ]
        for process in workers:
            process.start()
        try:
            # Only a replica that has synchronised can be promoted.
            _wait_for(
                lambda: cluster.info(replica, "replication").get("master_link_status") == "up",
                "the replica to synchronise",
            )
            _wait_for(lambda: all(c.value >= BEFORE for c in counters), "work before the kill")
            if lagging:
                # The replica stops, and the primary drops its link (what the replica's
                # socket holds already it still reads when it goes on): every write the
                # primary acknowledges from now on exists on the primary alone.
                cluster.kill_node(replica, signal.SIGSTOP)
                primary_client = redis.Redis(host=cluster.host, port=primary)
                primary_client.execute_command("CLIENT", "KILL", "TYPE", "replica")
                primary_client.close()
                at_stop = [a.value for a in attempts]
                _wait_for(
                    lambda: all(
                        a.value >= at + LAG_CALLS for a, at in zip(attempts, at_stop, strict=True)
                    ),
                    "calls while the replica lags",
                )
            cluster.kill_node(primary)
            killed_at = time.monotonic()
            if lagging:
                cluster.kill_node(replica, signal.SIGCONT)
            _wait_for(lambda: _role(cluster, replica) == "master", "the replica's promotion")
            promoted_after = time.monotonic() - killed_at
            cluster.start_node(primary)  # it comes back empty, as the new primary's replica
            _wait_for(lambda: _role(cluster, primary) == "slave", "the old primary to rejoin")
            at_promotion = [c.value for c in counters]
            _wait_for(
                lambda: all(
                    c.value >= at + AFTER for c, at in zip(counters, at_promotion, strict=True)
                ),
                "work after the promotion",
            )
        finally:
            stop.set()
            for process in workers:
                process.join(PATIENCE)
                if process.is_alive():
                    process.kill()
                    process.join()
        inner = {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(location)},
        }
        storage = DedupStorage(inner=inner, index=cluster.url, namespace=namespace)
        measured = _measure(storage, logs)
        client = redis.Redis(host=cluster.host, port=replica)
        record_keys = client.execute_command("CLUSTER", "COUNTKEYSINSLOT", _slot(namespace))
        client.close()
    print(
        f"failover wait_replicas={wait_replicas}: promoted {promoted_after:.1f} s after "
        f"the kill; {measured} ({record_keys} keys in the namespace's slot; prefix "
        f"{tagged_prefix(namespace)})"
    )
    assert all(process.exitcode == 0 for process in workers)
    assert measured["errors"] == []
    if wait_replicas:
        # Every acknowledged call reached the replica before it was acknowledged.
        assert measured["lost_references"] == 0
        assert measured["missing_content"] == []
    elif lagging:
        # What asynchronous replication loses: references the callers were told were
        # counted, acknowledged while the replica lagged, are gone after the promotion.
        assert measured["lost_references"] > 0
