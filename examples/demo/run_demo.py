"""Save a generated set of uploads with many duplicates through DedupStorage; show what it saved.

Run it with ``make demo``. Everything it starts listens on 127.0.0.1 only and is stopped
before it exits: a private redis-server (or the in-process ``locmem://`` index when there
is none), the inner storage (``--backend ipfs``, the default when the IPFS extra is
installed: an embedded, isolated IPFS node; ``--backend filesystem``: a directory), the
project's Appwrite test server, and a development web server that serves every printed
link through ``dedupstore.views.serve``.

It shows, measured in this run:

* the uploads saved through a Django model, which of them were stored and which reused,
  and the calls each made to the inner storage (a reused upload makes none: the calls
  are counted, not assumed);
* the same uploads over Appwrite, with and without deduplication: requests, bytes sent
  and bytes the server stores;
* reference counting: deleting the records of the most shared object one by one;
* a link per stored object, each fetched once by the demo (status 200, the exact bytes).

When stdin is a terminal the links keep being served until Enter or Ctrl-C; otherwise the
demo exits (``make demo`` finishes by itself in CI).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import os
import random
import shutil
import socketserver
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]
# Its own settings, whatever DJANGO_SETTINGS_MODULE the shell (or pytest) exports.
os.environ["DJANGO_SETTINGS_MODULE"] = "demo_project.settings"

#: The raw (not reference-counted) IPFS storage class, the one place the demo names it.
RAW_IPFS_BACKEND = "dedupstore.backends.ipfs.IPFSStorage"
#: The inner storage methods counted as calls; pure name functions (generate_filename,
#: get_valid_name) touch no storage and are not counted.
COUNTED_METHODS = (
    "save",
    "_save",
    "open",
    "_open",
    "exists",
    "delete",
    "size",
    "url",
    "listdir",
    "get_available_name",
    "path",
    "get_modified_time",
    "get_created_time",
    "get_accessed_time",
)
KINDS = ["report.pdf", "avatar.png", "invoice.pdf", "photo.jpg", "notes.txt", "data.csv"]


class DemoFailure(SystemExit):
    """A claim the demo makes did not hold: stop with a message and a non-zero status."""

    def __init__(self, message: str) -> None:
        super().__init__(f"demo failed: {message}")


@dataclass
class Upload:
    title: str
    payload: bytes


@dataclass
class Row:
    title: str
    stored: str
    size: int
    reused: bool
    calls: Counter[str]
    record_id: int

    @property
    def inner_calls(self) -> int:
        return sum(self.calls.values())

    def describe_calls(self) -> str:
        names = ", ".join(sorted(self.calls))
        return f"{self.inner_calls} ({names})" if names else "0"


@dataclass
class InnerCalls:
    """Count the calls that reach a storage (a spy: every real method still runs)."""

    storage: Any
    counts: Counter[str] = field(default_factory=Counter)
    _depth: threading.local = field(default_factory=threading.local)

    def __post_init__(self) -> None:
        for method in COUNTED_METHODS:
            original = getattr(self.storage, method, None)
            if original is not None:
                setattr(self.storage, method, self._counting(method, original))

    def _counting(self, method: str, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def counted(*args: Any, **kwargs: Any) -> Any:
            # Only calls from outside: FileSystemStorage._save calls self.path() itself.
            depth = getattr(self._depth, "value", 0)
            if depth == 0:
                self.counts[method] += 1
            self._depth.value = depth + 1
            try:
                return original(*args, **kwargs)
            finally:
                self._depth.value = depth

        return counted

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def snapshot(self) -> Counter[str]:
        return Counter(self.counts)


def hit_calls_expected(storage: Any) -> Counter[str]:
    """Return the inner calls a hit makes: none, or the one exists() of verify_hits."""
    return Counter({"exists": 1}) if getattr(storage, "verify_hits", False) else Counter()


def ipfs_available() -> bool:
    try:
        import dedupstore.backends.ipfs  # noqa: F401
    except ImportError:
        return False
    return True


def appwrite_available() -> bool:
    try:
        import appwrite  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    return True


def make_corpus(count: int, distinct: int, seed: int) -> list[Upload]:
    """Return ``count`` uploads of ``distinct`` payloads (each at least once), 1 KiB to 4 MiB.

    A payload keeps its kind of file (a logo stays a .png), as when users upload the same
    file again; a few payloads are very popular, as with real uploads.
    """
    if not 0 < distinct <= count:
        raise SystemExit(f"--distinct must be between 1 and --count ({count}), not {distinct}")
    rng = random.Random(seed)
    sizes = [1024 * 4**i for i in range(7)]  # 1 KiB .. 4 MiB
    payloads = [rng.randbytes(rng.choice(sizes)) for _ in range(distinct)]
    chosen = list(range(distinct))  # every payload once ...
    chosen += [min(int(rng.paretovariate(1.2)) - 1, distinct - 1) for _ in range(count - distinct)]
    rng.shuffle(chosen)  # ... and the popular ones many more times
    return [
        Upload(f"user{number % 7}-{KINDS[which % len(KINDS)]}", payloads[which])
        for number, which in enumerate(chosen)
    ]


# -- the servers the demo starts ---------------------------------------------------------


@contextlib.contextmanager
def index_url() -> Iterator[str]:
    from dedupstore.testing.redis import RedisServer, RedisServerError

    try:
        with RedisServer() as server:
            print(f"index:    private redis-server on {server.url} (pid {server.pid})")
            yield server.url
    except RedisServerError as exc:
        print(f"index:    locmem:// (no redis-server: {exc})")
        yield "locmem://demo"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadedWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class DevServer:
    """A WSGI server on 127.0.0.1: bound first (the links need its port), served later."""

    def __init__(self) -> None:
        self.httpd = _ThreadedWSGIServer(("127.0.0.1", 0), _QuietHandler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread: threading.Thread | None = None

    def serve(self, application: Any) -> None:
        self.httpd.set_app(application)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.thread is not None:
            self.httpd.shutdown()
            self.thread.join(10)
        self.httpd.server_close()


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    """GET ``url`` directly (never through a proxy from the environment)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(request, timeout=60) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


# -- configuration -----------------------------------------------------------------------


def configure(
    backend: str, index: str, workdir: Path, web: DevServer, appwrite_server: Any | None
) -> None:
    from django.conf import settings

    settings.MEDIA_ROOT = str(workdir / "media")
    # url() of FileSystemStorage and the IPFS gateway links point at the development server.
    settings.MEDIA_URL = f"{web.base_url}/media/"
    served = {"media/": "default"}
    blobs: dict[str, Any] = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    if backend == "ipfs":
        blobs = {
            "BACKEND": RAW_IPFS_BACKEND,
            "OPTIONS": {
                "embedded_repo": str(workdir / "ipfs-repo"),
                "gateway_url": f"{web.base_url}/ipfs/",
                "url_filename": True,
            },
        }
        served = {"ipfs/": "blobs"}
    settings.STORAGES["blobs"] = blobs
    settings.STORAGES["default"]["OPTIONS"]["index"] = index
    if appwrite_server is not None:
        settings.STORAGES["appwrite"] = {
            "BACKEND": "dedupstore.backends.appwrite.AppWriteStorage",
            "OPTIONS": {
                **appwrite_server.storage_options(bucket_id="uploads"),
                "index": index,
                # django-cloud-storages' default stores every upload again; reuse content.
                "reuse": "content",
            },
        }
        served["appwrite/"] = "appwrite"
    settings.DEMO_SERVED = served


# -- the run -----------------------------------------------------------------------------


def run(backend: str, count: int, distinct: int, seed: int, serve: bool) -> None:
    corpus = make_corpus(count, distinct, seed)
    contents = len({hashlib.sha256(upload.payload).digest() for upload in corpus})
    workdir = Path(tempfile.mkdtemp(prefix="dedupstore-demo-"))
    web = DevServer()
    try:
        with contextlib.ExitStack() as stack:
            index = stack.enter_context(index_url())
            appwrite_server = None
            if appwrite_available():
                from dedupstore.testing.appwrite import AppwriteTestServer

                appwrite_server = stack.enter_context(AppwriteTestServer())
                print(f"appwrite: test server on {appwrite_server.endpoint}")
            else:
                print("appwrite: skipped (the appwrite SDK is not installed)")
            configure(backend, index, workdir, web, appwrite_server)
            demonstrate(backend, corpus, contents, web, appwrite_server)
            if serve:
                keep_serving()
    finally:
        web.close()
        if backend == "ipfs":
            from dedupstore.backends.ipfs.embedded import stop_all_nodes

            stop_all_nodes()  # before its repo directory goes
        shutil.rmtree(workdir, ignore_errors=True)


def demonstrate(
    backend: str, corpus: list[Upload], contents: int, web: DevServer, appwrite_server: Any
) -> list[tuple[str, str, bytes]]:
    import django
    from django.core.files.storage import default_storage, storages
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application

    django.setup()
    call_command("migrate", verbosity=0)
    web.serve(get_wsgi_application())
    print(f"web:      development server on {web.base_url} (dedupstore.views.serve)")
    from uploads.models import Upload as UploadRecord

    print(
        f"\n{len(corpus)} uploads of {contents} distinct contents through a FileField on "
        f"DedupStorage over {backend}:\n"
    )
    calls = InnerCalls(default_storage.inner)  # type: ignore[attr-defined]
    rows = save_through_model(UploadRecord, corpus, calls)
    report(rows, contents, hit_calls_expected(default_storage))
    demonstrate_trusted_hit(default_storage, corpus)

    appwrite_links: list[tuple[str, str, bytes]] = []
    if appwrite_server is not None:
        appwrite_links = compare_over_appwrite(corpus, storages["appwrite"], appwrite_server, web)

    demonstrate_deletes(UploadRecord, default_storage)

    payloads = {row.record_id: upload.payload for row, upload in zip(rows, corpus, strict=True)}
    links = object_links(backend, UploadRecord, default_storage, payloads) + appwrite_links
    check_links(links)
    return links


def save_through_model(model: Any, corpus: list[Upload], calls: InnerCalls) -> list[Row]:
    from django.core.files.base import ContentFile

    rows: list[Row] = []
    seen: set[str] = set()
    for upload in corpus:
        before = calls.snapshot()
        record = model.objects.create(
            title=upload.title, file=ContentFile(upload.payload, name=upload.title)
        )
        stored = record.file.name
        rows.append(
            Row(
                upload.title,
                stored,
                len(upload.payload),
                stored in seen,
                calls.snapshot() - before,
                record.id,
            )
        )
        seen.add(stored)
    return rows


def report(rows: list[Row], contents: int, expected_hit_calls: Counter[str]) -> None:
    print(f"{'upload':<20} {'size':>9}  {'result':<6} {'inner calls':<18} stored as")
    for row in rows:
        result = "reused" if row.reused else "stored"
        print(
            f"{row.title:<20} {human(row.size):>9}  {result:<6} {row.describe_calls():<18} "
            f"{row.stored}"
        )
    hits = [row for row in rows if row.reused]
    misses = [row for row in rows if not row.reused]
    uploaded = sum(row.size for row in rows)
    stored = sum(row.size for row in misses)
    print()
    print(f"uploads saved:      {len(rows)}")
    print(
        f"objects stored:     {len(misses)}  (one per distinct content; reused {len(hits)} times)"
    )
    print(
        f"inner calls:        {sum(row.inner_calls for row in misses)} for the "
        f"{len(misses)} stored, {sum(row.inner_calls for row in hits)} for the {len(hits)} reused"
        + (" (verify_hits: one exists() confirms each hit)" if expected_hit_calls else "")
    )
    print(f"bytes uploaded:     {human(uploaded)}")
    print(f"bytes stored:       {human(stored)}")
    print(f"bytes saved:        {human(uploaded - stored)} ({100 * (1 - stored / uploaded):.1f} %)")
    print(
        "(inner calls: the calls that reached the inner storage, counted by a spy on "
        f"{', '.join(COUNTED_METHODS[:5])}, ...)"
    )
    if len(misses) != contents:
        raise DemoFailure(f"{len(misses)} objects stored for {contents} distinct contents")
    if any(row.calls != expected_hit_calls for row in hits):
        raise DemoFailure("a reused upload made other inner calls than verify_hits' exists()")


def demonstrate_trusted_hit(storage: Any, corpus: list[Upload]) -> None:
    """Save one more duplicate with verify_hits=False: a hit with no inner call at all."""
    from django.core.files.base import ContentFile

    from dedupstore import DedupStorage

    if not hasattr(storage, "verify_hits"):
        return
    trusting = DedupStorage(
        inner=storage.inner_config,
        index=storage.index_url,
        namespace=storage.namespace,
        verify_hits=False,
    )
    calls = InnerCalls(trusting.inner)
    popular = Counter(upload.payload for upload in corpus).most_common(1)[0][0]
    title = next(upload.title for upload in corpus if upload.payload == popular)
    name = trusting.save(f"uploads/again-{title}", ContentFile(popular))
    save_calls = calls.total
    refs = trusting.references(name)
    trusting.delete(name)  # and that reference goes again
    print(
        "\nthe same content once more with verify_hits=False (the index is trusted): "
        f"{save_calls} inner calls, one index round trip; {name} had {refs} references "
        f"for a moment, {trusting.references(name)} again after its delete"
    )
    if save_calls or trusting.references(name) != refs - 1:
        raise DemoFailure("a hit with verify_hits=False called the inner storage")


def compare_over_appwrite(
    corpus: list[Upload], dedup: Any, server: Any, web: DevServer
) -> list[tuple[str, str, bytes]]:
    """Save the corpus over Appwrite twice: plain (every upload stored), then deduplicated."""
    from django.core.files.base import ContentFile

    from dedupstore.backends.appwrite import AppwriteStorage

    plain = AppwriteStorage(**server.storage_options(bucket_id="plain"))
    calls = InnerCalls(dedup.inner)
    measured: dict[str, dict[str, int]] = {}
    stored_by: dict[str, list[str]] = {}
    hit_requests = hit_calls = hit_bytes = hits = 0
    for label, storage, directory in (("plain", plain, "plain"), ("dedup", dedup, "uploads")):
        server.clear_log()
        names: list[str] = []
        for upload in corpus:
            before = (server.request_count, calls.total, server.bytes_received)
            # The name a FileField(upload_to=<directory>) gives the upload.
            name = storage.save(f"{directory}/{upload.title}", ContentFile(upload.payload))
            if label == "dedup" and name in names:
                hits += 1
                hit_requests += server.request_count - before[0]
                hit_calls += calls.total - before[1]
                hit_bytes += server.bytes_received - before[2]
            names.append(name)
        measured[label] = {"requests": server.request_count, "sent": server.bytes_received}
        stored_by[label] = names
    for label, names in stored_by.items():
        distinct = sorted(set(names))
        on_disk = sum(
            server.file_path(*plain.locate(name)).stat().st_size for name in distinct
        )  # what the test server really keeps, read from its data directory
        measured[label].update(objects=len(distinct), stored=on_disk)

    print(f"\nthe same {len(corpus)} uploads over Appwrite (the test server on loopback):")
    print(f"{'':<34} {'requests':>8} {'bytes sent':>11} {'bytes stored':>13} {'files':>6}")
    rows = (
        ("AppwriteStorage (every upload)", measured["plain"]),
        ("AppWriteStorage, reuse='content'", measured["dedup"]),
    )
    for title, figures in rows:
        print(
            f"{title:<34} {figures['requests']:>8} {human(figures['sent']):>11} "
            f"{human(figures['stored']):>13} {figures['objects']:>6}"
        )
    saved = {key: measured["plain"][key] - measured["dedup"][key] for key in measured["plain"]}
    print(
        f"{'saved':<34} {saved['requests']:>8} {human(saved['sent']):>11} "
        f"{human(saved['stored']):>13} {saved['objects']:>6}"
    )
    per_hit = sum(hit_calls_expected(dedup).values())
    print(
        f"the {hits} reused uploads: {hit_requests} requests, {human(hit_bytes)} sent"
        + (" (verify_hits: one existence check each)" if per_hit else "")
    )
    if hit_requests != per_hit * hits or hit_calls != per_hit * hits or hit_bytes:
        raise DemoFailure("a reused upload sent more to the Appwrite server than a check")

    payloads: dict[str, bytes] = {}
    for upload, name in zip(corpus, stored_by["dedup"], strict=True):
        payloads.setdefault(name, upload.payload)
    return [
        (name, f"{web.base_url}/appwrite/{quote(name)}", payload)
        for name, payload in payloads.items()
    ]


def demonstrate_deletes(model: Any, storage: Any) -> None:
    """Delete every record of the most shared object and show the count falling."""
    counts = Counter(model.objects.values_list("file", flat=True))
    name, total = counts.most_common(1)[0]
    print(f"\ndeleting the {total} records that share {name}:")
    for number, upload in enumerate(model.objects.filter(file=name), start=1):
        upload.file.delete(save=False)
        upload.delete()
        refs = storage.references(name)
        if number in (1, total - 1, total):
            state = "present" if storage.exists(name) else "deleted"
            left = f"{refs} reference{'' if refs == 1 else 's'} left"
            print(f"  after delete {number:>3}: {left}, object {state}")
    if storage.exists(name):
        raise DemoFailure(f"{name} outlived its last reference")


def object_links(
    backend: str, model: Any, storage: Any, payloads: dict[int, bytes]
) -> list[tuple[str, str, bytes]]:
    """Return (name, link, expected bytes) of every object the records still use."""
    links = {}
    for record in model.objects.order_by("id"):
        name = record.file.name
        if name not in links:
            if backend == "ipfs":
                # A CID has no extension: the link names the file, as gateways allow.
                url = storage.inner.url(name, filename=record.title)
            else:
                url = storage.url(name)
            links[name] = (name, url, payloads[record.id])
    return list(links.values())


def check_links(links: list[tuple[str, str, bytes]]) -> None:
    """Fetch every link once: each must answer 200 with the exact bytes."""
    print(f"\nwhere each stored object is served (each link fetched once, {len(links)} links):")
    for _name, url, expected in links:
        status, data, headers = fetch(url)
        if status != 200 or data != expected:
            raise DemoFailure(f"{url} answered {status} with {len(data)} bytes")
        print(f"  200 {human(len(data)):>9} {headers.get('Content-Type', ''):<24} {url}")
    name, url, expected = max(links, key=lambda link: len(link[2]))
    last = len(expected) - 1
    status, data, headers = fetch(url, {"Range": f"bytes={last - 99}-{last}"})
    if status != 206 or data != expected[-100:]:
        raise DemoFailure(f"a Range request for {url} answered {status}")
    print(f"  206 for 'Range: bytes={last - 99}-{last}' ({headers['Content-Range']}) of {name}")


def keep_serving() -> None:
    print("\nthe links above are served until you press Enter (or Ctrl-C)")
    with contextlib.suppress(EOFError, KeyboardInterrupt):
        input()


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend",
        choices=("ipfs", "filesystem"),
        default="ipfs" if ipfs_available() else "filesystem",
    )
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--distinct", type=int, default=12)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--serve",
        action=argparse.BooleanOptionalAction,
        default=sys.stdin.isatty(),
        help="keep serving the links until Enter (default: when stdin is a terminal)",
    )
    args = parser.parse_args()
    run(args.backend, args.count, args.distinct, args.seed, args.serve)


if __name__ == "__main__":
    main()
