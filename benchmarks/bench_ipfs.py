"""Benchmark DedupStorage over IPFS against the raw IPFS storage, side by side.

Prints a table and writes ``benchmarks/results/ipfs.json``. Every figure is a ratio of two
things measured in this one run (medians, raw and dedup runs interleaved), because the
machines are shared and noisy. The node is the embedded one, isolated to loopback (no
Kubo daemon installs here); the index is a private redis-server on loopback.

* miss: DedupStorage save of new content vs raw IPFS save of new content (64 MiB
  ``TemporaryUploadedFile``): target <= 1.10x.
* hit: DedupStorage save of content it already holds vs raw IPFS re-save of the same
  content: target >= 10x faster at 64 MiB, >= 5x at 1 MiB. Measured for each kind of
  content a save receives: Django's own uploads (``TemporaryUploadedFile`` above 2.5 MB,
  ``InMemoryUploadedFile`` below), uploads received through ``dedupstore.uploadhandler``
  (hashed while they arrived), and a ``ContentFile`` the application made.
* memory: opening and reading 1 GiB through DedupStorage(IPFS), in a fresh subprocess:
  peak RSS growth (``ru_maxrss``) target <= 64 MiB.

* replicas: a DedupStorage save of new content with ``replicas=1`` (returns once a
  Pinning Service API service reports ``pinned``: the project's test server, whose second
  embedded node on loopback fetches the bytes over bitswap) vs ``replicas=0`` (the remote
  pin is requested in the background), 64 MiB and 1 MiB. No target: the cost of waiting
  for a second copy.
* gateway: reading a 256 MiB object through the local gateway (``url()``, ``requests``,
  1 MiB chunks) vs ``open()`` on the storage (1 MiB reads), as throughput and ratio.

Written to ``benchmarks/results/ipfs_replicas_gateway.json``.

Run: ``python benchmarks/bench_ipfs.py [--quick] [--only core|replicas|gateway]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    from _support import RESULTS, ROOT, GiB, MiB, machine, setup_django, upload_of
except ImportError:  # run as `python -m benchmarks.bench_ipfs`
    from benchmarks._support import RESULTS, ROOT, GiB, MiB, machine, setup_django, upload_of

BACKEND = "dedupstore.backends.ipfs.IPFSStorage"


def in_memory_of(data: bytes) -> Any:
    import io

    from django.core.files.uploadedfile import InMemoryUploadedFile

    return InMemoryUploadedFile(
        io.BytesIO(data), "file", "upload.bin", "application/octet-stream", len(data), None
    )


def content_file_of(data: bytes) -> Any:
    """Content an application made itself (a generated report, a resized image)."""
    from django.core.files.base import ContentFile

    return ContentFile(data, name="upload.bin")


def received_of(handler_path: str) -> Callable[[bytes], Any]:
    """Make uploads the way Django's parser feeds a ``dedupstore.uploadhandler`` handler."""
    from django.utils.module_loading import import_string

    handler_class = import_string(handler_path)

    def make(data: bytes) -> Any:
        handler = handler_class()
        handler.handle_raw_input(None, {}, len(data), "boundary")
        try:
            handler.new_file("file", "upload.bin", "application/octet-stream", len(data))
        except Exception as exc:  # StopFutureHandlers: the memory handler took the file
            if type(exc).__name__ != "StopFutureHandlers":
                raise
        for start in range(0, len(data), 64 * 1024):
            handler.receive_data_chunk(data[start : start + 64 * 1024], start)
        return handler.file_complete(len(data))

    return make


CONTENT_KINDS: dict[str, Callable[[bytes], Any]] = {}


def content_kinds() -> dict[str, Callable[[bytes], Any]]:
    if not CONTENT_KINDS:
        CONTENT_KINDS.update(
            {
                "TemporaryUploadedFile": upload_of,
                "InMemoryUploadedFile": in_memory_of,
                "ContentFile": content_file_of,
                "received, temp file": received_of(
                    "dedupstore.uploadhandler.HashingTemporaryFileUploadHandler"
                ),
                "received, in memory": received_of(
                    "dedupstore.uploadhandler.HashingMemoryFileUploadHandler"
                ),
            }
        )
    return CONTENT_KINDS


def timed(func: Callable[[], object]) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def interleaved(
    raw: Callable[[int], Callable[[], object]],
    dedup: Callable[[int], Callable[[], object]],
    repeat: int,
) -> tuple[float, float]:
    """Median seconds of ``raw`` and ``dedup`` runs, alternated (after one warm-up each).

    Each factory gets the run number and returns the call to time, so a run can prepare
    its own (fresh) content outside the timed window.
    """
    raw_times, dedup_times = [], []
    raw(-1)()
    dedup(-1)()
    for run in range(repeat):
        pair = [(raw, raw_times), (dedup, dedup_times)]
        if run % 2:
            pair.reverse()
        for factory, times in pair:
            call = factory(run)
            times.append(timed(call))
    return statistics.median(raw_times), statistics.median(dedup_times)


def bench_miss(raw_storage: Any, dedup: Any, size: int, repeat: int) -> dict[str, Any]:
    """New content each run: raw IPFS add+pin vs hash + index + the same add+pin."""

    def factory(storage: Any) -> Callable[[int], Callable[[], object]]:
        def make(run: int) -> Callable[[], object]:
            upload = upload_of(os.urandom(size))

            def call() -> None:
                try:
                    storage.save("bench/miss.bin", upload)
                finally:
                    upload.close()

            return call

        return make

    raw, ddp = interleaved(factory(raw_storage), factory(dedup), repeat)
    return {
        "case": "miss (new content)",
        "size": size,
        "content": "TemporaryUploadedFile",
        "raw_s": raw,
        "dedup_s": ddp,
        "ratio": ddp / raw,
        "ratio_kind": "dedup/raw time",
        "target": "<= 1.10",
        "ok": ddp / raw <= 1.10,
    }


def bench_hit(raw_storage: Any, dedup: Any, size: int, repeat: int, *, kind: str) -> dict[str, Any]:
    """The same content again: raw IPFS re-add (node re-chunks and re-hashes) vs a hit.

    ``kind`` "received, ..." uploads went through dedupstore's hashing upload handlers,
    so the hit has no hashing pass left to do: the hashing happened while receiving.
    """
    data = os.urandom(size)
    make_content = content_kinds()[kind]
    first = dedup.save("bench/hit.bin", make_content(data))
    assert raw_storage.save("bench/hit.bin", make_content(data)) == first

    def factory(storage: Any) -> Callable[[int], Callable[[], object]]:
        def make(run: int) -> Callable[[], object]:
            content = make_content(data)

            def call() -> None:
                try:
                    assert storage.save("bench/hit.bin", content) == first
                finally:
                    content.close()

            return call

        return make

    raw, ddp = interleaved(factory(raw_storage), factory(dedup), repeat)
    hash_only = blake3_alone(data, make_content, repeat)
    target = 10.0 if size >= 64 * MiB else 5.0
    return {
        "case": "hit (same content again)",
        "size": size,
        "content": kind,
        "raw_s": raw,
        "dedup_s": ddp,
        "ratio": raw / ddp,
        "ratio_kind": "raw/dedup time (speed-up)",
        "blake3_alone_s": hash_only,
        "best_possible_ratio": raw / hash_only,
        "target": f">= {target:g}",
        "ok": raw / ddp >= target,
    }


def blake3_alone(data: bytes, make_content: Callable[[bytes], Any], repeat: int) -> float:
    """Median seconds of BLAKE3 alone over fresh content of the same kind: a hit's floor."""
    from blake3 import blake3

    times = []
    for _ in range(repeat):
        content = make_content(data)
        try:
            if hasattr(content, "temporary_file_path"):
                path = content.temporary_file_path()
                times.append(timed(lambda p=path: blake3(max_threads=blake3.AUTO).update_mmap(p)))
            else:
                times.append(timed(lambda: blake3(data, max_threads=blake3.AUTO).digest()))
        finally:
            content.close()
    return statistics.median(times)


_RSS_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    sys.path.insert(0, {root!r})
    import django
    from django.conf import settings
    settings.configure(SECRET_KEY="bench", USE_TZ=True, STORAGES={{}})
    django.setup()
    from dedupstore import DedupStorage
    storage = DedupStorage(
        inner={{"BACKEND": {backend!r}, "OPTIONS": {{"embedded_repo": {repo!r}}}}},
        index="locmem://rss",
    )
    name = {name!r}
    assert storage.exists(name)  # starts the node, lists pins: part of the baseline
    with storage.open(name) as warm:
        warm.read(1024 * 1024)
    page_kib = resource.getpagesize() // 1024
    def current_kib():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * page_kib
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    current_before = current_max = current_kib()
    total = 0
    with storage.open(name) as handle:
        for chunk in handle.chunks(4 * 1024 * 1024):
            total += len(chunk)
            current_max = max(current_max, current_kib())
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({{"bytes": total, "before_kib": before, "after_kib": after,
                      "current_before_kib": current_before, "current_max_kib": current_max}}))
    """
)


def bench_rss(workdir: Path, size: int) -> dict[str, Any]:
    """Add ``size`` bytes, then open and read them back in a fresh subprocess."""
    from dedupstore.backends.ipfs import IPFSStorage
    from dedupstore.backends.ipfs.embedded import get_node

    repo = workdir / "rss-repo"
    source = workdir / "rss-source.bin"
    with source.open("wb") as out:
        for _ in range(size // (4 * MiB)):
            out.write(os.urandom(4 * MiB))
    storage = IPFSStorage(embedded_repo=str(repo))
    from django.core.files.base import File

    started = time.perf_counter()
    with source.open("rb") as handle:
        name = storage.save("big.bin", File(handle))
    add_s = time.perf_counter() - started
    source.unlink()
    get_node(repo).stop()  # the child process opens the repo (one node per repo)
    child = _RSS_CHILD.format(root=str(ROOT), backend=BACKEND, repo=str(repo), name=name)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=600, check=False
    )
    read_s = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(done.stderr)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    growth_mib = (result["after_kib"] - result["before_kib"]) / 1024
    assert result["bytes"] == size, result
    return {
        "case": "open + read (DedupStorage over IPFS, subprocess)",
        "size": size,
        "add_s": add_s,
        "read_process_s": read_s,
        "baseline_peak_rss_mib": result["before_kib"] / 1024,
        "peak_rss_growth_mib": growth_mib,
        "current_rss_before_mib": result["current_before_kib"] / 1024,
        "current_rss_max_growth_mib": (result["current_max_kib"] - result["current_before_kib"])
        / 1024,
        "target": "<= 64 MiB",
        "ok": growth_mib <= 64,
    }


def bench_replicas(workdir: Path, redis_url: str, repeat: int) -> list[dict[str, Any]]:
    """replicas=1 vs replicas=0 through DedupStorage, new content each run."""
    import secrets

    from dedupstore import DedupStorage
    from dedupstore.backends.ipfs.embedded import get_node
    from dedupstore.testing.pinning_service import PinningServiceTestServer

    token = secrets.token_urlsafe(16)
    service_node = get_node(workdir / "service-repo")
    rows = []
    with PinningServiceTestServer(service_node, token=token) as service:
        services = [{"endpoint": service.endpoint, "token": token}]

        def dedup(replicas: int) -> Any:
            options = {
                "embedded_repo": str(workdir / "replicas-repo"),
                "pinning_services": services,
                "replicas": replicas,
                "timeout": 600,
            }
            return DedupStorage(
                inner={"BACKEND": BACKEND, "OPTIONS": options},
                index=redis_url,
                namespace=f"bench-{uuid.uuid4().hex}",
                db_guard=False,
            )

        none, one = dedup(0), dedup(1)
        for size, runs in [(64 * MiB, repeat), (MiB, repeat * 5)]:

            def factory(storage: Any, size: int = size) -> Callable[[int], Callable[[], object]]:
                def make(run: int) -> Callable[[], object]:
                    upload = upload_of(os.urandom(size))

                    def call() -> None:
                        try:
                            storage.save("bench/replica.bin", upload)
                        finally:
                            upload.close()

                    return call

                return make

            zero_s, one_s = interleaved(factory(none), factory(one), runs)
            rows.append(
                {
                    "case": "save, replicas=1 vs 0",
                    "size": size,
                    "replicas_0_s": zero_s,
                    "replicas_1_s": one_s,
                    "ratio": one_s / zero_s,
                    "ratio_kind": "replicas=1 / replicas=0 time",
                }
            )
    return rows


def bench_gateway(workdir: Path, size: int, repeat: int) -> dict[str, Any]:
    """Read ``size`` bytes through the local gateway vs ``open()``, interleaved."""
    import requests

    from dedupstore.backends.ipfs import IPFSStorage

    storage = IPFSStorage(embedded_repo=str(workdir / "gateway-repo"), timeout=600)
    upload = upload_of(os.urandom(size))
    try:
        name = storage.save("big.bin", upload)
    finally:
        upload.close()
    url = storage.url(name)
    session = requests.Session()
    session.trust_env = False

    def through_gateway(run: int) -> Callable[[], object]:
        def call() -> None:
            with session.get(url, stream=True, timeout=600) as response:
                response.raise_for_status()
                got = sum(len(chunk) for chunk in response.iter_content(MiB))
            assert got == size, got

        return call

    def through_open(run: int) -> Callable[[], object]:
        def call() -> None:
            got = 0
            with storage.open(name) as handle:
                while chunk := handle.read(MiB):
                    got += len(chunk)
            assert got == size, got

        return call

    open_s, gateway_s = interleaved(through_open, through_gateway, repeat)
    session.close()
    return {
        "case": "read through the local gateway vs open()",
        "size": size,
        "open_s": open_s,
        "gateway_s": gateway_s,
        "open_mib_s": size / MiB / open_s,
        "gateway_mib_s": size / MiB / gateway_s,
        "ratio": gateway_s / open_s,
        "ratio_kind": "gateway / open() time",
    }


def main_replicas_gateway(quick: bool, workdir_base: str | None) -> int:
    from dedupstore.backends.ipfs.embedded import stop_all_nodes
    from dedupstore.testing.redis import RedisServer

    repeat = 3 if quick else 5
    workdir = Path(tempfile.mkdtemp(prefix="bench-ipfs-", dir=workdir_base))
    try:
        with RedisServer() as redis:
            replicas = bench_replicas(workdir, redis.url, repeat)
        gateway = bench_gateway(workdir, 256 * MiB, repeat)
    finally:
        stop_all_nodes()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nreplicas and the local gateway (repeat={repeat}, medians, one run)\n")
    for row in replicas:
        print(
            f"save {row['size'] // MiB:>3} MiB: replicas=0 {row['replicas_0_s'] * 1000:8.1f} ms, "
            f"replicas=1 {row['replicas_1_s'] * 1000:8.1f} ms ({row['ratio']:.2f}x)"
        )
    print(
        f"read {gateway['size'] // MiB} MiB: open() {gateway['open_mib_s']:.0f} MiB/s, "
        f"local gateway {gateway['gateway_mib_s']:.0f} MiB/s "
        f"(gateway takes {gateway['ratio']:.2f}x the time)"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "ipfs_replicas_gateway.json"
    out.write_text(
        json.dumps(
            {"machine": machine(), "repeat": repeat, "replicas": replicas, "gateway": gateway},
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {out.relative_to(ROOT)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, 256 MiB RSS")
    parser.add_argument("--workdir", help="where node repos go (default: a temp dir)")
    parser.add_argument(
        "--only",
        choices=("all", "core", "replicas", "gateway"),
        default="all",
        help="core: miss/hit/memory; replicas or gateway: those two sections",
    )
    args = parser.parse_args()
    if args.only in ("replicas", "gateway"):
        setup_django()
        return main_replicas_gateway(args.quick, args.workdir)
    repeat = 3 if args.quick else 7
    rss_size = 256 * MiB if args.quick else GiB

    setup_django()
    from dedupstore import DedupStorage
    from dedupstore.backends.ipfs import IPFSStorage
    from dedupstore.backends.ipfs.embedded import stop_all_nodes
    from dedupstore.testing.redis import RedisServer

    workdir = Path(tempfile.mkdtemp(prefix="bench-ipfs-", dir=args.workdir))
    rows: list[dict[str, Any]] = []
    try:
        with RedisServer() as redis:
            repo = str(workdir / "repo")
            raw_storage = IPFSStorage(embedded_repo=repo)
            dedup = DedupStorage(
                inner={"BACKEND": BACKEND, "OPTIONS": {"embedded_repo": repo}},
                index=redis.url,
                namespace=f"bench-{uuid.uuid4().hex}",
            )
            rows.append(bench_miss(raw_storage, dedup, 64 * MiB, repeat))
            for size, kind in [
                (64 * MiB, "TemporaryUploadedFile"),
                (64 * MiB, "received, temp file"),
                (64 * MiB, "ContentFile"),
                (MiB, "InMemoryUploadedFile"),
                (MiB, "TemporaryUploadedFile"),
                (MiB, "received, in memory"),
            ]:
                runs = repeat if size > MiB else repeat * 5
                rows.append(bench_hit(raw_storage, dedup, size, runs, kind=kind))
        stop_all_nodes()
        rows.append(bench_rss(workdir, rss_size))
    finally:
        stop_all_nodes()
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\nDedupStorage over embedded IPFS (repeat={repeat}, medians, one run)\n")
    print(
        f"{'case':<26} {'size':>8} {'content':<22} {'raw':>9} {'dedup':>9} {'ratio':>8}"
        f"  {'target':<10} {'blake3 alone (floor)':>21}"
    )
    for row in rows[:-1]:
        floor = (
            f"{row['blake3_alone_s'] * 1000:>7.1f}ms ({row['best_possible_ratio']:.1f}x)"
            if "blake3_alone_s" in row
            else ""
        )
        print(
            f"{row['case']:<26} {row['size'] // MiB:>5} MiB {row['content']:<22} "
            f"{row['raw_s'] * 1000:>7.1f}ms {row['dedup_s'] * 1000:>7.1f}ms "
            f"{row['ratio']:>7.2f}x  {row['target']:<7} {'ok' if row['ok'] else 'MISSED':<6}"
            f"{floor:>18}"
        )
    rss = rows[-1]
    print(
        f"{rss['case']:<34} {rss['size'] // MiB:>5} MiB peak RSS growth "
        f"{rss['peak_rss_growth_mib']:.1f} MiB (baseline {rss['baseline_peak_rss_mib']:.0f} MiB;"
        f" current RSS +{rss['current_rss_max_growth_mib']:.1f} MiB at most)"
        f"  {rss['target']} {'ok' if rss['ok'] else 'MISSED'}"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "ipfs.json"
    out.write_text(
        json.dumps(
            {
                "machine": machine(),
                "repeat": repeat,
                "quick": args.quick,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {out.relative_to(ROOT)}")
    ok = all(row["ok"] for row in rows)
    if args.only == "all":
        main_replicas_gateway(args.quick, args.workdir)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
