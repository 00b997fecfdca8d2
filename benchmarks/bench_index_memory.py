"""Redis memory per stored object: the index's key layout 2 beside layout 3 (packed buckets).

Fills a fresh namespace with N objects of 34-character names (``add_record``'s script,
the one ``manage.py dedupstore adopt`` runs, pipelined: one live record and one content
map per object, 4 KiB each) and reports the growth of ``used_memory`` per object:

- over one Redis, and over the 3-primary test cluster (summed over its primaries; each
  replica holds as much again);
- layout 2 (one hash per record, one string per content map; the scripts kept under
  ``dedupstore/testing/layout2_lua``) beside layout 3 (the current one).

add_record leaves no receipt, so the figures are those of an index whose receipts
expired. Prints a table and writes ``benchmarks/results/index_memory.json``. Run:

    python benchmarks/bench_index_memory.py                    # 10^5 and 10^6 objects
    python benchmarks/bench_index_memory.py --objects 20000    # a quick look
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

try:
    from _support import RESULTS, machine, setup_django
except ImportError:  # run as python -m benchmarks.bench_index_memory
    from benchmarks._support import RESULTS, machine, setup_django

#: Objects per pipeline.
_BATCH = 2000


def _used_memory(clients: list[Any]) -> int:
    return sum(int(client.info("memory")["used_memory"]) for client in clients)


def _fill(index: Any, server: Any, objects: int) -> None:
    """Add ``objects`` records through ``index``'s add_record script, pipelined on ``server``."""
    script = index._add_record
    source = script.script
    sha = server.script_load(source)
    for start in range(0, objects, _BATCH):
        pipeline = server.pipeline(transaction=False)
        for number in range(start, min(objects, start + _BATCH)):
            digest = f"{number * 2654435761 % 2**64:016x}" * 4  # spread like real digests
            name = f"uploads/2026/{number:011d}-photo.jpg"  # 34 characters
            keys = [
                index._record_prefix + name,
                index._map_prefix + digest,
                index._tombstone_prefix + name,
                index._reservation_prefix + name,
                index._quarantine_prefix + name,
                index._stats_key,
            ]
            pipeline.evalsha(
                sha, len(keys), *keys, digest, 4096, len(name), 1, name, index._record_prefix
            )
        replies = pipeline.execute()
        assert all(int(reply) == 1 for reply in replies), "a record was refused"


def _namespace_keys(index: Any) -> list[bytes]:
    prefix = index._stats_key[: -len(":s")]
    server = index._namespace_server()
    return list(server.scan_iter(match=prefix.replace("[", "\\[") + ":*", count=10_000))


def bench_layout(url: str, clients: list[Any], objects: int, layout: int) -> dict[str, float]:
    """Return bytes per object and fill rate for one layout over ``clients``' servers."""
    from dedupstore.index.redis import RedisIndex
    from dedupstore.testing.index_layouts import Layout2RedisIndex

    namespace = f"bench-mem-{uuid.uuid4().hex[:8]}"
    cls = Layout2RedisIndex if layout == 2 else RedisIndex
    index = cls(url, namespace=namespace, display_url=url)
    index.ping()  # records the layout
    server = index._namespace_server()
    server.script_load(index._add_record.script)
    before = _used_memory(clients)
    started = time.perf_counter()
    _fill(index, server, objects)
    seconds = time.perf_counter() - started
    after = _used_memory(clients)
    assert index.stats().objects == objects
    # Free the memory for the next run (a 10^6 namespace is hundreds of MB in layout 2).
    server, keys = index._namespace_server(), _namespace_keys(index)
    for start in range(0, len(keys), 10_000):
        server.unlink(*keys[start : start + 10_000])
    index.close()
    return {"bytes_per_object": (after - before) / objects, "objects_per_s": objects / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--objects", type=int, nargs="+", default=[100_000, 1_000_000], help="sizes to fill"
    )
    parser.add_argument(
        "--where", nargs="+", choices=["one Redis", "cluster"], default=["one Redis", "cluster"]
    )
    args = parser.parse_args()
    setup_django()

    import redis

    from dedupstore.testing.redis import RedisServer
    from dedupstore.testing.redis_cluster import RedisCluster

    # Runs of other sizes or servers measured before are kept (a rerun replaces its own).
    earlier = RESULTS / "index_memory.json"
    results: dict[str, Any] = json.loads(earlier.read_text()) if earlier.exists() else {"runs": []}
    results.update(machine=machine(), names="34 characters")
    with RedisServer() as server, RedisCluster() as cluster:
        single = [redis.Redis.from_url(server.url)]
        nodes = redis.RedisCluster(host=cluster.host, port=cluster.ports[0])
        primaries = [redis.Redis(host=node.host, port=node.port) for node in nodes.get_primaries()]
        nodes.close()
        print(f"{'objects':>9} {'where':<10} {'layout 2':>10} {'layout 3':>10} {'ratio':>6}")
        for objects in args.objects:
            for where, url, clients in (
                ("one Redis", server.url, single),
                ("cluster", cluster.url, primaries),
            ):
                if where not in args.where:
                    continue
                old = bench_layout(url, clients, objects, 2)
                new = bench_layout(url, clients, objects, 3)
                results["runs"] = [
                    run
                    for run in results["runs"]
                    if (run["objects"], run["where"]) != (objects, where)
                ] + [{"objects": objects, "where": where, "layout 2": old, "layout 3": new}]
                RESULTS.mkdir(parents=True, exist_ok=True)
                earlier.write_text(json.dumps(results, indent=2))
                print(
                    f"{objects:>9} {where:<10} {old['bytes_per_object']:>10.1f} "
                    f"{new['bytes_per_object']:>10.1f} "
                    f"{new['bytes_per_object'] / old['bytes_per_object']:>6.2f}"
                    f"   (fill: {old['objects_per_s']:.0f}/s, {new['objects_per_s']:.0f}/s)"
                )
        for client in single + primaries:
            client.close()
    print(f"\nwrote {earlier}")


if __name__ == "__main__":
    main()
