"""Benchmark the index on a Redis Cluster against one Redis, and what wait_replicas costs.

In one run, on private servers started here (one ``redis-server``; a cluster of 3
primaries and 3 replicas):

- 4 KiB hits per second (``verify_hits=False``: the index's one round trip alone) with 1,
  2 and 4 client processes, over one Redis, over the cluster with every process in one
  namespace (one slot: one primary does all the work), and over the cluster with the
  processes' namespaces spread over the 3 primaries;
- the cost of ``wait_replicas=1`` (Redis ``WAIT`` after each counting script) on hits,
  misses (a new 4 KiB content: claim, reservation, inner write, commit) and deletes, on
  the cluster, interleaved round by round (medians);
- Redis memory per stored object (``used_memory`` growth, 34-character names), just after
  the saves (each commit's receipt still held) and once the receipts expired (what the
  index keeps for good: a record and a content map entry per object).

Every process and every Redis share this machine's CPUs: with 2 cores, 4 client processes
and 3 primaries compete for them, so the spread case cannot show the scaling 3 machines
would. Prints a table and writes ``benchmarks/results/cluster.json``. Run:
``python benchmarks/bench_cluster.py [--quick] [--memory-only]`` (``--memory-only``
measures the memory alone and updates that part of an earlier ``cluster.json``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

try:
    from _support import RESULTS, machine, setup_django
except ImportError:  # run as `python -m benchmarks.bench_cluster`
    from benchmarks._support import RESULTS, machine, setup_django

PAYLOAD = os.urandom(4096)


def _storage(index: str, namespace: str, location: str, **options: Any) -> Any:
    from dedupstore import DedupStorage

    return DedupStorage(
        inner={
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": location},
        },
        index=index,
        namespace=namespace,
        verify_hits=False,
        **options,
    )


def _hit_worker(args: tuple[str, str, str, float, Any]) -> int:
    """Hit one stored content for ``seconds`` after the barrier; return how many hits."""
    index, namespace, location, seconds, barrier = args
    setup_django()
    from django.core.files.base import ContentFile

    storage = _storage(index, namespace, location)
    for _ in range(50):  # warm-up: connection, slot map, scripts
        storage.save("hit.bin", ContentFile(PAYLOAD))
    barrier.wait()
    count, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        storage.save("hit.bin", ContentFile(PAYLOAD))
        count += 1
    return count


def _slot_ranges(cluster: Any) -> list[tuple[int, int, int]]:
    """Return (first slot, last slot, port of its primary) for every slot range."""
    import redis

    client = redis.Redis(host=cluster.host, port=cluster.ports[0])
    try:
        return [
            (int(start), int(end), int(primary[1]))
            for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS")
        ]
    finally:
        client.close()


def _spread_namespaces(cluster: Any, count: int) -> list[str]:
    """Return ``count`` namespaces whose slots lie on different primaries, in turn."""
    from redis.crc import key_slot

    from dedupstore.index.redis import tagged_prefix

    ranges = _slot_ranges(cluster)
    owners = sorted({port for _, _, port in ranges})
    chosen: dict[int, str] = {}
    while len(chosen) < len(owners):
        namespace = f"bench-spread-{uuid.uuid4().hex[:12]}"
        slot = key_slot(tagged_prefix(namespace)[1:-1].encode())
        owner = next(port for start, end, port in ranges if start <= slot <= end)
        chosen.setdefault(owner, namespace)
    ordered = [chosen[port] for port in owners]
    return [ordered[number % len(ordered)] for number in range(count)]


def bench_hits(
    cases: dict[str, tuple[str, list[str]]], location: str, seconds: float, rounds: int
) -> list[dict[str, Any]]:
    """Hits per second of every case with 1, 2 and 4 processes: medians of ``rounds``.

    The cases and process counts are interleaved within each round (fresh processes each
    time), so a burst of load from elsewhere on the machine hits all of them alike.
    """
    from django.core.files.base import ContentFile

    context = multiprocessing.get_context("spawn")
    for index, namespaces in cases.values():
        for namespace in set(namespaces):
            _storage(index, namespace, location).save("hit.bin", ContentFile(PAYLOAD))
    rates: dict[tuple[str, int], list[float]] = {}
    for _ in range(rounds):
        for case, (index, namespaces) in cases.items():
            for processes in (1, 2, 4):
                with context.Manager() as manager:
                    barrier = manager.Barrier(processes)
                    jobs = [
                        (index, namespaces[number], location, seconds, barrier)
                        for number in range(processes)
                    ]
                    with context.Pool(processes) as pool:
                        counts = pool.map(_hit_worker, jobs)
                rates.setdefault((case, processes), []).append(sum(counts) / seconds)
    rows = []
    for (case, processes), values in rates.items():
        rows.append(
            {
                "case": case,
                "processes": processes,
                "namespaces": len(set(cases[case][1][:processes])),
                "hits_per_s": statistics.median(values),
                "rounds": values,
            }
        )
        print(
            f"  {case:<34} {processes} process(es): {statistics.median(values):8.0f} hits/s "
            f"(rounds: {', '.join(f'{value:.0f}' for value in values)})"
        )
    return rows


def bench_wait_replicas(index: str, location: str, count: int, rounds: int) -> dict[str, Any]:
    """Hits, misses and deletes per second with wait_replicas 0 and 1, interleaved."""
    from django.core.files.base import ContentFile

    namespace = f"bench-wait-{uuid.uuid4().hex[:12]}"
    storages = {
        0: _storage(index, namespace, location),
        1: _storage(f"{index}?wait_replicas=1", namespace, location),
    }
    storages[0].save("hit.bin", ContentFile(PAYLOAD))
    rates: dict[str, list[float]] = {}
    for round_number in range(rounds + 1):  # the first round warms up
        for wait, storage in storages.items():
            started = time.perf_counter()
            for _ in range(count):
                storage.save("hit.bin", ContentFile(PAYLOAD))
            hits = count / (time.perf_counter() - started)
            contents = [os.urandom(4096) for _ in range(count)]
            started = time.perf_counter()
            names = [storage.save("miss.bin", ContentFile(data)) for data in contents]
            misses = count / (time.perf_counter() - started)
            started = time.perf_counter()
            for name in names:
                storage.delete(name)
            deletes = count / (time.perf_counter() - started)
            if round_number:
                for kind, rate in (("hits", hits), ("misses", misses), ("deletes", deletes)):
                    rates.setdefault(f"{kind} wait_replicas={wait}", []).append(rate)
    medians = {key: statistics.median(values) for key, values in rates.items()}
    return {
        "per_s": medians,
        "cost": {
            kind: 1 - medians[f"{kind} wait_replicas=1"] / medians[f"{kind} wait_replicas=0"]
            for kind in ("hits", "misses", "deletes")
        },
        "rounds": rounds,
        "count": count,
    }


def _used_memory(clients: list[Any]) -> int:
    return sum(int(client.info("memory")["used_memory"]) for client in clients)


#: The index's wait_timeout in bench_memory: its receipts then live the shortest time (60 s).
_MEMORY_WAIT_TIMEOUT = 1.0


def bench_memory(index: str, clients: list[Any], objects: int) -> dict[str, float]:
    """Return ``used_memory`` growth per object stored through the index (34-char names).

    Once just after the saves, once their receipts (a commit's answer to a retry, kept 60 s
    or more) expired.
    """
    from dedupstore.index import open_index
    from dedupstore.index.redis import tagged_prefix

    namespace = f"bench-mem-{uuid.uuid4().hex[:8]}"
    index_client = open_index(
        index, namespace=namespace, socket_timeout=5.0, wait_timeout=_MEMORY_WAIT_TIMEOUT
    )
    index_client.ping()
    index_client.lookup("warm-up")
    before = _used_memory(clients)
    for number in range(objects):
        digest = f"{number:064x}"
        name = f"uploads/2026/{number:012d}-photo.jpg"  # 34 characters
        token = uuid.uuid4().hex
        since = index_client.begin_save(
            digest=digest,
            reuse="content",
            name=name,
            max_length=None,
            token=token,
            claim_ttl=60,
        ).since
        index_client.reserve_name(name=name, token=token, digest=digest)
        index_client.commit_save(digest=digest, token=token, name=name, size=4096, since=since)
    after = _used_memory(clients)
    index_client.close()
    receipts = tagged_prefix(namespace) + ":r:*"  # braces are not special in MATCH
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and any(
        next(iter(client.scan_iter(match=receipts, count=1000)), None) for client in clients
    ):
        time.sleep(5)  # Redis's active expiry removes them within seconds of their TTL
    settled = _used_memory(clients)
    return {
        "just after the saves": (after - before) / objects,
        "once the receipts expired": (settled - before) / objects,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--memory-only", action="store_true", help="measure bytes per object alone")
    args = parser.parse_args()
    setup_django()

    from dedupstore.testing.redis import RedisServer
    from dedupstore.testing.redis_cluster import RedisCluster

    seconds, count, rounds, objects = (1.0, 100, 1, 5000) if args.quick else (2.0, 300, 3, 20000)
    with (
        RedisServer() as server,
        RedisCluster() as cluster,
        tempfile.TemporaryDirectory(prefix="dedupbench-") as tmp,
    ):
        if args.memory_only:
            earlier = RESULTS / "cluster.json"
            results = json.loads(earlier.read_text()) if earlier.exists() else {}
            results["bytes_per_object"] = _bytes_per_object(server, cluster, objects)
            results["bytes_per_object_machine"] = machine()
            _write(results)
            return
        spread = _spread_namespaces(cluster, 4)
        cases = {
            "one Redis": (server.url, ["bench-one"] * 4),
            "cluster, one namespace": (cluster.url, ["bench-one"] * 4),
            "cluster, spread over 3 primaries": (cluster.url, spread),
        }
        print("4 KiB hits (verify_hits=False), total over the processes:")
        results: dict[str, Any] = {"machine": machine(), "quick": args.quick}
        results["hits"] = bench_hits(cases, str(Path(tmp) / "media"), seconds, rounds)
        results["load_average_after_hits"] = os.getloadavg()
        print("wait_replicas on the cluster (one process):")
        results["wait_replicas"] = bench_wait_replicas(
            cluster.url, str(Path(tmp) / "media"), count, rounds
        )
        for key, value in results["wait_replicas"]["per_s"].items():
            print(f"  {key:<28} {value:8.0f}/s")
        for kind, cost in results["wait_replicas"]["cost"].items():
            print(f"  wait_replicas=1 costs {cost:6.1%} of the {kind} rate")
        results["bytes_per_object"] = _bytes_per_object(server, cluster, objects)
    _write(results)


def _bytes_per_object(server: Any, cluster: Any, objects: int) -> dict[str, Any]:
    """Measure bytes per object over one Redis and over the cluster; print them."""
    import redis

    single = [redis.Redis.from_url(server.url)]
    owners = sorted({port for _, _, port in _slot_ranges(cluster)})
    primaries = [redis.Redis(host=cluster.host, port=port) for port in owners]
    figures: dict[str, Any] = {
        "one Redis": bench_memory(server.url, single, objects),
        "cluster (summed over the primaries; each replica holds as much again)": bench_memory(
            cluster.url, primaries, objects
        ),
        "objects": objects,
    }
    for client in single + primaries:
        client.close()
    for key, value in figures.items():
        if key != "objects":
            for when, per_object in value.items():
                print(f"  bytes per object, {key}, {when}: {per_object:.0f}")
    return figures


def _write(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cluster.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {RESULTS / 'cluster.json'}")


if __name__ == "__main__":
    main()
