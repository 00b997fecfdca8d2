"""Benchmark ``manage.py dedupstore`` and the database guard, side by side in one run.

- ``verify`` and ``reconcile``: rows per second with ``--rows`` rows (default 20,000; the
  issue's figure is 10^6) in a private PostgreSQL and the index on one private Redis, and
  the peak RSS growth while each runs (sampled every 20 ms);
- ``adopt`` over ``FileSystemStorage`` against raw BLAKE3 over the same files, for each
  file size of ``ADOPT_MIX`` (64 KiB, 1 MiB, 4 MiB);
- the guard's cost on the last-reference delete (the guard's queries with ``--rows`` rows
  in the table) in SQLite and in PostgreSQL, as a ratio to the same delete unguarded;
- the queries the guard adds to saves, hits and non-last deletes
  (``CaptureQueriesContext``; the test ``tests/test_db_guard.py`` asserts it too).

Prints a table and writes ``benchmarks/results/ops.json``. Run:
``python benchmarks/bench_ops.py [--rows N]``. Everything runs on loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

try:
    from _support import RESULTS, KiB, MiB, machine, setup_django
except ImportError:  # run as `python -m benchmarks.bench_ops`
    from benchmarks._support import RESULTS, KiB, MiB, machine, setup_django

import psutil

#: The issue's targets.
TARGET_ROWS_PER_S = 50_000
TARGET_RSS_GROWTH = 64 * MiB
TARGET_ADOPT_RATIO = 0.8


@contextmanager
def peak_rss() -> Iterator[dict[str, int]]:
    """Sample this process's RSS every 20 ms; yield a dict that gets ``growth`` (bytes)."""
    process = psutil.Process()
    start = process.memory_info().rss
    peak = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result: dict[str, int] = {}
    try:
        yield result
    finally:
        done.set()
        sampler.join()
        result["growth"] = max(peak[0], process.memory_info().rss) - start


def configure(workdir: Path, redis_url: str, postgres: dict[str, object]) -> None:
    inner = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(workdir / "media")},
    }
    dedup = {"BACKEND": "dedupstore.DedupStorage"}
    setup_django(
        empty_storages=False,
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "dedupstore",
            "tests.testapp",
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(workdir / "bench.sqlite3"),
            },
            "postgres": postgres,
        },
        MEDIA_ROOT=str(workdir / "media"),
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "plain": inner,
            # tests.testapp's models name these storages; the benchmark uses "ops".
            "dedup": {**dedup, "OPTIONS": {"inner": "plain", "index": "locmem://bench"}},
            "live": {**dedup, "OPTIONS": {"inner": "plain", "index": "locmem://bench-live"}},
            "ops": {**dedup, "OPTIONS": {"inner": inner, "index": redis_url, "namespace": "b"}},
        },
        LOGGING_CONFIG=None,
    )
    from django.core.management import call_command

    for alias in ("default", "postgres"):
        call_command("migrate", database=alias, verbosity=0)


def fill(rows: int, using: str, workdir: Path) -> list[str]:
    """Make ``rows`` Clip rows in ``using``, each naming an empty file, all recorded."""
    from django.core.files.storage import storages

    from tests.testapp.models import Clip

    storage = storages["ops"]
    names = [f"clips/{number % 1000:03d}/{number}.bin" for number in range(rows)]
    media = workdir / "media"
    for number in range(1000):
        (media / "clips" / f"{number:03d}").mkdir(parents=True, exist_ok=True)
    for name in names:
        (media / name).touch()
    for start in range(0, rows, 10_000):
        Clip.objects.using(using).bulk_create(
            [Clip(video=name) for name in names[start : start + 10_000]]
        )
    # The records, written by add_record's script, pipelined (the benchmark's set-up only;
    # the key layout packs records, so they cannot be written as hashes).
    index = storage.index
    client = index.client
    sha = client.script_load(index._add_record.script)
    pipeline = client.pipeline(transaction=False)
    for number, name in enumerate(names):
        digest = f"{number:064x}"
        keys = [
            index._record_prefix + name,
            index._map_prefix + digest,
            index._tombstone_prefix + name,
            index._reservation_prefix + name,
            index._quarantine_prefix + name,
            index._stats_key,
        ]
        pipeline.evalsha(sha, len(keys), *keys, digest, 0, len(name), 1, name, index._record_prefix)
        if number % 10_000 == 9_999:
            pipeline.execute()
    pipeline.execute()
    return names


def bench_verify_reconcile(rows: int, workdir: Path) -> dict[str, Any]:
    from django.core.files.storage import storages

    from dedupstore.marker import initialise_index
    from dedupstore.ops.reconcile import reconcile, recount
    from dedupstore.ops.verify import verify

    storage = storages["ops"]
    started = time.perf_counter()
    fill(rows, "postgres", workdir)
    setup_seconds = time.perf_counter() - started
    initialise_index(storage)
    recount(storage)
    results: dict[str, Any] = {"rows": rows, "setup_seconds": round(setup_seconds, 1)}
    for name, run in (
        ("verify", lambda: verify(storage, where="ops", orphans=False, save_result=False)),
        ("reconcile", lambda: reconcile(storage, where="ops")),
    ):
        with peak_rss() as memory:
            started = time.perf_counter()
            report = run()
            elapsed = time.perf_counter() - started
        results[name] = {
            "seconds": round(elapsed, 2),
            "rows_per_s": round(rows / elapsed),
            "peak_rss_growth_mib": round(memory["growth"] / MiB, 1),
            "ok": report.ok,
        }
    return results


#: The files adopt hashes in the benchmark: (count, size) per run, small to large. What
#: sites adopt is mostly images and documents of tens of KiB to a few MiB, and video.
ADOPT_MIX = ((2000, 64 * KiB), (256, MiB), (64, 4 * MiB))


def bench_adopt(files: int, size: int, workdir: Path, rounds: int = 5) -> dict[str, Any]:
    """Adopt ``files`` files of ``size`` bytes; hash the same files with raw BLAKE3.

    Raw BLAKE3 is timed two ways, ``update_mmap`` on every core and on one thread, and
    the faster median is the reference. Medians of ``rounds`` alternated runs of each
    (the records are dropped between).
    """
    import blake3
    from django.core.files.storage import storages

    from dedupstore.index.redis import tagged_prefix
    from dedupstore.ops.adopt import adopt
    from tests.testapp.models import Reel

    storage = storages["ops"]
    folder = workdir / "media" / f"reels-{size}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(files):
        path = folder / f"{number}.bin"
        path.write_bytes(os.urandom(size))
        paths.append(str(path))
    Reel.objects.all().delete()
    Reel.objects.bulk_create([Reel(film=f"{folder.name}/{number}.bin") for number in range(files)])

    def raw(threads: int) -> None:
        for path in paths:
            hasher = blake3.blake3(max_threads=threads)
            hasher.update_mmap(path)
            hasher.digest()

    def forget_records() -> None:
        # Each round adopts the files anew: drop the records and content map it made.
        client = storage.index.client
        prefix = tagged_prefix(storage.namespace)
        # Layout 3: the record and map buckets, the holders, their growth state, the counters.
        for kind in ("b", "m", "h"):
            keys = list(client.scan_iter(match=f"{prefix}:{kind}:*", count=1000))
            if keys:
                client.delete(*keys)
        client.delete(f"{prefix}:l", f"{prefix}:s")

    raw(blake3.blake3.AUTO)  # warm the page cache for both
    # Alternate the three, ROUNDS times, and compare the medians: the machine is shared.
    auto_times, one_times, adopt_times = [], [], []
    for _ in range(rounds):
        for times, threads in ((auto_times, blake3.blake3.AUTO), (one_times, 1)):
            started = time.perf_counter()
            raw(threads)
            times.append(time.perf_counter() - started)
        forget_records()
        started = time.perf_counter()
        report = adopt(storage, where="ops")
        adopt_times.append(time.perf_counter() - started)
        assert report.findings["recorded"].count == files, report.as_text()
    raw_seconds = min(statistics.median(auto_times), statistics.median(one_times))
    adopt_seconds = statistics.median(adopt_times)
    total = files * size
    return {
        "files": files,
        "file_bytes": size,
        "rounds": rounds,
        "raw_all_cores_mb_per_s": round(total / statistics.median(auto_times) / 1e6),
        "raw_one_thread_mb_per_s": round(total / statistics.median(one_times) / 1e6),
        "raw_blake3_mb_per_s": round(total / raw_seconds / 1e6),
        "adopt_mb_per_s": round(total / adopt_seconds / 1e6),
        "adopt_vs_raw": round(raw_seconds / adopt_seconds, 3),
    }


def _median_delete(storage: Any, count: int, label: str) -> float:
    """Save ``count`` distinct files no row holds, then time deleting each (median µs)."""
    from django.core.files.base import ContentFile

    names = [
        storage.save(f"clips/guard/{label}-{n}.bin", ContentFile(os.urandom(32)))
        for n in range(count)
    ]
    times = []
    for name in names:
        started = time.perf_counter()
        storage.delete(name)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def bench_guard(rows: int, count: int, workdir: Path, names: list[str]) -> dict[str, Any]:
    """The last-reference delete with and without the guard, SQLite then PostgreSQL rows."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import storages
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    from dedupstore import DedupStorage
    from tests.testapp.models import Clip

    guarded = storages["ops"]
    unguarded = DedupStorage(
        inner=guarded.inner_config,
        index=guarded.index_url,
        namespace=guarded.namespace,
        db_guard=False,
    )
    # The SQLite table gets the same rows as PostgreSQL's (files and records exist).
    for start in range(0, rows, 10_000):
        Clip.objects.using("default").bulk_create(
            [Clip(video=name) for name in names[start : start + 10_000]]
        )
    results: dict[str, Any] = {"rows_per_database": rows, "deletes": count}
    rounds = [
        (
            _median_delete(guarded, count, f"g{r}"),
            _median_delete(unguarded, count, f"u{r}"),
        )
        for r in range(3)
    ]
    guarded_us = statistics.median(g for g, _ in rounds)
    unguarded_us = statistics.median(u for _, u in rounds)
    results["last_delete_guarded_us"] = round(guarded_us)
    results["last_delete_unguarded_us"] = round(unguarded_us)
    results["guard_cost_ratio"] = round(guarded_us / unguarded_us, 2)
    # The guard's own queries on a last delete, per database (one COUNT per field).
    name = guarded.save("clips/guard/queries.bin", ContentFile(b"queries"))
    with (
        CaptureQueriesContext(connections["default"]) as sqlite,
        CaptureQueriesContext(connections["postgres"]) as postgres,
    ):
        guarded.delete(name)
    results["last_delete_queries"] = {"sqlite": len(sqlite), "postgresql": len(postgres)}
    # And none on saves, hits and non-last deletes.
    with (
        CaptureQueriesContext(connections["default"]) as sqlite,
        CaptureQueriesContext(connections["postgres"]) as postgres,
    ):
        first = guarded.save("clips/guard/shared.bin", ContentFile(b"shared twice"))
        assert guarded.save("clips/guard/again.bin", ContentFile(b"shared twice")) == first
        guarded.delete(first)  # one reference left
    results["queries_on_save_hit_non_last_delete"] = len(sqlite) + len(postgres)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows (the issue: 1000000)")
    parser.add_argument("--deletes", type=int, default=200, help="deletes per guard round")
    args = parser.parse_args()

    from dedupstore.testing.postgres import PostgresServer
    from dedupstore.testing.redis import RedisServer

    with (
        tempfile.TemporaryDirectory(prefix="dedupstore-bench-ops-") as folder,
        RedisServer() as redis_server,
        PostgresServer() as postgres_server,
    ):
        workdir = Path(folder)
        configure(workdir, redis_server.url, postgres_server.settings_dict())
        results: dict[str, Any] = {"date": date.today().isoformat(), "machine": machine()}
        # adopt first: on empty tables it hashes the files and little else.
        results["adopt"] = [bench_adopt(files, size, workdir) for files, size in ADOPT_MIX]
        results["verify_reconcile"] = bench_verify_reconcile(args.rows, workdir)
        names = [f"clips/{number % 1000:03d}/{number}.bin" for number in range(args.rows)]
        results["guard"] = bench_guard(args.rows, args.deletes, workdir, names)
    _print(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ops.json").write_text(json.dumps(results, indent=2) + "\n")


def _size(size: int) -> str:
    return f"{size // MiB} MiB" if size >= MiB else f"{size // KiB} KiB"


def _print(results: dict[str, Any]) -> None:
    verify = results["verify_reconcile"]
    guard = results["guard"]
    lines: list[tuple[str, str, str]] = [
        ("what", "target", "measured"),
        (
            f"verify, {verify['rows']:,} rows in PostgreSQL",
            f">= {TARGET_ROWS_PER_S:,} rows/s, RSS +64 MiB",
            f"{verify['verify']['rows_per_s']:,} rows/s, "
            f"+{verify['verify']['peak_rss_growth_mib']} MiB",
        ),
        (
            f"reconcile, {verify['rows']:,} rows in PostgreSQL",
            f">= {TARGET_ROWS_PER_S:,} rows/s, RSS +64 MiB",
            f"{verify['reconcile']['rows_per_s']:,} rows/s, "
            f"+{verify['reconcile']['peak_rss_growth_mib']} MiB",
        ),
        (
            f"last-reference delete, guarded vs not ({guard['rows_per_database']:,} rows "
            "each in SQLite and PostgreSQL)",
            "",
            f"{guard['guard_cost_ratio']}x ({guard['last_delete_guarded_us']:,} vs "
            f"{guard['last_delete_unguarded_us']:,} µs; queries "
            f"{guard['last_delete_queries']})",
        ),
        (
            "queries the guard adds to a save, a hit and a non-last delete",
            "0",
            str(guard["queries_on_save_hit_non_last_delete"]),
        ),
    ]
    for run in results["adopt"]:
        lines.insert(
            -2,
            (
                f"adopt vs raw BLAKE3, {run['files']:,} files x {_size(run['file_bytes'])}",
                f">= {TARGET_ADOPT_RATIO}x",
                f"{run['adopt_vs_raw']}x ({run['adopt_mb_per_s']:,} vs "
                f"{run['raw_blake3_mb_per_s']:,} MB/s)",
            ),
        )
    widths = [max(len(row[i]) for row in lines) for i in range(3)]
    for row in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
