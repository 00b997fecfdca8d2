"""Benchmark DedupStorage over Appwrite against plain Appwrite uploads, side by side.

Prints a table and writes ``benchmarks/results/appwrite.json``. Every ratio compares two
things measured in this one run (medians, interleaved), because the machines are shared
and noisy. Appwrite is the project's test server (``dedupstore.testing.appwrite``) on
127.0.0.1, so network time is loopback time: a real Appwrite adds latency and bandwidth
limits to every request a hit avoids. The index is a private redis-server on loopback.

* hit vs raw re-upload, 16 MiB ``TemporaryUploadedFile``: DedupStorage(AppwriteStorage)
  saving content it already holds vs AppwriteStorage uploading it again: target >= 10x
  faster; requests and bytes sent per save side by side.
* duplicate-heavy workload: the same ``FileField`` uploads (``upload_to`` plus the
  uploaded file's name, as a site's form gives them) through django-cloud-storages'
  ``AppWriteStorage`` (``CLOUD_STORAGE_CREATE_NEW_IF_SAME_CONTENT=False``, run in its own
  virtualenv given by ``--old-python``, if it installed) and through ours: requests,
  bytes moved each way, time, and whether every returned name holds its content.
* 1 GiB: saving and opening (reading through) in a fresh subprocess: peak RSS growth
  target <= 128 MiB, with a sampler of ``/proc/self/status`` for anonymous vs file-backed
  pages.

Run: ``python benchmarks/bench_appwrite.py [--quick] [--skip-1gib] [--old-python PATH]``.
To get the old package: ``python -m venv /tmp/dcs && /tmp/dcs/bin/pip install
django-cloud-storages 'appwrite>=27,<28'`` (never into the project's virtualenv).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    from _support import RESULTS, ROOT, GiB, MiB, machine, setup_django, upload_of
except ImportError:  # run as `python -m benchmarks.bench_appwrite`
    from benchmarks._support import RESULTS, ROOT, GiB, MiB, machine, setup_django, upload_of

PLAIN = "dedupstore.backends.appwrite.AppwriteStorage"


class Traffic:
    """Requests and bytes the test server saw during a block of work."""

    def __init__(self, server: Any) -> None:
        self.server = server

    def __enter__(self) -> Traffic:
        self.start = len(self.server.requests)
        return self

    def __exit__(self, *exc: object) -> None:
        records = self.server.requests[self.start :]
        self.requests = len(records)
        self.received = sum(r.bytes_received for r in records)
        self.sent = sum(r.bytes_sent for r in records)


def median_time(calls: list[Callable[[], object]]) -> float:
    times = []
    for call in calls:
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# -- hit vs raw re-upload ------------------------------------------------------------------


def bench_hit(server: Any, redis_url: str, size: int, repeat: int) -> dict[str, Any]:
    from dedupstore import DedupStorage
    from dedupstore.backends.appwrite import AppwriteStorage

    plain = AppwriteStorage(**server.storage_options())
    dedup = DedupStorage(
        inner={"BACKEND": PLAIN, "OPTIONS": server.storage_options()},
        index=redis_url,
        namespace=f"bench-{uuid.uuid4().hex}",
        reuse="content",
    )
    payload = os.urandom(size)
    dedup.save("hit/payload.bin", upload_of(payload))  # the first save: a miss
    plain.save("raw/payload.bin", upload_of(payload))  # warm the bucket and connections

    raw_times, hit_times, miss_times, plain_new_times = [], [], [], []
    raw_traffic, hit_traffic = [], []
    for _ in range(repeat):
        upload = upload_of(payload)
        with Traffic(server) as traffic:
            started = time.perf_counter()
            plain.save("raw/payload.bin", upload)
            raw_times.append(time.perf_counter() - started)
        raw_traffic.append(traffic)
        upload.close()
        upload = upload_of(payload)
        with Traffic(server) as traffic:
            started = time.perf_counter()
            dedup.save("hit/payload.bin", upload)
            hit_times.append(time.perf_counter() - started)
        hit_traffic.append(traffic)
        upload.close()
        # New content both ways, for the cost of a miss.
        fresh = os.urandom(size)
        upload = upload_of(fresh)
        started = time.perf_counter()
        dedup.save("miss/payload.bin", upload)
        miss_times.append(time.perf_counter() - started)
        upload.close()
        upload = upload_of(fresh[::-1])
        started = time.perf_counter()
        plain.save("rawnew/payload.bin", upload)
        plain_new_times.append(time.perf_counter() - started)
        upload.close()
    raw_s, hit_s = statistics.median(raw_times), statistics.median(hit_times)
    miss_s, new_s = statistics.median(miss_times), statistics.median(plain_new_times)
    return {
        "size": size,
        "content": "TemporaryUploadedFile",
        "raw_reupload_s": raw_s,
        "hit_s": hit_s,
        "speedup": raw_s / hit_s,
        "target": ">= 10",
        "ok": raw_s / hit_s >= 10,
        "raw_requests_per_save": statistics.median(t.requests for t in raw_traffic),
        "raw_bytes_sent_per_save": statistics.median(t.received for t in raw_traffic),
        "hit_requests_per_save": statistics.median(t.requests for t in hit_traffic),
        "hit_bytes_sent_per_save": statistics.median(t.received for t in hit_traffic),
        "miss_s": miss_s,
        "plain_new_s": new_s,
        "miss_overhead": miss_s / new_s,
    }


# -- duplicate-heavy workload --------------------------------------------------------------

#: What users upload, as a browser names them; a FileField with ``upload_to=UPLOAD_TO``
#: turns each into ``uploads/2026/05/<get_valid_name(file name)>``, which Appwrite stores
#: as ``05/<fileId>``: the name a save asks for is never the stored one.
UPLOAD_NAMES = [
    "logo.png",
    "Holiday Photo 1.jpg",
    "report-2026.pdf",
    "scan 3.png",
    "avatar_4.jpg",
    "Résumé 5.pdf",
]
UPLOAD_TO = "uploads/2026/05/"

WORKLOAD = """
import json, os, random, sys, time
import django
from django.conf import settings
settings.configure(
    SECRET_KEY="bench", USE_TZ=True, INSTALLED_APPS=[],
    APPWRITE_API_KEY=os.environ["AW_KEY"], APPWRITE_PROJECT_ID=os.environ["AW_PROJECT"],
    APPWRITE_BUCKET_ID="default", APPWRITE_API_ENDPOINT=os.environ["AW_ENDPOINT"],
    CLOUD_STORAGE_CREATE_NEW_IF_SAME_CONTENT=False, OVERWRITE_FILE=False,
    DEDUPSTORE_INDEX=os.environ.get("AW_INDEX", "locmem://bench"),
    DEDUPSTORE_NAMESPACE=os.environ.get("AW_NAMESPACE"),
)
django.setup()
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import models
kind = os.environ["AW_KIND"]
if kind == "old":
    from cloud_storages.backends.appwrite import AppWriteStorage
    storage = AppWriteStorage()
else:
    sys.path.insert(0, os.environ["AW_ROOT"])
    from dedupstore.backends.appwrite import AppWriteStorage
    storage = AppWriteStorage(**json.loads(os.environ.get("AW_OPTIONS", "{{}}")))
    # Warm up without a request: import the SDK, build the client, open the index.
    storage.inner.client, storage.index

class Upload(models.Model):
    file = models.FileField(upload_to={upload_to!r}, storage=storage)

    class Meta:
        app_label = "bench"

rng = random.Random(int(os.environ["AW_SEED"]))
distinct, saves, size = {distinct}, {saves}, {size}
upload_names = {upload_names!r}
contents = [rng.randbytes(size) for _ in range(distinct)]
names = []
started = time.perf_counter()
for i in range(saves):
    row = Upload()
    uploaded = upload_names[i % distinct]
    row.file.save(uploaded, SimpleUploadedFile(uploaded, contents[i % distinct]), save=False)
    names.append(row.file.name)
elapsed = time.perf_counter() - started
print(json.dumps({{"elapsed": elapsed, "names": names}}))
"""


def run_workload(
    server: Any,
    python: str,
    kind: str,
    *,
    distinct: int,
    saves: int,
    size: int,
    redis_url: str | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the workload in a subprocess with ``python``; count what the server saw."""
    from dedupstore.backends.appwrite import AppwriteStorage

    server.reset()
    script = WORKLOAD.format(
        distinct=distinct,
        saves=saves,
        size=size,
        upload_to=UPLOAD_TO,
        upload_names=UPLOAD_NAMES[:distinct],
    )
    env = {
        **os.environ,
        "AW_KEY": server.api_key,
        "AW_PROJECT": server.project_id,
        "AW_ENDPOINT": server.endpoint,
        "AW_KIND": kind,
        "AW_ROOT": str(ROOT),
        "AW_SEED": "1234",
        "AW_OPTIONS": json.dumps(options or {}),
        "AW_NAMESPACE": f"bench-{uuid.uuid4().hex}",
    }
    if redis_url:
        env["AW_INDEX"] = redis_url
    with Traffic(server) as traffic:
        done = subprocess.run(
            [python, "-c", script], env=env, capture_output=True, text=True, timeout=600
        )
    if done.returncode != 0:
        raise RuntimeError(f"{kind} workload failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    rng = random.Random(1234)
    contents = [rng.randbytes(size) for _ in range(distinct)]
    reader = AppwriteStorage(**server.storage_options(bucket_id="default"))
    buckets, top_files = reader.listdir("")
    correct = all(
        reader.open(name).read() == contents[i % distinct] for i, name in enumerate(result["names"])
    )
    return {
        "storage": kind,
        "saves": saves,
        "distinct": distinct,
        "size": size,
        "seconds": result["elapsed"],
        "requests": traffic.requests,
        "bytes_uploaded": traffic.received,
        "bytes_downloaded": traffic.sent,
        "files_stored": sum(len(reader.listdir(b)[1]) for b in buckets) + len(top_files),
        "every_name_holds_its_content": correct,
        "distinct_names_returned": len(set(result["names"])),
        "names_returned": sorted(set(result["names"])),
    }


# -- 1 GiB memory --------------------------------------------------------------------------

RSS_CHILD = """
import json, os, sys, threading, time
sys.path.insert(0, os.environ["AW_ROOT"])
import django
from django.conf import settings
settings.configure(SECRET_KEY="bench", USE_TZ=True, STORAGES={})
django.setup()
from django.core.files.base import File
from dedupstore import DedupStorage
from dedupstore.backends.appwrite import AppwriteStorage

def status():
    fields = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                fields[key] = int(value.split()[0])
    return fields

peaks = {}
def sample():
    while not stop.is_set():
        for key, value in status().items():
            peaks[key] = max(peaks.get(key, 0), value)
        time.sleep(0.01)

options = json.loads(os.environ["AW_OPTIONS"])
path, kind = os.environ["AW_PATH"], os.environ["AW_KIND"]
if kind == "plain":
    storage = AppwriteStorage(**options)
else:
    storage = DedupStorage(
        inner={"BACKEND": "dedupstore.backends.appwrite.AppwriteStorage", "OPTIONS": options},
        index=os.environ["AW_INDEX"], namespace="rss-" + os.urandom(6).hex(),
    )
storage.exists("warm/up.bin")  # build the client before the baseline
base = status()
stop = threading.Event()
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
started = time.perf_counter()
with open(path, "rb") as handle:
    name = storage.save("big/one-gib.bin", File(handle))
save_s = time.perf_counter() - started
save_peaks = dict(peaks)
peaks.clear()
started = time.perf_counter()
total = 0
with storage.open(name) as handle:
    while block := handle.read(1024 * 1024):
        total += len(block)
open_s = time.perf_counter() - started
stop.set()
sampler.join()
print(json.dumps({"base": base, "save_peaks": save_peaks, "open_peaks": peaks,
                  "save_s": save_s, "open_s": open_s, "bytes_read": total}))
"""


def bench_rss(server: Any, redis_url: str, size: int, workdir: Path) -> list[dict[str, Any]]:
    path = workdir / "one-gib.bin"
    block = os.urandom(16 * MiB)
    with open(path, "wb") as handle:
        for _ in range(size // len(block)):
            handle.write(block)
    rows = []
    for kind in ("plain", "dedup"):
        server.reset()
        env = {
            **os.environ,
            "AW_ROOT": str(ROOT),
            "AW_PATH": str(path),
            "AW_KIND": kind,
            "AW_INDEX": redis_url,
            "AW_OPTIONS": json.dumps(server.storage_options(bucket_id="default")),
        }
        done = subprocess.run(
            [sys.executable, "-c", RSS_CHILD], env=env, capture_output=True, text=True, timeout=900
        )
        if done.returncode != 0:
            raise RuntimeError(f"RSS child failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        base = result["base"]
        growth = {
            phase: {
                "rss_mib": (result[f"{phase}_peaks"]["VmRSS"] - base["VmRSS"]) / 1024,
                "anon_mib": (result[f"{phase}_peaks"]["RssAnon"] - base["RssAnon"]) / 1024,
                "file_mib": (result[f"{phase}_peaks"]["RssFile"] - base["RssFile"]) / 1024,
            }
            for phase in ("save", "open")
        }
        hwm_growth = (
            max(result["save_peaks"]["VmHWM"], result["open_peaks"]["VmHWM"]) - base["VmHWM"]
        ) / 1024
        rows.append(
            {
                "storage": "AppwriteStorage"
                if kind == "plain"
                else "DedupStorage(AppwriteStorage)",
                "size": size,
                "save_s": result["save_s"],
                "open_read_s": result["open_s"],
                "bytes_read": result["bytes_read"],
                "growth": growth,
                "peak_rss_growth_mib": hwm_growth,
                "peak_anon_growth_mib": max(g["anon_mib"] for g in growth.values()),
                "target": "<= 128 MiB",
                "ok_peak_rss": hwm_growth <= 128,
                "ok_anonymous": max(g["anon_mib"] for g in growth.values()) <= 128,
            }
        )
    path.unlink()
    return rows


# -- main ------------------------------------------------------------------------------------


def find_old_python(given: str | None) -> str | None:
    candidates = [given] if given else ["/tmp/dcs-venv/bin/python", "/tmp/dcs/bin/python"]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            check = subprocess.run(
                [candidate, "-c", "import cloud_storages.backends.appwrite"],
                capture_output=True,
                timeout=60,
            )
            if check.returncode == 0:
                return candidate
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no 1 GiB run")
    parser.add_argument("--skip-1gib", action="store_true")
    parser.add_argument("--old-python", help="python of a venv with django-cloud-storages")
    args = parser.parse_args()
    setup_django()

    from dedupstore.testing.appwrite import AppwriteTestServer
    from dedupstore.testing.redis import RedisServer

    repeat = 3 if args.quick else 7
    old_python = find_old_python(args.old_python)
    report: dict[str, Any] = {
        "machine": machine(),
        "repeat": repeat,
        "quick": args.quick,
        "server": "dedupstore.testing.appwrite.AppwriteTestServer on 127.0.0.1",
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench-appwrite-") as workdir,
        AppwriteTestServer(storage_limit=2 * GiB, data_dir=Path(workdir) / "server") as server,
        RedisServer() as redis_server,
    ):
        hit = bench_hit(server, redis_server.url, 16 * MiB, repeat)
        report["hit"] = hit
        print(f"\nDedupStorage over Appwrite (test server on loopback; medians of {repeat})\n")
        print(f"{'16 MiB save':<34}{'time':>10}{'requests':>10}{'bytes sent':>14}")
        print(
            f"{'raw re-upload (AppwriteStorage)':<34}{hit['raw_reupload_s'] * 1000:>8.1f}ms"
            f"{hit['raw_requests_per_save']:>10.0f}{hit['raw_bytes_sent_per_save']:>14,.0f}"
        )
        print(
            f"{'hit (DedupStorage)':<34}{hit['hit_s'] * 1000:>8.1f}ms"
            f"{hit['hit_requests_per_save']:>10.0f}{hit['hit_bytes_sent_per_save']:>14,.0f}"
        )
        print(
            f"speed-up {hit['speedup']:.1f}x (target >= 10: {'ok' if hit['ok'] else 'MISSED'}); "
            f"miss vs plain upload of new content: {hit['miss_overhead']:.2f}x"
        )

        workload = {"distinct": 6, "saves": 48, "size": MiB}
        rows = [
            run_workload(
                server,
                sys.executable,
                "ours (CREATE_NEW_IF_SAME_CONTENT=False: reuse='name')",
                redis_url=redis_server.url,
                **workload,
            ),
            run_workload(
                server,
                sys.executable,
                "ours (reuse='content')",
                redis_url=redis_server.url,
                options={"reuse": "content"},
                **workload,
            ),
        ]
        if old_python:
            rows.insert(0, run_workload(server, old_python, "old", **workload))
            rows[0]["storage"] = "django-cloud-storages (CREATE_NEW_IF_SAME_CONTENT=False)"
        else:
            report["old_package"] = "not installed: pass --old-python (see the docstring)"
        report["duplicate_workload"] = {"workload": workload, "rows": rows}
        print(
            f"\nDuplicate-heavy workload: {workload['saves']} saves of "
            f"{workload['distinct']} distinct 1 MiB files through a FileField "
            f"(upload_to={UPLOAD_TO!r}; upload i is {UPLOAD_NAMES[0]!r}... i%6, holding "
            "content i%6)\n"
        )
        print(
            f"{'storage':<56}{'time':>9}{'reqs':>6}{'up MiB':>8}{'down MiB':>9}"
            f"{'files':>6}{'correct':>8}"
        )
        for row in rows:
            print(
                f"{row['storage']:<56}{row['seconds']:>8.2f}s{row['requests']:>6}"
                f"{row['bytes_uploaded'] / MiB:>8.1f}{row['bytes_downloaded'] / MiB:>9.1f}"
                f"{row['files_stored']:>6}"
                f"{'yes' if row['every_name_holds_its_content'] else 'NO':>8}"
            )

        if not (args.quick or args.skip_1gib):
            rss = bench_rss(server, redis_server.url, GiB, Path(workdir))
            report["one_gib"] = rss
            print("\n1 GiB save, then open and read through (fresh subprocess each)\n")
            print(
                f"{'storage':<32}{'save':>8}{'read':>8}{'peak RSS +':>12}{'anon +':>9}"
                f"{'file +':>9}  target <= 128 MiB"
            )
            for row in rss:
                file_growth = max(g["file_mib"] for g in row["growth"].values())
                print(
                    f"{row['storage']:<32}{row['save_s']:>7.1f}s{row['open_read_s']:>7.1f}s"
                    f"{row['peak_rss_growth_mib']:>9.0f}MiB{row['peak_anon_growth_mib']:>6.0f}MiB"
                    f"{file_growth:>6.0f}MiB  RSS {'ok' if row['ok_peak_rss'] else 'MISSED'}, "
                    f"anonymous {'ok' if row['ok_anonymous'] else 'MISSED'}"
                )
            print(
                "(file +: pages of the source file mapped into the process, as the core "
                "hasher's mmap does: page cache, reclaimable, but counted in RSS)"
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "appwrite.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
