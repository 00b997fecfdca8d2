"""`make bench`: what hashing every upload costs, and what deduplication saves, per backend.

Sets up a private redis-server, an isolated embedded IPFS node and the Appwrite test
server (each on loopback), runs the measurements with a progress bar, and writes
``benchmarks/results/``: ``report.md``, ``results.json`` and PNG charts. Quick by default
(a few minutes); ``--full`` runs the long sweep (up to 1 GiB inputs, bigger corpora).

Every comparison is measured side by side in this one run: medians of several
repetitions after a warm-up, reported as ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
import os
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

try:
    from _support import RESULTS, GiB, InnerCalls, KiB, MiB, machine, setup_django
except ImportError:  # run as `python -m benchmarks.bench_cost_and_savings`
    from benchmarks._support import RESULTS, GiB, InnerCalls, KiB, MiB, machine, setup_django


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}"
        size /= 1024
    return str(size)


def timed(func: Callable[[], object], *, min_time: float = 0.05, runs: int = 3) -> float:
    """Return the median seconds per call: loops of calls lasting >= ``min_time``."""
    func()  # warm-up
    started = time.perf_counter()
    func()
    once = max(time.perf_counter() - started, 1e-7)
    loops = max(1, int(min_time / once))
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        for _ in range(loops):
            func()
        samples.append((time.perf_counter() - started) / loops)
    return statistics.median(samples)


# -- 1. hash cost ------------------------------------------------------------------


def hash_functions(key: bytes) -> dict[str, Callable[[bytes], object]]:
    import xxhash
    from blake3 import blake3

    return {
        "blake3 (1 thread)": lambda d: blake3(d).digest(),
        "blake3 (AUTO threads)": lambda d: blake3(d, max_threads=blake3.AUTO).digest(),
        "blake3 keyed (AUTO)": lambda d: blake3(d, key=key, max_threads=blake3.AUTO).digest(),
        "sha256": lambda d: hashlib.sha256(d).digest(),
        "sha1": lambda d: hashlib.sha1(d).digest(),
        "md5": lambda d: hashlib.md5(d).digest(),
        "blake2b": lambda d: hashlib.blake2b(d).digest(),
        "xxh3_128 (not cryptographic)": lambda d: xxhash.xxh3_128(d).digest(),
    }


def bench_hash_cost(sizes: list[int], progress: Any) -> list[dict[str, Any]]:
    from blake3 import blake3
    from django.core.files.base import ContentFile, File

    from dedupstore.hashing import ContentHasher, derive_hash_key

    key = derive_hash_key("bench")
    hasher = ContentHasher(key=key)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-hash-") as tmp:
        for size in sizes:
            data = os.urandom(size)
            path = Path(tmp, "f.bin")
            path.write_bytes(data)
            min_time = 0.2 if size >= 64 * MiB else 0.05
            row: dict[str, Any] = {"size": size, "gb_per_s": {}}
            for name, func in hash_functions(key).items():
                row["gb_per_s"][f"memory: {name}"] = (
                    size / timed(lambda f=func, d=data: f(d), min_time=min_time) / 1e9
                )
            row["gb_per_s"]["file: blake3 update_mmap (AUTO)"] = (
                size
                / timed(
                    lambda p=path: blake3(max_threads=blake3.AUTO).update_mmap(p), min_time=min_time
                )
                / 1e9
            )
            row["gb_per_s"]["file: blake3 update_mmap (1 thread)"] = (
                size / timed(lambda p=path: blake3().update_mmap(p), min_time=min_time) / 1e9
            )

            def file_sha256(path: Path = path) -> None:
                with path.open("rb") as handle:
                    hashlib.file_digest(handle, "sha256")

            row["gb_per_s"]["file: sha256 (hashlib.file_digest)"] = (
                size / timed(file_sha256, min_time=min_time) / 1e9
            )
            content = ContentFile(data)
            ours_memory = size / timed(lambda c=content: hasher.hash(c), min_time=min_time) / 1e9

            def ours_file(path: Path = path) -> None:
                with path.open("rb") as handle:
                    hasher.hash(File(handle))

            ours_file_speed = size / timed(ours_file, min_time=min_time) / 1e9
            row["gb_per_s"]["memory: DedupStorage (ContentFile)"] = ours_memory
            row["gb_per_s"]["file: DedupStorage (File over a file)"] = ours_file_speed
            row["ours_vs_raw_blake3"] = {
                "memory": ours_memory / row["gb_per_s"]["memory: blake3 keyed (AUTO)"],
                "file": ours_file_speed / row["gb_per_s"]["file: blake3 update_mmap (AUTO)"],
            }
            rows.append(row)
            del data
            progress.update(1)
    return rows


# -- 2. hash share of a miss ---------------------------------------------------------


def make_dedup(run: Any, index: str, namespace: str, **options: Any) -> Any:
    from dedupstore import DedupStorage

    return DedupStorage(inner=run.inner, index=index, namespace=namespace, **options)


def bench_hash_share(
    run: Any, index: str, sizes: list[int], repeat: int, progress: Any
) -> list[dict[str, Any]]:
    from django.core.files.base import ContentFile

    storage = make_dedup(run, index, f"share-{random.random()}")
    rows = []
    for size in sizes:
        hash_times, save_times = [], []
        storage.save("warm.bin", ContentFile(os.urandom(size)))
        for _ in range(repeat):
            data = os.urandom(size)  # new content: every save is a miss
            content = ContentFile(data)
            started = time.perf_counter()
            storage.hasher.hash(content)
            hash_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            storage.save("miss.bin", ContentFile(data))
            save_times.append(time.perf_counter() - started)
        hashing, total = statistics.median(hash_times), statistics.median(save_times)
        rows.append(
            {
                "backend": run.name,
                "size": size,
                "hash_s": hashing,
                "miss_s": total,
                "rest_s": max(total - hashing, 0.0),
                "hash_share": hashing / total,
            }
        )
        progress.update(1)
    return rows


# -- 3. dedup economics --------------------------------------------------------------


def make_corpus(
    count: int, dup_rate: float, sizes: list[int], seed: int, salt: int = 0
) -> list[bytes]:
    """Return ``count`` payloads of which a share ``dup_rate`` repeat an earlier one.

    ``seed`` fixes the shape (sizes, which uploads repeat which); ``salt`` the bytes, so
    two corpora of one shape share no content.
    """
    shape = random.Random(seed)
    content = random.Random(f"{seed}-{salt}")
    corpus: list[bytes] = []
    for _ in range(count):
        if corpus and shape.random() < dup_rate:
            corpus.append(corpus[shape.randrange(len(corpus))])
        else:
            corpus.append(content.randbytes(sizes[shape.randrange(len(sizes))]))
    return corpus


#: Calls besides writes that do I/O on the backend (a stat, a read, a delete, a listing).
IO_METHODS = ("exists", "delete", "open", "size", "listdir")


class InnerSpy:
    """Count I/O calls and bytes that reach an inner storage object (the real calls run)."""

    def __init__(self, storage: Any) -> None:
        self.calls = InnerCalls(storage)
        self.bytes_written = 0
        self.objects_written = 0
        from django.core.files.storage import Storage

        # Writes end in the _save() hook, unless the storage overrides save() itself. A
        # storage that declares dedupstore_direct_save (Appwrite) overrides save() but is
        # written through _save() by DedupStorage: count both, once per write.
        methods = ["_save"] if type(storage).save is Storage.save else ["save"]
        if getattr(storage, "dedupstore_direct_save", False):
            methods = ["save", "_save"]
        writing = threading.local()

        def measured(write: Any) -> Any:
            def measured_write(name: str, content: Any, *args: Any, **kwargs: Any) -> str:
                if getattr(writing, "depth", 0):
                    return write(name, content, *args, **kwargs)
                self.bytes_written += content.size
                self.objects_written += 1
                writing.depth = 1
                try:
                    return write(name, content, *args, **kwargs)
                finally:
                    writing.depth = 0

            return measured_write

        for method in methods:
            setattr(storage, method, measured(getattr(storage, method)))


def stored_in_directory(inner: Any, directory: str) -> tuple[int, int] | None:
    """Return (bytes, objects) the backend itself holds under ``directory`` (an Appwrite
    bucket), asked with real requests after the timed part; None where it cannot list."""
    if not hasattr(inner, "dedupstore_stored_name"):
        return None
    _directories, files = inner.listdir(directory)
    return sum(inner.size(f"{directory}/{name}") for name in files), len(files)


def run_workload(
    run: Any, storage: Any, inner: Any, corpus: list[bytes], directory: str
) -> dict[str, Any]:
    from django.core.files.base import ContentFile

    # Connections, scripts, the directory (an Appwrite bucket is created on first use).
    storage.save(f"{directory}/warm-up.bin", ContentFile(b"warm-up"))
    spy = InnerSpy(inner)
    requests_before = run.requests() if run.requests else 0
    bytes_before = run.bytes_sent() or 0
    started = time.perf_counter()
    names = [
        storage.save(f"{directory}/upload-{i}.bin", ContentFile(data))
        for i, data in enumerate(corpus)
    ]
    elapsed = time.perf_counter() - started
    requests = (
        (run.requests() - requests_before)
        if run.requests
        else spy.objects_written + sum(spy.calls.counts[method] for method in IO_METHODS)
    )
    sent = run.bytes_sent()
    stored_bytes, stored_objects = spy.bytes_written, spy.objects_written
    held = stored_in_directory(inner, directory)
    if held is not None:
        # What the server really holds, less the warm-up file.
        stored_bytes, stored_objects = held[0] - len(b"warm-up"), held[1] - 1
    return {
        "wall_s": elapsed,
        "saves_per_s": len(corpus) / elapsed,
        "bytes_stored": stored_bytes,
        "objects_stored": stored_objects,
        "bytes_handed_to_inner": spy.bytes_written,
        "requests": requests,
        "bytes_sent": (sent - bytes_before) if sent is not None else None,
        "distinct_names": len(set(names)),
    }


def median_result(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Keep the counts of the first run (every run has the same shape) and median times."""
    merged = dict(results[0])
    merged["wall_s"] = statistics.median(r["wall_s"] for r in results)
    merged["saves_per_s"] = statistics.median(r["saves_per_s"] for r in results)
    merged["wall_s_runs"] = [r["wall_s"] for r in results]
    return merged


def bench_economics(
    run: Any,
    index: str,
    count: int,
    dup_rates: list[float],
    sizes: list[int],
    repeat: int,
    progress: Any,
) -> list[dict[str, Any]]:
    """Save one corpus shape through the raw storage and through DedupStorage.

    Each run gets its own bytes (same sizes, same duplicate pattern) and its own directory,
    so neither side can reuse what the other stored (an IPFS node keeps every block).
    Raw and dedup runs alternate; wall times are medians.
    """
    from django.core.files.storage import Storage
    from django.utils.module_loading import import_string

    rows = []
    backend = import_string(run.inner["BACKEND"])
    for rate in dup_rates:
        seed = int(rate * 100)
        raw_results, dedup_results = [], []
        for attempt in range(repeat):
            raw: Storage = backend(**run.inner.get("OPTIONS", {}))
            raw_corpus = make_corpus(count, rate, sizes, seed, salt=2 * attempt + 1)
            raw_results.append(run_workload(run, raw, raw, raw_corpus, f"raw{seed}-{attempt}"))
            corpus = make_corpus(count, rate, sizes, seed, salt=2 * attempt + 2)
            storage = make_dedup(run, index, f"economics-{rate}-{random.random()}")
            dedup_results.append(
                run_workload(run, storage, storage.inner, corpus, f"dedup{seed}-{attempt}")
            )
        raw_result, dedup_result = median_result(raw_results), median_result(dedup_results)
        rows.append(
            {
                "backend": run.name,
                "dup_rate": rate,
                "uploads": count,
                "bytes_uploaded": sum(len(d) for d in corpus),
                "raw": raw_result,
                "dedup": dedup_result,
            }
        )
        progress.update(1)
    return rows


# -- 4. scale ------------------------------------------------------------------------


def bench_index_memory(index: str, objects: int) -> dict[str, Any]:
    import redis
    from django.core.files.base import ContentFile

    from dedupstore import DedupStorage

    storage = DedupStorage(
        inner={"BACKEND": "django.core.files.storage.InMemoryStorage"},
        index=index,
        namespace="scale",
    )
    client = redis.Redis.from_url(index)
    client.flushdb()
    before = client.info("memory")["used_memory"]
    for number in range(objects):
        storage.save(
            f"uploads/2026/11/photo-{number:08d}.jpg", ContentFile(number.to_bytes(8, "little") * 8)
        )
    used = client.info("memory")["used_memory"] - before
    sample = [key for key, _ in zip(client.scan_iter("{scale}:*"), range(2000), strict=False)]
    per_key = [client.memory_usage(key) or 0 for key in sample]
    keys = client.dbsize()
    per_object_keys = statistics.mean(per_key) * keys / objects
    return {
        "objects": objects,
        "keys": keys,
        "used_memory_per_object": used / objects,
        "memory_usage_per_object": per_object_keys,
        "name_length": len("uploads/2026/11/photo-00000000.jpg"),
    }


def _hit_loop(args: tuple[str, float, Any]) -> int:
    index, seconds, barrier = args
    setup_django()
    from django.core.files.base import ContentFile

    from dedupstore import DedupStorage

    storage = DedupStorage(
        inner={"BACKEND": "django.core.files.storage.InMemoryStorage"},
        index=index,
        namespace="hits",
    )
    payload = b"h" * 4096
    storage.save("hit.bin", ContentFile(payload))
    barrier.wait()
    done, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        storage.save("hit.bin", ContentFile(payload))
        done += 1
    return done


def bench_hit_scaling(
    index: str, processes: list[int], seconds: float, progress: Any
) -> list[dict[str, Any]]:
    context = multiprocessing.get_context("spawn")
    rows = []
    for count in processes:
        with context.Manager() as manager:
            barrier = manager.Barrier(count)
            with context.Pool(count) as pool:
                done = pool.map(_hit_loop, [(index, seconds, barrier)] * count)
        rows.append({"processes": count, "saves_per_s": sum(done) / seconds})
        progress.update(1)
    return rows


# -- 5. peers ------------------------------------------------------------------------


def peers_status() -> list[dict[str, Any]]:
    """Read what ``bench_peers.py`` and ``bench_appwrite.py`` measured of other libraries."""
    rows: list[dict[str, Any]] = []
    peers_file = RESULTS / "peers.json"
    if peers_file.exists():
        for peer in json.loads(peers_file.read_text()):
            row = {
                "peer": peer["peer"],
                "version": peer.get("version") or "-",
                "status": peer["status"],
                "reason": peer.get("reason", ""),
                "runs": {},
            }
            for run in peer.get("runs", []):
                row["runs"][run["dup_rate"]] = {
                    "files_on_disk": run["files_on_disk"],
                    "bytes_on_disk": run["bytes_on_disk"],
                    "saves_per_s": run["saves_per_s"],
                    "read_back_ok": run["read_back_ok"],
                }
            delete = peer.get("delete")
            if isinstance(delete, dict):
                row["delete"] = delete.get("summary") or json.dumps(delete)[:200]
            rows.append(row)
    else:
        rows.append(
            {
                "peer": "(other Django dedup storages)",
                "version": "-",
                "status": "not measured in this run",
                "reason": "run `make bench` (it installs the peers in .venv-peers) or "
                "benchmarks/bench_peers.py",
                "runs": {},
            }
        )
    appwrite_file = RESULTS / "appwrite.json"
    if appwrite_file.exists():
        workload = json.loads(appwrite_file.read_text()).get("duplicate_workload") or {}
        shape = workload.get("workload", {})
        for row in workload.get("rows", []):
            rows.append(
                {
                    "peer": f"Appwrite: {row['storage']}",
                    "version": "-",
                    "status": "measured (bench_appwrite.py)",
                    "reason": (
                        f"{row['saves']} saves of {shape.get('distinct', '?')} distinct "
                        f"{human(row['size'])} files: {row['seconds']:.2f} s, {row['requests']} "
                        f"requests, {human(row['bytes_uploaded'])} up, "
                        f"{human(row['bytes_downloaded'])} down, every name holds its content: "
                        f"{row['every_name_holds_its_content']}"
                    ),
                    "runs": {},
                }
            )
    return rows


# -- report --------------------------------------------------------------------------


def charts(results: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    hash_rows = results["hash_cost"]
    if hash_rows:
        fig, ax = plt.subplots(figsize=(10, 6))
        for name in hash_rows[0]["gb_per_s"]:
            ax.plot(
                [r["size"] for r in hash_rows],
                [r["gb_per_s"][name] for r in hash_rows],
                marker="o",
                label=name,
                linewidth=2.5 if "DedupStorage" in name else 1.2,
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("input size (bytes)")
        ax.set_ylabel("GB/s")
        ax.set_title("Hash throughput by input size")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(RESULTS / "hash_cost.png", dpi=110)
        plt.close(fig)
        written.append("hash_cost.png")

    share = results["hash_share"]
    if share:
        backends = sorted({r["backend"] for r in share})
        fig, axes = plt.subplots(1, len(backends), figsize=(5 * len(backends), 4.5), squeeze=False)
        for ax, backend in zip(axes[0], backends, strict=True):
            rows = [r for r in share if r["backend"] == backend]
            labels = [human(r["size"]) for r in rows]
            hashing = [r["hash_s"] * 1000 for r in rows]
            rest = [r["rest_s"] * 1000 for r in rows]
            ax.bar(labels, hashing, label="hashing")
            ax.bar(labels, rest, bottom=hashing, label="inner write + index")
            ax.set_yscale("log")
            ax.set_title(backend)
            ax.set_ylabel("ms per miss")
            ax.legend(fontsize=8)
        fig.suptitle("Where the time of a miss goes")
        fig.tight_layout()
        fig.savefig(RESULTS / "hash_share.png", dpi=110)
        plt.close(fig)
        written.append("hash_share.png")

    economics = results["economics"]
    if economics:
        fig, (time_ax, bytes_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
        labels = [f"{r['backend'].split()[0]}\n{int(r['dup_rate'] * 100)} % dup" for r in economics]
        x = range(len(economics))
        width = 0.4
        time_ax.bar(
            [i - width / 2 for i in x], [r["raw"]["wall_s"] for r in economics], width, label="raw"
        )
        time_ax.bar(
            [i + width / 2 for i in x],
            [r["dedup"]["wall_s"] for r in economics],
            width,
            label="DedupStorage",
        )
        time_ax.set_xticks(list(x), labels, fontsize=7)
        time_ax.set_ylabel("wall time (s)")
        time_ax.set_title("Time to save the corpus")
        time_ax.legend()
        bytes_ax.bar(
            [i - width / 2 for i in x],
            [r["raw"]["bytes_stored"] / MiB for r in economics],
            width,
            label="raw",
        )
        bytes_ax.bar(
            [i + width / 2 for i in x],
            [r["dedup"]["bytes_stored"] / MiB for r in economics],
            width,
            label="DedupStorage",
        )
        bytes_ax.set_xticks(list(x), labels, fontsize=7)
        bytes_ax.set_ylabel("MiB written to the backend")
        bytes_ax.set_title("Bytes stored")
        bytes_ax.legend()
        fig.tight_layout()
        fig.savefig(RESULTS / "economics.png", dpi=110)
        plt.close(fig)
        written.append("economics.png")
    return written


def report(results: dict[str, Any], images: list[str]) -> str:
    lines = ["# dedupstore benchmark report", ""]
    machine = results["machine"]
    lines += [
        f"Machine: {machine['cpus']} vCPUs, Python {machine['python']}, "
        f"{machine['platform']}; mode: {'full' if results['full'] else 'quick'}; "
        f"{results['started']}.",
        "",
        "Every figure is a median of several runs after a warm-up, measured side by "
        "side in this one run.",
        "",
    ]
    if results["unavailable"]:
        lines += [
            "Backends not measured: "
            + "; ".join(f"{name} ({why})" for name, why in results["unavailable"].items()),
            "",
        ]

    lines += ["## 1. Hash cost (GB/s)", ""]
    rows = results["hash_cost"]
    if rows:
        names = list(rows[0]["gb_per_s"])
        lines.append("| hash | " + " | ".join(human(r["size"]) for r in rows) + " |")
        lines.append("|---|" + "---:|" * len(rows))
        for name in names:
            lines.append(
                f"| {name} | " + " | ".join(f"{r['gb_per_s'][name]:.2f}" for r in rows) + " |"
            )
        lines += [
            "",
            "DedupStorage's hashing path as a fraction of raw keyed BLAKE3 "
            "(memory) and of `update_mmap` (file):",
            "",
            "| size | memory | file |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {human(r['size'])} | {r['ours_vs_raw_blake3']['memory']:.2f}x | "
            f"{r['ours_vs_raw_blake3']['file']:.2f}x |"
            for r in rows
        ]
        lines += ["", "![hash cost](hash_cost.png)", ""]

    lines += [
        "## 2. Hash cost as a share of a miss",
        "",
        "| backend | size | hashing (ms) | inner write + index (ms) | hash share |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['backend']} | {human(r['size'])} | {r['hash_s'] * 1000:.2f} | "
        f"{r['rest_s'] * 1000:.2f} | {r['hash_share'] * 100:.1f} % |"
        for r in results["hash_share"]
    ]
    if "hash_share.png" in images:
        lines += ["", "![hash share](hash_share.png)"]
    lines.append("")

    lines += [
        "## 3. Dedup economics",
        "",
        "| backend | dup rate | uploads | uploaded | stored raw | stored dedup | "
        "requests raw | requests dedup | time raw (s) | time dedup (s) | "
        "saves/s raw | saves/s dedup |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["economics"]:
        raw, dedup = r["raw"], r["dedup"]
        lines.append(
            f"| {r['backend']} | {int(r['dup_rate'] * 100)} % | {r['uploads']} | "
            f"{human(r['bytes_uploaded'])} | {human(raw['bytes_stored'])} | "
            f"{human(dedup['bytes_stored'])} | {raw['requests']} | {dedup['requests']} | "
            f"{raw['wall_s']:.2f} | {dedup['wall_s']:.2f} | {raw['saves_per_s']:.0f} | "
            f"{dedup['saves_per_s']:.0f} |"
        )
    if "economics.png" in images:
        lines += ["", "![economics](economics.png)"]
    lines.append("")

    scale = results["scale"]
    memory = scale["index_memory"]
    per_object = memory["used_memory_per_object"]
    lines += [
        "## 4. Scale",
        "",
        f"Index memory: {per_object:.0f} bytes per stored object (Redis `used_memory` "
        f"growth over {memory['objects']} objects with "
        f"{memory['name_length']}-character names; `MEMORY USAGE` of the keys says "
        f"{memory['memory_usage_per_object']:.0f}). Each object has a record and a "
        "content-map entry; claims live only while a write runs.",
        "",
        f"- 10^6 objects: about {per_object * 1e6 / GiB:.2f} GiB of Redis memory: one "
        "small Redis instance.",
        f"- 10^9 objects: about {per_object * 1e9 / GiB:,.0f} GiB: beyond one "
        "machine's memory; the index would have to be sharded (Redis Cluster is not "
        "supported yet: the scripts compute keys), or names shortened.",
        "",
        "| processes | hit saves/s (4 KiB) |",
        "|---:|---:|",
    ]
    lines += [f"| {r['processes']} | {r['saves_per_s']:.0f} |" for r in scale["hits"]]
    lines += [
        "",
        "On 2 vCPUs shared by the clients and Redis, more than two client processes "
        "compete with Redis itself for the CPU.",
        "",
    ]

    lines += [
        "## 5. Peers",
        "",
        "Other Django storages that deduplicate, run on the same workload by "
        "`benchmarks/bench_peers.py` (installed in a throwaway virtualenv, never a "
        "dependency): files on disk and saves/s at each duplicate rate.",
        "",
        "| peer | version | status | 0 % dup | 30 % dup | 80 % dup | reason / notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for peer in results["peers"]:
        cells = []
        for rate in (0.0, 0.3, 0.8):
            run = peer["runs"].get(rate) or peer["runs"].get(str(rate))
            cells.append(
                f"{run['files_on_disk']} files, {run['saves_per_s']:.0f}/s" if run else "-"
            )
        note = peer["reason"].replace("|", "/")
        if peer.get("delete"):
            note += f" Delete of shared content: {peer['delete']}"
        lines.append(
            f"| {peer['peer']} | {peer['version']} | {peer['status']} | "
            + " | ".join(cells)
            + f" | {note} |"
        )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the long sweep")
    parser.add_argument("--backends", default="filesystem,ipfs,appwrite")
    args = parser.parse_args()
    setup_django()
    import _inner_storages
    from tqdm import tqdm

    from dedupstore.testing.redis import RedisServer

    full = args.full
    hash_sizes = [4 * KiB, 64 * KiB, MiB, 16 * MiB, 256 * MiB] + ([GiB] if full else [])
    share_sizes = [64 * KiB, MiB, 16 * MiB] + ([64 * MiB] if full else [])
    corpus_sizes = [4 * KiB, 64 * KiB, 512 * KiB] + ([4 * MiB] if full else [MiB])
    count = 400 if full else 80
    dup_rates = [0.0, 0.3, 0.8]
    wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    usable, missing = _inner_storages.available()
    usable = {k: v for k, v in usable.items() if k in wanted}
    missing = {k: v for k, v in missing.items() if k in wanted}
    hit_processes = [1, 2, 4]
    steps = (
        len(hash_sizes) + len(usable) * (len(share_sizes) + len(dup_rates)) + 1 + len(hit_processes)
    )
    results: dict[str, Any] = {
        "machine": machine(),
        "full": full,
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "unavailable": missing,
        "hash_share": [],
        "economics": [],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    with RedisServer() as redis_server, tqdm(total=steps, unit="step") as progress:
        progress.set_description("hash cost")
        results["hash_cost"] = bench_hash_cost(hash_sizes, progress)
        for name, factory in usable.items():
            ctx: AbstractContextManager[Any] = factory()
            with ctx as run:
                progress.set_description(f"hash share: {name}")
                results["hash_share"] += bench_hash_share(
                    run, redis_server.url, share_sizes, 5 if full else 3, progress
                )
                progress.set_description(f"economics: {name}")
                results["economics"] += bench_economics(
                    run,
                    redis_server.url,
                    count,
                    dup_rates,
                    corpus_sizes,
                    5 if full else 3,
                    progress,
                )
        progress.set_description("scale")
        memory = bench_index_memory(redis_server.url, 100_000 if full else 20_000)
        progress.update(1)
        hits = bench_hit_scaling(redis_server.url, hit_processes, 5.0 if full else 2.0, progress)
        results["scale"] = {"index_memory": memory, "hits": hits}
    results["peers"] = peers_status()
    (RESULTS / "results.json").write_text(json.dumps(results, indent=2))
    images = charts(results)
    (RESULTS / "report.md").write_text(report(results, images))
    print(io.StringIO(report(results, images)).getvalue())
    print(f"wrote {RESULTS}/report.md, results.json and {', '.join(images)}")


if __name__ == "__main__":
    main()
