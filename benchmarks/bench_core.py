"""Benchmark DedupStorage's core against raw BLAKE3 and raw FileSystemStorage, side by side.

Prints a table and writes ``benchmarks/results/core.json``. Every figure is a ratio of two
things measured in this one run (medians of several repetitions), because the machines
are shared and noisy. Run: ``python benchmarks/bench_core.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    from _support import RESULTS, ROOT, InnerCalls, MiB, machine, setup_django
except ImportError:  # run as `python -m benchmarks.bench_core`
    from benchmarks._support import RESULTS, ROOT, InnerCalls, MiB, machine, setup_django


def median_time(func: Callable[[], object], repeat: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        func()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def make_dedup(index: str, location: str, namespace: str, **options: Any) -> Any:
    from dedupstore import DedupStorage

    return DedupStorage(
        inner={
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": location},
        },
        index=index,
        namespace=namespace,
        **options,
    )


def bench_hashing(index: str, workdir: Path, size: int, repeat: int) -> list[dict[str, Any]]:
    """Hashing inside save() (a hit: hash + one round trip) against raw BLAKE3."""
    from blake3 import blake3
    from django.core.files.base import ContentFile
    from django.core.files.uploadedfile import TemporaryUploadedFile

    data = os.urandom(size)
    storage = make_dedup(index, str(workdir / "hash"), "bench-hash")
    rows = []

    upload = TemporaryUploadedFile("big.bin", None, size, None)
    upload.write(data)
    upload.flush()
    path = upload.temporary_file_path()
    storage.save("big.bin", ContentFile(data))  # stored once: every timed save is a hit
    raw = median_time(lambda: blake3(max_threads=blake3.AUTO).update_mmap(path), repeat)
    ours = median_time(lambda: storage.save("big.bin", upload), repeat)
    rows.append(
        {
            "case": f"hash in save(), {size // MiB} MiB TemporaryUploadedFile",
            "baseline": "blake3(max_threads=AUTO).update_mmap(path)",
            "baseline_s": raw,
            "ours_s": ours,
            "speed_ratio": raw / ours,
            "target": ">= 0.85",
            "ok": raw / ours >= 0.85,
            "gb_per_s": size / ours / 1e9,
        }
    )
    upload.close()

    content = ContentFile(data)
    raw = median_time(lambda: blake3(data), repeat)
    ours = median_time(lambda: storage.save("big.bin", content), repeat)
    rows.append(
        {
            "case": f"hash in save(), {size // MiB} MiB in-memory ContentFile",
            "baseline": "blake3(data)",
            "baseline_s": raw,
            "ours_s": ours,
            "speed_ratio": raw / ours,
            "target": ">= 0.85",
            "ok": raw / ours >= 0.85,
            "gb_per_s": size / ours / 1e9,
        }
    )
    return rows


def bench_chunk_sizes(workdir: Path, size: int) -> list[dict[str, Any]]:
    """The streaming path (no fileno, seekable) at several chunk sizes."""
    import io

    from django.core.files.base import File

    from dedupstore.hashing import ContentHasher

    class Stream(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return True

        def seek(self, offset: int, whence: int = 0) -> int:
            return self._inner.seek(offset, whence)

        def readinto(self, buffer: Any) -> int:
            return self._inner.readinto(buffer)

    data = os.urandom(size)
    rows = []
    for chunk in (64 * 1024, 256 * 1024, MiB, 4 * MiB, 16 * MiB):
        hasher = ContentHasher(key=b"k" * 32, chunk_size=chunk)
        seconds = median_time(lambda h=hasher: h.hash(File(Stream(data))), 3)
        rows.append({"chunk_size": chunk, "gb_per_s": size / seconds / 1e9})
    return rows


class RoundTrips:
    """Count the commands redis-py sends (each send is one round trip for a single call)."""

    def __init__(self) -> None:
        import redis.connection

        self.count = 0
        self._cls = redis.connection.AbstractConnection
        self._original = self._cls.send_packed_command
        counter = self

        def counting(conn: Any, command: Any, check_health: bool = True) -> None:
            counter.count += 1
            return counter._original(conn, command, check_health)

        self._cls.send_packed_command = counting  # type: ignore[method-assign]

    def undo(self) -> None:
        self._cls.send_packed_command = self._original  # type: ignore[method-assign]


def bench_hit(index: str, workdir: Path, count: int) -> dict[str, Any]:
    """4 KiB hits: index round trips and inner calls per save, and saves per second."""
    from django.core.files.base import ContentFile

    # verify_hits=False: the zero-inner-call hit (bench_hits.py measures both settings).
    storage = make_dedup(index, str(workdir / "hit"), "bench-hit", verify_hits=False)
    payload = os.urandom(4096)
    storage.save("hit.bin", ContentFile(payload))
    calls = InnerCalls(storage.inner)
    for _ in range(200):  # warm-up
        storage.save("hit.bin", ContentFile(payload))
    calls.reset()
    round_trips = RoundTrips()
    try:
        started = time.perf_counter()
        for _ in range(count):
            storage.save("hit.bin", ContentFile(payload))
        elapsed = time.perf_counter() - started
    finally:
        round_trips.undo()
    return {
        "case": "hit, 4 KiB, one process",
        "saves_per_s": count / elapsed,
        "index_round_trips_per_save": round_trips.count / count,
        "inner_calls": calls.total,
        "target": ">= 3000 saves/s, 1 round trip, 0 inner calls",
        "ok": count / elapsed >= 3000 and round_trips.count == count and calls.total == 0,
    }


def bench_miss(index: str, workdir: Path, size: int, repeat: int) -> list[dict[str, Any]]:
    """A 64 MiB miss through FileSystemStorage against the raw FileSystemStorage.save."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import FileSystemStorage
    from django.core.files.uploadedfile import TemporaryUploadedFile

    raw_storage = FileSystemStorage(location=str(workdir / "raw"))
    # One long-lived storage, as in a web process; every timed save has new content.
    storage = make_dedup(index, str(workdir / "miss"), "bench-miss")

    datas = [os.urandom(size) for _ in range(repeat + 1)]

    def temp_upload(data: bytes) -> TemporaryUploadedFile:
        upload = TemporaryUploadedFile("up.bin", None, len(data), None)
        upload.write(data)
        upload.flush()
        upload.seek(0)
        return upload

    def timed_save(target: Any, content: Any) -> tuple[float, bool]:
        """Save then delete; return the save's seconds and whether a temp file was moved."""
        path = getattr(content, "temporary_file_path", lambda: None)()
        started = time.perf_counter()
        name = target.save("bench.bin", content)
        elapsed = time.perf_counter() - started
        moved = path is not None and not os.path.exists(path)
        content.close()
        target.delete(name)
        return elapsed, moved

    timed_save(raw_storage, ContentFile(datas[-1]))  # warm-up
    timed_save(storage, ContentFile(datas[-1]))
    # Interleave the two so both see the same machine state.
    pairs = [
        (timed_save(raw_storage, ContentFile(d))[0], timed_save(storage, ContentFile(d))[0])
        for d in datas[:repeat]
    ]
    raw = statistics.median(r for r, _ in pairs)
    ours = statistics.median(o for _, o in pairs)
    rows = [
        {
            "case": f"miss, {size // MiB} MiB ContentFile -> FileSystemStorage",
            "baseline": "FileSystemStorage.save",
            "baseline_s": raw,
            "ours_s": ours,
            "time_ratio": ours / raw,
            "target": "<= 1.6x",
            "ok": ours / raw <= 1.6,
        }
    ]

    raw_runs, our_runs = [], []
    for data in datas[:repeat]:
        raw_runs.append(timed_save(raw_storage, temp_upload(data)))
        our_runs.append(timed_save(storage, temp_upload(data)))
    raw_t = statistics.median(t for t, _ in raw_runs)
    our_t = statistics.median(t for t, _ in our_runs)
    rows.append(
        {
            "case": f"miss, {size // MiB} MiB TemporaryUploadedFile -> FileSystemStorage",
            "baseline": "FileSystemStorage.save (a rename)",
            "baseline_s": raw_t,
            "ours_s": our_t,
            "time_ratio": our_t / raw_t,
            "moved_not_copied": all(m for _, m in our_runs),
            "note": "ours = hashing (mmap, threads) + rename; the raw save only renames",
            "target": "moved, not copied",
            "ok": all(m for _, m in our_runs),
        }
    )
    return rows


STREAM_CHILD = textwrap.dedent(
    """
    import io, json, os, resource, sys
    sys.path.insert(0, {root!r})
    import django
    from django.conf import settings
    settings.configure(SECRET_KEY="bench")
    django.setup()
    from django.core.files.base import File
    from dedupstore import DedupStorage

    class Pipe(io.RawIOBase):
        def __init__(self, total):
            self.left = total
            self.block = bytearray(os.urandom(1 << 20))
        def readable(self): return True
        def seekable(self): return False
        def readinto(self, buffer):
            count = min(len(buffer), self.left, len(self.block))
            self.block[:8] = self.left.to_bytes(8, "little")
            buffer[:count] = self.block[:count]
            self.left -= count
            return count

    storage = DedupStorage(
        inner={{"BACKEND": "django.core.files.storage.FileSystemStorage",
               "OPTIONS": {{"location": {location!r}}}}},
        index={index!r}, namespace="bench-stream")
    storage.save("warm.bin", File(Pipe(4 << 20), name="warm.bin"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    name = storage.save("stream.bin", File(Pipe({size}), name="stream.bin"))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    size = storage.size(name)
    storage.delete(name)
    print(json.dumps({{"growth_kib": after - before, "size": size}}))
    """
)


def bench_stream_memory(index: str, workdir: Path, size: int) -> dict[str, Any]:
    """Peak RSS growth while saving a non-seekable stream (in a fresh process)."""
    code = STREAM_CHILD.format(
        root=str(ROOT), location=str(workdir / "stream"), index=index, size=size
    )
    started = time.perf_counter()
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    elapsed = time.perf_counter() - started
    result = json.loads(output.strip().splitlines()[-1])
    growth = result["growth_kib"] / 1024
    return {
        "case": f"save a {size // MiB} MiB non-seekable stream",
        "peak_rss_growth_mib": growth,
        "stored_bytes": result["size"],
        "wall_s": elapsed,
        "target": "<= 64 MiB",
        "ok": growth <= 64 and result["size"] == size,
    }


def _concurrent_child(args: tuple[str, str, str, bytes, Any]) -> str:
    index, location, marks, payload, barrier = args
    setup_django(empty_storages=False, FILE_UPLOAD_TEMP_DIR=None)
    from django.core.files.base import ContentFile

    storage = make_dedup(index, location, "bench-concurrent")
    original = storage.inner._save  # the write hook DedupStorage calls

    def counted(*a: Any, **k: Any) -> str:
        Path(marks, str(os.getpid())).touch()
        return original(*a, **k)

    storage.inner._save = counted
    barrier.wait()
    return str(storage.save(f"c-{os.getpid()}.bin", ContentFile(payload)))


def bench_concurrency(index: str, workdir: Path, size: int, processes: int) -> dict[str, Any]:
    marks = workdir / "marks"
    marks.mkdir()
    payload = os.urandom(size)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(processes)
        jobs = [(index, str(workdir / "concurrent"), str(marks), payload, barrier)] * processes
        with context.Pool(processes) as pool:
            started = time.perf_counter()
            names = pool.map(_concurrent_child, jobs)
            elapsed = time.perf_counter() - started
    writes = len(list(marks.iterdir()))
    return {
        "case": f"{processes} processes save one new {size // MiB} MiB content",
        "inner_writes": writes,
        "distinct_names": len(set(names)),
        "wall_s": elapsed,
        "target": "1 inner write",
        "ok": writes == 1 and len(set(names)) == 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    args = parser.parse_args()
    setup_django(empty_storages=False, FILE_UPLOAD_TEMP_DIR=None)
    from dedupstore.testing.redis import RedisServer

    hash_size = 64 * MiB if args.quick else 256 * MiB
    stream_size = 256 * MiB if args.quick else 1024 * MiB
    repeat = 3 if args.quick else 7
    results: dict[str, Any] = {
        "machine": machine(),
        "quick": args.quick,
    }
    with RedisServer() as server, tempfile.TemporaryDirectory(prefix="dedupbench-") as tmp:
        workdir = Path(tmp)
        results["hashing"] = bench_hashing(server.url, workdir, hash_size, repeat)
        results["chunk_sizes"] = bench_chunk_sizes(workdir, 64 * MiB)
        results["hit"] = bench_hit(server.url, workdir, 3000 if args.quick else 20000)
        results["miss"] = bench_miss(server.url, workdir, 64 * MiB, repeat)
        results["stream_memory"] = bench_stream_memory(server.url, workdir, stream_size)
        results["concurrency"] = bench_concurrency(server.url, workdir, 64 * MiB, 8)
    print_table(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "core.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {RESULTS / 'core.json'}")


def print_table(results: dict[str, Any]) -> None:
    print(f"{'case':<62} {'figure':<38} {'target':<14} ok")
    for row in results["hashing"]:
        figure = f"{row['speed_ratio']:.2f}x raw ({row['gb_per_s']:.1f} GB/s)"
        print(f"{row['case']:<62} {figure:<38} {row['target']:<14} {row['ok']}")
    hit = results["hit"]
    figure = (
        f"{hit['saves_per_s']:.0f}/s, {hit['index_round_trips_per_save']:.2f} RT, "
        f"{hit['inner_calls']} inner"
    )
    print(f"{hit['case']:<62} {figure:<38} {'>= 3000/s':<14} {hit['ok']}")
    for row in results["miss"]:
        figure = (
            f"{row['time_ratio']:.2f}x ({row['ours_s'] * 1000:.1f} vs "
            f"{row['baseline_s'] * 1000:.1f} ms)"
        )
        if "moved_not_copied" in row:
            figure += " moved" if row["moved_not_copied"] else " COPIED"
        print(f"{row['case']:<62} {figure:<38} {row['target']:<14} {row['ok']}")
    row = results["stream_memory"]
    figure = f"+{row['peak_rss_growth_mib']:.1f} MiB peak RSS"
    print(f"{row['case']:<62} {figure:<38} {row['target']:<14} {row['ok']}")
    row = results["concurrency"]
    figure = f"{row['inner_writes']} inner write(s), {row['distinct_names']} name(s)"
    print(f"{row['case']:<62} {figure:<38} {row['target']:<14} {row['ok']}")
    print("\nstreaming hash path by chunk size (64 MiB):")
    for row in results["chunk_sizes"]:
        print(f"  {row['chunk_size'] // 1024:>6} KiB: {row['gb_per_s']:.2f} GB/s")


if __name__ == "__main__":
    main()
