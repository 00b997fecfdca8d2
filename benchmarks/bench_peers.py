"""Run other Django deduplicating storages beside DedupStorage on one duplicate-heavy workload.

For each candidate peer this script (a) tries to import it and runs a tiny save / open /
delete smoke test with Django configured in-process, recording "works" or the exact
reason it fails, and (b) for each peer that works, runs the same workload through it,
through ``DedupStorage(inner=FileSystemStorage)`` and through raw ``FileSystemStorage``:
uploads drawn from a generated corpus with a chosen share of duplicates and sizes from
4 KiB to 1 MiB. It reports what lands on disk (the directory is measured), wall time,
saves/s, whether every returned name reads back its own content, and what a delete does
to content that two uploads share.

Each candidate runs in a child process of its own (its Django settings, its shims), so one
peer's breakage cannot leak into another's figures. The peers are never dependencies of
dedupstore: install them in a throwaway virtualenv and run the script with its python::

    python3 -m venv /tmp/peers-venv
    /tmp/peers-venv/bin/pip install -e . "django==5.2.*" django-hashedfilenamestorage \\
        django-castor django-dedupe-backend
    # optional: declares Python >= 3.14 and Django >= 6.0.4, so pip needs forcing
    /tmp/peers-venv/bin/pip install --no-deps --ignore-requires-python django-image-toolkit
    /tmp/peers-venv/bin/python benchmarks/bench_peers.py

Run anywhere else (``.venv/bin/python benchmarks/bench_peers.py``) it reports the absent peers
as "not installed" and still measures the two baselines. Prints a table and writes
``benchmarks/results/peers.json``: one dict per candidate with ``peer``, ``version``,
``status`` ("measured" / "could not run"), ``reason`` and the measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
KiB = 1024
MiB = 1024 * KiB


# -- the candidates ------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One storage to try: how to install it, configure Django for it and build it."""

    key: str
    #: The PyPI distribution that provides it (None: ships with Django or dedupstore).
    dist: str | None
    what: str
    #: Extra INSTALLED_APPS the peer needs.
    apps: tuple[str, ...] = ()
    #: Name of a shim in SHIMS applied before the import (a measured variant of a peer
    #: that does not run on current Django as released).
    shim: str | None = None
    #: What pip does with it on this machine's Python, when it cannot install it (found
    #: when this script was written; shown only when the distribution is absent).
    install_note: str = ""
    #: Baselines are always measured; peers only when their smoke test passes.
    baseline: bool = False
    #: The oldest Python and Django its metadata declares, when this machine has older.
    requires: tuple[tuple[int, int], tuple[int, int]] | None = None


CANDIDATES: list[Candidate] = [
    Candidate(
        "FileSystemStorage",
        None,
        "Django's own storage, no dedup (baseline)",
        baseline=True,
    ),
    Candidate(
        "DedupStorage(inner=FileSystemStorage)",
        None,
        "dedupstore: BLAKE3 + Redis index, reference-counted deletes",
        baseline=True,
    ),
    Candidate(
        "django-hashedfilenamestorage",
        "django-hashedfilenamestorage",
        "names files by the SHA-1 of their content, skips the write when the name exists",
    ),
    Candidate(
        "django-hashedfilenamestorage [+ force_text shim]",
        "django-hashedfilenamestorage",
        "the same, with django.utils.encoding.force_text = force_str (removed in Django 4.0)",
        shim="force_text",
    ),
    Candidate(
        "django-castor",
        "django-castor",
        "content-addressable FileSystemStorage (SHA-1 names, sharded directories)",
    ),
    Candidate(
        "django-dedupe-backend",
        "django-dedupe-backend",
        "SHA-1 dedup with a UniqueFile model; save() returns the digest",
        apps=("dedupebackend",),
    ),
    Candidate(
        "django-dedupe-backend [+ ugettext_lazy shim]",
        "django-dedupe-backend",
        "the same, with django.utils.translation.ugettext_lazy = gettext_lazy "
        "(removed in Django 4.0)",
        apps=("dedupebackend",),
        shim="ugettext_lazy",
    ),
    Candidate(
        "django-image-toolkit HashedFileSystemStorage",
        "django-image-toolkit",
        "FileSystemStorage that renames each upload to the BLAKE2b of its content",
        requires=((3, 14), (6, 0)),
        install_note="pip finds no version for Python 3.11: every release declares "
        "Requires-Python >=3.14 and Django >=6.0.4 (this machine has Python 3.11, pyenv "
        "up to 3.13); it runs only when forced: pip install --no-deps "
        "--ignore-requires-python django-image-toolkit",
    ),
    Candidate(
        "django-fileindex",
        "django-fileindex",
        "SHA-512 file index app (IndexedFile model), PostgreSQL only",
        install_note="pip finds no version for Python 3.11 (every release declares "
        "Requires-Python >=3.12); on Python 3.12 every release requires Django >=6.0, so "
        "pip reports ResolutionImpossible next to django==5.2.*; and it is not a Storage "
        "(a model + IndexedFile.objects.get_or_create_from_file(path) over default_storage)",
    ),
    Candidate(
        "livingbio-django-hashedfilenamestorage",
        "livingbio-django-hashedfilenamestorage",
        "a 2017 fork of django-hashedfilenamestorage",
        install_note="its sdist does not build: setup.py opens README.md, which the sdist "
        "lacks (FileNotFoundError); the code is Python 2 (print statement, "
        "'except OSError, e') and needs livingbio-workspace",
    ),
]


def _shim_force_text() -> None:
    from django.utils import encoding

    encoding.force_text = encoding.force_str  # type: ignore[attr-defined]


def _shim_ugettext_lazy() -> None:
    from django.utils import translation

    translation.ugettext_lazy = translation.gettext_lazy  # type: ignore[attr-defined]


SHIMS: dict[str, Callable[[], None]] = {
    "force_text": _shim_force_text,
    "ugettext_lazy": _shim_ugettext_lazy,
}


def _relocate(storage: Any, location: str) -> Any:
    """Point a FileSystemStorage subclass that takes no location argument at ``location``."""
    storage._location = location
    for cached in ("base_location", "location"):
        storage.__dict__.pop(cached, None)
    return storage


class Builder:
    """Build a fresh storage of one candidate over an empty directory."""

    def __init__(self, candidate: Candidate, redis_url: str | None) -> None:
        self.candidate = candidate
        self.redis_url = redis_url
        self.runs = 0

    def __call__(self, location: str) -> Any:
        """Return a new storage writing under ``location``."""
        self.runs += 1
        key = self.candidate.key
        if key == "FileSystemStorage":
            from django.core.files.storage import FileSystemStorage

            return FileSystemStorage(location=location)
        if key.startswith("DedupStorage"):
            from dedupstore import DedupStorage

            if not self.redis_url:
                raise RuntimeError("no Redis index: redis-server could not be started")
            self._flush_index()
            return DedupStorage(
                inner={
                    "BACKEND": "django.core.files.storage.FileSystemStorage",
                    "OPTIONS": {"location": location},
                },
                index=self.redis_url,
                namespace=f"peers-{os.getpid()}-{self.runs}",
            )
        if key.startswith("django-hashedfilenamestorage"):
            from django_hashedfilenamestorage.storage import HashedFilenameFileSystemStorage

            return HashedFilenameFileSystemStorage(location=location)
        if key == "django-castor":
            from djcastor import CAStorage

            return CAStorage(location=location)
        if key.startswith("django-dedupe-backend"):
            from dedupebackend.models import UniqueFile
            from dedupebackend.storage import DedupedStorage

            UniqueFile.objects.all().delete()  # the index is per run, as the directory
            return _relocate(DedupedStorage(), location)
        if key.startswith("django-image-toolkit"):
            from image_toolkit.storages import HashedFileSystemStorage

            return HashedFileSystemStorage(location=location)
        if key == "django-fileindex":
            return _find_storage("fileindex")
        raise KeyError(key)

    def _flush_index(self) -> None:
        import redis

        redis.Redis.from_url(self.redis_url).flushdb()

    def index_memory(self) -> int | None:
        """Return the bytes Redis holds for the index (DedupStorage only)."""
        if not self.candidate.key.startswith("DedupStorage") or not self.redis_url:
            return None
        import redis

        client = redis.Redis.from_url(self.redis_url)
        return sum(client.memory_usage(key) or 0 for key in client.scan_iter(count=1000))


def _find_storage(package: str) -> Any:
    """Return the first Storage subclass defined in ``package``, or say there is none."""
    import importlib
    import pkgutil

    from django.core.files.storage import Storage

    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, f"{package}."):
        try:
            module = importlib.import_module(info.name)
        except Exception:
            continue
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Storage)
                and value.__module__.startswith(package)
            ):
                return value()
    raise TypeError(f"not a storage: no django Storage subclass anywhere in {package!r}")


# -- why something fails --------------------------------------------------------------

#: Names removed from Django, and the release that removed them.
REMOVED_IN_DJANGO = {
    "force_text": "4.0",
    "smart_text": "4.0",
    "ugettext_lazy": "4.0",
    "ugettext": "4.0",
    "ungettext": "4.0",
    "python_2_unicode_compatible": "3.0",
    "six": "3.0",
}


def explain(stage: str, error: BaseException) -> str:
    """Return the exact failure, where it happened, and what it means for Django 5.2."""
    frames = traceback.extract_tb(error.__traceback__)
    site = next(
        (
            f"{Path(frame.filename).parent.name}/{Path(frame.filename).name}:{frame.lineno}"
            for frame in reversed(frames)
            if "site-packages" in frame.filename and "/django/" not in frame.filename
        ),
        None,
    )
    text = f"{stage}: {type(error).__name__}: {error}"
    if site:
        text += f" (at {site})"
    hint = ""
    message = str(error)
    match = re.search(r"cannot import name '(\w+)' from '(django[\w.]*)'", message)
    if match and match.group(1) in REMOVED_IN_DJANGO:
        hint = (
            f"incompatible with Django 5.2: {match.group(2)}.{match.group(1)} was removed "
            f"in Django {REMOVED_IN_DJANGO[match.group(1)]}"
        )
    elif isinstance(error, TypeError) and "max_length" in message:
        hint = (
            "incompatible with Django >= 1.8: its get_available_name() does not take the "
            "max_length argument that Storage.save() passes"
        )
    elif isinstance(error, NameError) and re.search(r"'(xrange|unicode|basestring)'", message):
        hint = "Python 2 only code"
    elif isinstance(error, SyntaxError):
        hint = "Python 2 only code (does not parse on Python 3)"
    elif "fileno" in message:
        hint = (
            "needs a real file descriptor: fails on ContentFile and on Django's "
            "InMemoryUploadedFile (every upload below FILE_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB)"
        )
    return f"{hint}. {text}" if hint else text


# -- the workload --------------------------------------------------------------------


def make_corpus(count: int, dup_rate: float, seed: int) -> list[bytes]:
    """Return ``count`` payloads, exactly ``round(count * dup_rate)`` of them repeats.

    Sizes are log-uniform from 4 KiB to 1 MiB; every distinct payload is random bytes.
    """
    rng = random.Random(f"{seed}-{dup_rate}")
    duplicates = round(count * dup_rate)
    distinct = [
        rng.randbytes(int(4 * KiB * 256 ** rng.random())) for _ in range(count - duplicates)
    ]
    corpus = distinct + [rng.choice(distinct) for _ in range(duplicates)]
    rng.shuffle(corpus)
    return corpus


def measure_directory(location: str) -> dict[str, int]:
    """Return the files under ``location``: count, apparent bytes and allocated bytes."""
    files = size = blocks = 0
    for directory, _dirs, names in os.walk(location):
        for name in names:
            stat = os.lstat(os.path.join(directory, name))
            files += 1
            size += stat.st_size
            blocks += stat.st_blocks * 512
    return {"files_on_disk": files, "bytes_on_disk": size, "disk_usage_bytes": blocks}


def read_back(storage: Any, name: str) -> bytes:
    """Return the content ``storage`` gives for ``name``."""
    with storage.open(name, "rb") as handle:
        return handle.read()


def smoke_test(build: Builder, workdir: Path) -> str:
    """Save, open and delete one small file; return what delete did; raise on failure."""
    from django.core.files.base import ContentFile

    location = tempfile.mkdtemp(dir=workdir)
    stage = "construct"
    try:
        storage = build(location)
        stage = "save"
        name = storage.save("smoke/hello.txt", ContentFile(b"hello peers"))
        stage = "open"
        data = read_back(storage, name)
        if data != b"hello peers":
            raise AssertionError(f"open({name!r}) returned {data[:40]!r}, not the saved bytes")
        stage = "delete"
        storage.delete(name)
        left = measure_directory(location)["files_on_disk"]
        return "works" if left == 0 else "works (delete() left the file on disk)"
    except Exception as error:
        reason = explain(stage, error)
        if "fileno" in str(error):
            reason += f". With a TemporaryUploadedFile instead: {_smoke_temporary(build, workdir)}"
        raise RuntimeError(reason) from error
    finally:
        shutil.rmtree(location, ignore_errors=True)


def _smoke_temporary(build: Builder, workdir: Path) -> str:
    """Return how a save / open / delete of a TemporaryUploadedFile goes."""
    from django.core.files.uploadedfile import TemporaryUploadedFile

    location = tempfile.mkdtemp(dir=workdir)
    stage = "construct"
    try:
        storage = build(location)
        upload = TemporaryUploadedFile("hello.txt", "text/plain", 11, None)
        upload.write(b"hello peers")
        upload.seek(0)
        stage = "save"
        name = storage.save("smoke/hello.txt", upload)
        stage = "open"
        data = read_back(storage, name)
        if data != b"hello peers":
            raise AssertionError(f"open({name!r}) returned {data[:40]!r}")
        stage = "delete"
        storage.delete(name)
        left = measure_directory(location)["files_on_disk"]
        return "works" if left == 0 else f"works, but delete({name!r}) left the file on disk"
    except Exception as error:
        return explain(stage, error)
    finally:
        shutil.rmtree(location, ignore_errors=True)


def delete_semantics(build: Builder, workdir: Path) -> dict[str, Any]:
    """Save one content under two names of one directory, delete one, then the other.

    Also save it once under another directory, to tell whether dedup spans directories.
    """
    from django.core.files.base import ContentFile

    payload = os.urandom(64 * KiB)
    location = tempfile.mkdtemp(dir=workdir)
    try:
        storage = build(location)
        first = storage.save("uploads/one.bin", ContentFile(payload))
        second = storage.save("uploads/two.bin", ContentFile(payload))
        stored = measure_directory(location)["files_on_disk"]
        elsewhere = storage.save("other/three.bin", ContentFile(payload))
        across = measure_directory(location)["files_on_disk"] == stored
        storage.delete(elsewhere)
        storage.delete(first)
        try:
            intact = storage.exists(second) and read_back(storage, second) == payload
        except Exception:
            intact = False
        storage.delete(second)
        left = measure_directory(location)["files_on_disk"]
    finally:
        shutil.rmtree(location, ignore_errors=True)
    if stored > 1:
        summary = "independent copies: each upload stored separately"
        if not intact:
            summary += "; deleting one BROKE the other"
    elif not intact:
        summary = "shared object: deleting one reference BREAKS the other (content gone)"
    elif left:
        summary = "shared object: delete() never removes it (the bytes stay forever)"
    else:
        summary = "shared object: the other reference survives; the last delete frees it"
    if stored == 1 and not across:
        summary += "; dedups only within one directory (other/ got its own copy)"
    return {
        "same_name_returned": first == second,
        "dedups_across_directories": stored == 1 and across,
        "copies_stored": stored,
        "other_reference_intact": intact,
        "files_left_after_both_deleted": left,
        "summary": summary,
    }


def run_workload(build: Builder, workdir: Path, corpus: list[bytes], repeat: int) -> dict[str, Any]:
    """Save ``corpus`` ``repeat`` times into fresh storages; return the measurements."""
    from django.core.files.base import ContentFile

    times: list[float] = []
    row: dict[str, Any] = {}
    for _ in range(repeat):
        location = tempfile.mkdtemp(dir=workdir)
        try:
            storage = build(location)
            storage.save("warm-up/warm.bin", ContentFile(os.urandom(1024)))
            before = measure_directory(location)
            started = time.perf_counter()
            names = [
                storage.save(f"uploads/{index:04d}.bin", ContentFile(data))
                for index, data in enumerate(corpus)
            ]
            times.append(time.perf_counter() - started)
            after = measure_directory(location)
            good = sum(
                1 for name, data in zip(names, corpus, strict=True) if _reads(storage, name) == data
            )
            row = {key: after[key] - before[key] for key in after}
            row.update(
                {
                    "distinct_names": len(set(names)),
                    "read_back_ok": good,
                    "index_memory_bytes": build.index_memory(),
                }
            )
        finally:
            shutil.rmtree(location, ignore_errors=True)
    wall = statistics.median(times)
    row.update(
        {
            "wall_s": wall,
            "wall_s_runs": times,
            "saves_per_s": len(corpus) / wall,
        }
    )
    return row


def _reads(storage: Any, name: str) -> bytes | None:
    try:
        return read_back(storage, name)
    except Exception:
        return None


# -- one candidate, in a child process ----------------------------------------------


def configure_django(candidate: Candidate, media_root: Path) -> None:
    """Configure Django in-process for ``candidate`` (SQLite in memory, private media)."""
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="dedupstore peers benchmark",
        USE_TZ=True,
        INSTALLED_APPS=["django.contrib.contenttypes", *candidate.apps],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        MEDIA_ROOT=str(media_root),
        MEDIA_URL="/media/",
        DEDUPE_STORAGE_PATH=str(media_root / "dedupebackend"),
        DEDUPE_STORAGE_URL="/media/dedupebackend/",
    )
    if candidate.shim:
        SHIMS[candidate.shim]()
    django.setup()
    if candidate.apps:
        from django.core.management import call_command

        call_command("migrate", run_syncdb=True, verbosity=0)


def dist_version(dist: str | None) -> str | None:
    """Return the installed version of ``dist`` (Django's for the built-ins), or None."""
    try:
        return metadata.version(dist or "django")
    except metadata.PackageNotFoundError:
        return None


def run_candidate(
    candidate: Candidate, redis_url: str | None, count: int, rates: list[float], repeat: int
) -> dict[str, Any]:
    """Try one candidate and measure it when it works; return its result row."""
    version = dist_version(candidate.dist)
    row: dict[str, Any] = {
        "peer": candidate.key,
        "distribution": candidate.dist,
        "version": version,
        "what": candidate.what,
        "status": "could not run",
        "reason": "",
        "shim": candidate.shim,
        "python": platform.python_version(),
        "django": dist_version("django"),
    }
    if candidate.key.startswith("DedupStorage"):
        row["version"] = dist_version("dedupstore")
    if version is None:
        row["reason"] = "not installed" + (
            f" (pip, on this machine: {candidate.install_note})" if candidate.install_note else ""
        )
        return row
    with tempfile.TemporaryDirectory(prefix="peers-") as scratch:
        workdir = Path(scratch)
        try:
            configure_django(candidate, workdir / "media")
        except Exception as error:
            row["reason"] = explain("django.setup() with the app installed", error)
            return row
        build = Builder(candidate, redis_url)
        try:
            row["smoke"] = smoke_test(build, workdir)
        except RuntimeError as error:
            row["reason"] = str(error)
            return row
        row["delete"] = delete_semantics(build, workdir)
        row["runs"] = []
        for rate in rates:
            corpus = make_corpus(count, rate, seed=5)
            result = {
                "dup_rate": rate,
                "uploads": len(corpus),
                "logical_bytes": sum(map(len, corpus)),
                "unique_bytes": sum(map(len, set(corpus))),
            }
            try:
                result.update(run_workload(build, workdir, corpus, repeat))
            except Exception as error:
                row["reason"] = explain(f"workload at {rate:.0%} duplicates", error)
                return row
            row["runs"].append(result)
    row["status"] = "measured"
    outside = _outside_declared_support(candidate)
    if outside:
        row["reason"] = outside
    elif candidate.shim:
        row["reason"] = (
            f"runs only with the {candidate.shim} shim (a name Django 4.0 removed, aliased "
            "to its replacement before the import)"
        )
    elif row["smoke"] != "works":
        row["reason"] = row["smoke"]
    return row


def _outside_declared_support(candidate: Candidate) -> str:
    """Say so when this Python or Django is older than what ``candidate`` declares."""
    if candidate.requires is None:
        return ""
    python, django = candidate.requires
    import django as django_module

    if sys.version_info[:2] >= python and django_module.VERSION[:2] >= django:
        return ""
    return (
        f"measured outside its declared support (Requires-Python >={python[0]}.{python[1]}, "
        f"Django >={django[0]}.{django[1]}): it was installed with pip --no-deps "
        "--ignore-requires-python, and its storage code runs on this Python and Django"
    )


# -- the parent: run every candidate, print, write ----------------------------------


def run_child(
    candidate: Candidate, redis_url: str | None, args: argparse.Namespace
) -> dict[str, Any]:
    """Run one candidate in a child process of this python; return its row."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        candidate.key,
        "--count",
        str(args.count),
        "--rates",
        ",".join(str(rate) for rate in args.rates),
        "--repeat",
        str(args.repeat),
    ]
    if redis_url:
        command += ["--redis", redis_url]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=args.timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return _failed(candidate, f"timed out after {args.timeout} s")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return _failed(candidate, f"the child process exited {done.returncode}: {tail}")
    return json.loads(lines[-1])


def _failed(candidate: Candidate, reason: str) -> dict[str, Any]:
    return {
        "peer": candidate.key,
        "distribution": candidate.dist,
        "version": dist_version(candidate.dist),
        "status": "could not run",
        "reason": reason,
    }


def human(size: float) -> str:
    """Return ``size`` bytes in MiB with one decimal."""
    return f"{size / MiB:.1f}"


def index_kib(size: int | None) -> str:
    """Return the Redis memory of an index in KiB, or "-" for storages without one."""
    return "-" if size is None else f"{size / KiB:.0f}"


def print_tables(rows: list[dict[str, Any]]) -> None:
    """Print the status of every candidate, then the measurements side by side."""
    print("\nCandidates")
    for row in rows:
        version = row.get("version") or "-"
        print(f"  {row['peer']} {version}: {row['status']}")
        if row.get("reason"):
            print(f"      {row['reason']}")
        if row.get("delete"):
            print(f"      delete: {row['delete']['summary']}")
    measured = [row for row in rows if row["status"] == "measured"]
    if not measured:
        return
    header = (
        f"{'storage':<50} {'dup':>4} {'logical':>8} {'on disk':>8} {'files':>6}"
        f" {'wall s':>7} {'saves/s':>8} {'reads ok':>9} {'index KiB':>9}"
    )
    print(
        "\nWorkload (MiB; wall time: median of the repeats; index KiB: the Redis memory of "
        "DedupStorage's index, which lives off disk)"
    )
    print(header)
    print("-" * len(header))
    for rate in sorted({run["dup_rate"] for row in measured for run in row["runs"]}):
        sample = next(run for row in measured for run in row["runs"] if run["dup_rate"] == rate)
        print(
            f"{rate:.0%} duplicates: {sample['uploads']} uploads, "
            f"{human(sample['logical_bytes'])} MiB uploaded, "
            f"{human(sample['unique_bytes'])} MiB distinct"
        )
        for row in measured:
            for run in row["runs"]:
                if run["dup_rate"] != rate:
                    continue
                print(
                    f"{row['peer'][:50]:<50} {rate:>4.0%} {human(run['logical_bytes']):>8}"
                    f" {human(run['bytes_on_disk']):>8} {run['files_on_disk']:>6}"
                    f" {run['wall_s']:>7.3f} {run['saves_per_s']:>8.0f}"
                    f" {run['read_back_ok']:>5}/{run['uploads']:<3}"
                    f" {index_kib(run.get('index_memory_bytes')):>9}"
                )
        print()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="uploads per workload")
    parser.add_argument(
        "--rates",
        type=lambda text: [float(part) for part in text.split(",")],
        default=[0.0, 0.3, 0.8],
        help="duplicate shares, comma-separated (default 0,0.3,0.8)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per workload (median)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per candidate")
    parser.add_argument(
        "--output", type=Path, default=RESULTS / "peers.json", help="where to write the JSON"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every candidate, print the tables and write the JSON."""
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.child:
        candidate = next(c for c in CANDIDATES if c.key == args.child)
        row = run_candidate(candidate, args.redis, args.count, args.rates, args.repeat)
        print(json.dumps(row))
        return 0

    from dedupstore.testing.redis import RedisServer, RedisServerError

    print(
        f"python {platform.python_version()} ({sys.executable}), "
        f"Django {dist_version('django')}; {args.count} uploads per workload, "
        f"duplicates {', '.join(f'{rate:.0%}' for rate in args.rates)}, {args.repeat} runs"
    )
    rows: list[dict[str, Any]] = []
    server = RedisServer()
    try:
        try:
            server.start()
            redis_url: str | None = server.url
        except RedisServerError as error:
            print(f"no Redis for DedupStorage: {error}")
            redis_url = None
        for candidate in CANDIDATES:
            started = time.perf_counter()
            print(f"  {candidate.key} ...", end=" ", flush=True)
            row = run_child(candidate, redis_url, args)
            print(f"{row['status']} ({time.perf_counter() - started:.1f} s)")
            rows.append(row)
    finally:
        server.stop()
    print_tables(rows)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
