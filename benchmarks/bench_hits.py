"""Benchmark 4 KiB hits over FileSystemStorage, with and without verify_hits, against PING.

A hit is one Redis round trip (plus, with ``verify_hits=True``, one ``exists()``: a stat on
local disk), so redis-py's own ``PING`` rate on the same connection settings is its limit.
Every figure is measured in this one run, the three workloads interleaved round by round
(medians), because the machines are shared and noisy. Prints a table and writes
``benchmarks/results/hits.json``. Run: ``python benchmarks/bench_hits.py [--quick]``;
``--profile`` prints where the Python time of a verified hit goes.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    from _support import RESULTS, machine, setup_django
except ImportError:  # run as `python -m benchmarks.bench_hits`
    from benchmarks._support import RESULTS, machine, setup_django

#: The project's target (hits per second with verify_hits), and its aim (the ratio to PING).
TARGET_HITS_PER_S = 3000
AIM_PING_RATIO = 0.8


def _rate(operation: Callable[[], object], count: int) -> tuple[float, float]:
    """Return operations per second (wall clock) and this process's CPU µs per operation.

    The CPU figure is what the Python side costs, and holds on a loaded machine, where the
    wall-clock rate mostly measures how soon Redis gets a core.
    """
    cpu, started = time.process_time(), time.perf_counter()
    for _ in range(count):
        operation()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return count / elapsed, cpu / count * 1e6


def bench_hits(index: str, workdir: Path, count: int, rounds: int) -> dict[str, Any]:
    """Hits per second with verify_hits True and False, and PINGs per second, interleaved."""
    import redis
    from django.core.files.base import ContentFile

    from dedupstore import DedupStorage

    def storage(verify: bool) -> DedupStorage:
        return DedupStorage(
            inner={
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(workdir / "media")},
            },
            index=index,
            namespace="bench-hits",
            verify_hits=verify,
        )

    payload = os.urandom(4096)
    verified, unverified = storage(True), storage(False)
    name = verified.save("hit.bin", ContentFile(payload))
    # The same socket settings as the index's own client.
    ping_client = redis.Redis.from_url(index, socket_timeout=5.0, socket_connect_timeout=5.0)
    # The least any scripted round trip costs through redis-py: a script that does nothing.
    empty_script = ping_client.register_script("return 1")
    workloads: dict[str, Callable[[], object]] = {
        "ping": ping_client.ping,
        "empty script": lambda: empty_script(keys=["bench-hits-empty"], args=[]),
        "verify_hits=True": lambda: verified.save("hit.bin", ContentFile(payload)),
        "verify_hits=False": lambda: unverified.save("hit.bin", ContentFile(payload)),
    }
    for operation in workloads.values():  # warm-up: connections, scripts loaded
        _rate(operation, 200)
    assert verified.save("other.bin", ContentFile(payload)) == name
    rates: dict[str, list[float]] = {key: [] for key in workloads}
    cpu: dict[str, list[float]] = {key: [] for key in workloads}
    # Redis's own time per script (INFO commandstats), on the critical path of each hit.
    server_us: dict[str, list[float]] = {key: [] for key in workloads}
    for _ in range(rounds):
        for key, operation in workloads.items():
            calls, usec = _script_stats(ping_client)
            rate, cpu_us = _rate(operation, count)
            rates[key].append(rate)
            cpu[key].append(cpu_us)
            after_calls, after_usec = _script_stats(ping_client)
            if after_calls > calls:
                server_us[key].append((after_usec - usec) / (after_calls - calls))
    ping_client.close()
    ping = statistics.median(rates["ping"])
    ping_cpu = statistics.median(cpu["ping"])
    empty = statistics.median(rates["empty script"])
    rows = []
    for key in ("verify_hits=True", "verify_hits=False"):
        hits = statistics.median(rates[key])
        hit_cpu = statistics.median(cpu[key])
        rows.append(
            {
                "case": f"hit, 4 KiB, FileSystemStorage, {key}",
                "hits_per_s": hits,
                "ratio_to_ping": hits / ping,
                "ratio_to_empty_script": hits / empty,
                "cpu_us_per_hit": hit_cpu,
                "cpu_us_beyond_ping": hit_cpu - ping_cpu,
                "redis_us_per_hit_script": statistics.median(server_us[key]),
                "target": f">= {TARGET_HITS_PER_S}/s (aim: >= {AIM_PING_RATIO} x PING)",
                "ok": hits >= TARGET_HITS_PER_S,
                "aim_met": hits / ping >= AIM_PING_RATIO,
            }
        )
    return {
        "ping_per_s": ping,
        "ping_cpu_us": ping_cpu,
        "empty_script_per_s": empty,
        "empty_script_cpu_us": statistics.median(cpu["empty script"]),
        "empty_script_redis_us": statistics.median(server_us["empty script"]),
        "load_average": os.getloadavg(),
        "rows": rows,
        "rounds": rounds,
        "count": count,
    }


def _script_stats(client: Any) -> tuple[int, int]:
    """Return how many scripts and functions Redis has run, and the microseconds they took.

    A hit is ``FCALL`` (a Redis Function) where the server has functions, else ``EVALSHA``.
    """
    every = client.info("commandstats")
    calls = usec = 0
    for command in ("cmdstat_evalsha", "cmdstat_fcall"):
        calls += int(every.get(command, {}).get("calls", 0))
        usec += int(every.get(command, {}).get("usec", 0))
    return calls, usec


def profile_hit(index: str, workdir: Path, count: int) -> None:
    """Print the functions a verified 4 KiB hit spends its Python time in."""
    from django.core.files.base import ContentFile

    from dedupstore import DedupStorage

    storage = DedupStorage(
        inner={
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(workdir / "profiled")},
        },
        index=index,
        namespace="bench-hits-profile",
    )
    payload = os.urandom(4096)
    storage.save("hit.bin", ContentFile(payload))
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(count):
        storage.save("hit.bin", ContentFile(payload))
    profiler.disable()
    pstats.Stats(profiler).sort_stats(os.environ.get("BENCH_SORT", "tottime")).print_stats(
        int(os.environ.get("BENCH_TOP", "20"))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer hits per round")
    parser.add_argument("--profile", action="store_true", help="profile a verified hit")
    args = parser.parse_args()
    setup_django()
    from dedupstore.testing.redis import RedisServer

    with RedisServer() as server, tempfile.TemporaryDirectory(prefix="dedupbench-") as tmp:
        if args.profile:
            profile_hit(server.url, Path(tmp), 5000)
            return
        count, rounds = (1000, 5) if args.quick else (5000, 7)
        results = {"machine": machine(), "quick": args.quick}
        results["hits"] = bench_hits(server.url, Path(tmp), count, rounds)
    hits = results["hits"]
    print(
        f"PING: {hits['ping_per_s']:.0f}/s, {hits['ping_cpu_us']:.1f} µs CPU each (redis-py, "
        f"same run; load average {hits['load_average'][0]:.1f})"
    )
    print(
        f"Empty script (EVALSHA 'return 1'): {hits['empty_script_per_s']:.0f}/s, "
        f"{hits['empty_script_cpu_us']:.1f} µs CPU, {hits['empty_script_redis_us']:.1f} µs in Redis"
    )
    print(
        f"{'case':<52} {'hits/s':>7} {'x PING':>7} {'x empty':>7} {'CPU µs':>7} {'+PING':>6} "
        f"{'Redis µs':>8}  >=3000  0.8x"
    )
    for row in hits["rows"]:
        print(
            f"{row['case']:<52} {row['hits_per_s']:>7.0f} {row['ratio_to_ping']:>7.2f} "
            f"{row['ratio_to_empty_script']:>7.2f} {row['cpu_us_per_hit']:>7.1f} "
            f"{row['cpu_us_beyond_ping']:>6.1f} {row['redis_us_per_hit_script']:>8.1f}  "
            f"{row['ok']!s:<6}  {row['aim_met']}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "hits.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {RESULTS / 'hits.json'}")


if __name__ == "__main__":
    main()
