"""Save a generated set of uploads with many duplicates through DedupStorage; show what it saved.

Run it with ``make demo``. It starts a private redis-server on a free loopback port (or
falls back to the in-process ``locmem://`` index), stores uploads through a Django model
whose default storage is ``DedupStorage``, and prints what was stored, what was reused and
the bytes saved. ``--backend ipfs`` (the default when the IPFS extra is installed) keeps
the objects on an embedded, isolated IPFS node; ``--backend filesystem`` in a directory.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")


@dataclass
class Row:
    title: str
    requested: str
    stored: str
    size: int
    reused: bool


def ipfs_available() -> bool:
    try:
        import dedupstore.backends.ipfs  # noqa: F401
    except ImportError:
        return False
    return True


def make_corpus(count: int, distinct: int, seed: int) -> list[tuple[str, bytes]]:
    """Return ``count`` uploads drawn from ``distinct`` payloads, sizes 1 KiB to 4 MiB."""
    rng = random.Random(seed)
    sizes = [1024 * 4**i for i in range(7)]  # 1 KiB .. 4 MiB
    payloads = [rng.randbytes(rng.choice(sizes)) for _ in range(distinct)]
    kinds = ["report.pdf", "avatar.png", "invoice.pdf", "photo.jpg", "notes.txt", "data.csv"]
    uploads = []
    for number in range(count):
        # A few payloads are very popular, as with real uploads (logos, templates, memes).
        payload = payloads[min(int(rng.paretovariate(1.2)) - 1, distinct - 1)]
        uploads.append((f"user{number % 7}-{rng.choice(kinds)}", payload))
    return uploads


@contextlib.contextmanager
def index_url() -> Iterator[str]:
    from dedupstore.testing.redis import RedisServer, RedisServerError

    try:
        with RedisServer() as server:
            print(f"index: private redis-server on {server.url} (pid {server.pid})")
            yield server.url
    except RedisServerError as exc:
        print(f"index: locmem:// (no redis-server: {exc})")
        yield "locmem://demo"


def configure(backend: str, index: str, workdir: Path) -> None:
    from django.conf import settings

    settings.MEDIA_ROOT = str(workdir / "media")
    blobs: dict[str, object] = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    if backend == "ipfs":
        blobs = {
            "BACKEND": "dedupstore.backends.ipfs.IPFSStorage",
            "OPTIONS": {"embedded_repo": str(workdir / "ipfs-repo")},
        }
    settings.STORAGES["blobs"] = blobs
    settings.STORAGES["default"]["OPTIONS"]["index"] = index


def run(backend: str, count: int, distinct: int, seed: int) -> None:
    import django
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.core.management import call_command

    workdir = Path(tempfile.mkdtemp(prefix="dedupstore-demo-"))
    try:
        with index_url() as index:
            configure(backend, index, workdir)
            django.setup()
            call_command("migrate", verbosity=0)
            from uploads.models import Upload

            print(f"inner storage: {backend}; {count} uploads of {distinct} distinct payloads\n")
            rows: list[Row] = []
            seen: set[str] = set()
            for title, payload in make_corpus(count, distinct, seed):
                upload = Upload.objects.create(title=title, file=ContentFile(payload, name=title))
                stored = upload.file.name
                rows.append(Row(title, f"uploads/{title}", stored, len(payload), stored in seen))
                seen.add(stored)
            report(rows, default_storage)
            demonstrate_deletes(Upload, default_storage)
    finally:
        if backend == "ipfs":
            from dedupstore.backends.ipfs.embedded import stop_all_nodes

            stop_all_nodes()  # before its repo directory goes
        shutil.rmtree(workdir, ignore_errors=True)


def report(rows: list[Row], storage: object) -> None:
    width = max(len(row.stored) for row in rows)
    print(f"{'upload':<26} {'size':>9}  {'result':<7} stored as")
    for row in rows:
        result = "reused" if row.reused else "stored"
        print(f"{row.title:<26} {human(row.size):>9}  {result:<7} {row.stored:<{width}}")
    uploaded = sum(row.size for row in rows)
    stored = sum(row.size for row in rows if not row.reused)
    objects = sum(1 for row in rows if not row.reused)
    print()
    print(f"uploads saved:      {len(rows)}")
    print(f"objects stored:     {objects}  (reused {len(rows) - objects} times)")
    print(f"bytes uploaded:     {human(uploaded)}")
    print(f"bytes stored:       {human(stored)}")
    print(f"bytes saved:        {human(uploaded - stored)} ({100 * (1 - stored / uploaded):.1f} %)")
    print("\nwhere each stored object is served:")
    for row in rows:
        if not row.reused:
            print(f"  {row.stored}  {storage.url(row.stored)}")  # type: ignore[attr-defined]


def demonstrate_deletes(upload_model: type, storage: object) -> None:
    """Delete every record of the most shared object and show the count falling."""
    from collections import Counter

    counts = Counter(upload_model.objects.values_list("file", flat=True))
    name, total = counts.most_common(1)[0]
    print(f"\ndeleting the {total} records that share {name}:")
    for number, upload in enumerate(upload_model.objects.filter(file=name), start=1):
        upload.file.delete(save=False)
        upload.delete()
        refs = storage.references(name)  # type: ignore[attr-defined]
        if number in (1, total - 1, total):
            state = "present" if storage.exists(name) else "deleted"  # type: ignore[attr-defined]
            print(f"  after delete {number:>3}: {refs} references left, object {state}")


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
    args = parser.parse_args()
    run(args.backend, args.count, args.distinct, args.seed)


if __name__ == "__main__":
    main()
