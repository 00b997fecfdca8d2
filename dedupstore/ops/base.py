"""What every ``manage.py dedupstore`` command shares: reports, batches, progress, rows.

Every command reads with bounded memory: the live set streams in name order
(``dedupstore.liveset.live_counts``), the index's records stream in batches
(``Index.scan_records``), and a batch of names is matched against the rows with one
``IN`` query per field.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.files.storage import FileSystemStorage, Storage
from django.db.models import Count

from dedupstore import liveset

if TYPE_CHECKING:
    from dedupstore.index.base import CountCheck
    from dedupstore.storage import DedupStorage

__all__ = [
    "BATCH_SIZE",
    "EXAMPLES",
    "Existence",
    "Findings",
    "Report",
    "StoredHasher",
    "batched",
    "compared_batches",
    "held_counts",
    "inner_names",
    "live_total",
    "progress",
    "source_counts",
    "stored_content_key",
    "too_small",
]

T = TypeVar("T")

#: Names matched against the index and the rows per round trip.
BATCH_SIZE = 2000
#: Names kept per kind of finding for the report (the counts are always complete).
EXAMPLES = 20
#: A directory is listed once, instead of asking ``exists`` per name, when a batch holds
#: at least this many names in it.
LIST_AT = 16
#: Directory listings kept between batches (the live set's name order visits a directory's
#: files together, but a subdirectory's names can come between them).
LISTINGS_KEPT = 4


def batched(items: Iterable[T], size: int = BATCH_SIZE) -> Iterator[list[T]]:
    """Yield lists of at most ``size`` items."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def compared_batches(
    storage: DedupStorage,
    live: Iterable[tuple[str, int]],
    shared_from: Callable[[], int] = lambda: 2,
) -> Iterator[tuple[list[str], list[int], CountCheck]]:
    """Yield each batch of the live set (its names and rows) with the index's comparison.

    The index compares a batch (``Index.compare_counts``) in a thread of its own while
    this one reads the next batch from the database and the caller handles the one
    before: the three overlap. Memory: two batches. ``shared_from`` is asked before each
    comparison for the fewest references a record counted among the most shared needs.
    """
    index = storage.index

    def compare(names: list[str], rows: list[int]) -> Future[CountCheck]:
        # shared_from() is asked here, in the caller's thread: the one that changes it.
        return pool.submit(index.compare_counts, names, rows, shared_from=shared_from())

    def split(batch: list[tuple[str, int]]) -> tuple[list[str], list[int]]:
        return [name for name, _ in batch], [held for _, held in batch]

    batches = batched(live)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dedupstore-compare") as pool:
        current = next(batches, None)
        if current is None:
            return
        names, rows = split(current)
        pending = compare(names, rows)
        while True:
            following = next(batches, None)  # read while the index compares
            check = pending.result()
            if following is not None:
                next_names, next_rows = split(following)
                pending = compare(next_names, next_rows)
            yield names, rows, check  # handled while the index compares the next
            if following is None:
                return
            names, rows = next_names, next_rows


@dataclass
class Findings:
    """How many of one kind of finding there were, with the first few as examples."""

    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, **example: Any) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(example)

    def as_json(self) -> dict[str, Any]:
        return {"count": self.count, "examples": self.examples}


@dataclass
class Report:
    """One command's result for one storage: figures, findings, and whether all is well."""

    command: str
    storage: str
    namespace: str
    figures: dict[str, Any] = field(default_factory=dict)
    findings: dict[str, Findings] = field(default_factory=dict)
    #: The kinds of findings that are problems (exit status 1); the others inform.
    problem_kinds: tuple[str, ...] = ()
    #: Lines of text beyond the figures and findings (a refusal, what was done).
    notes: list[str] = field(default_factory=list)
    refused: bool = False

    def finding(self, kind: str) -> Findings:
        return self.findings.setdefault(kind, Findings())

    @property
    def problems(self) -> int:
        return sum(
            self.findings[kind].count for kind in self.problem_kinds if kind in self.findings
        )

    @property
    def ok(self) -> bool:
        return not self.refused and self.problems == 0

    def as_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "storage": self.storage,
            "namespace": self.namespace,
            "ok": self.ok,
            "problems": self.problems,
            "refused": self.refused,
            "figures": self.figures,
            "findings": {kind: found.as_json() for kind, found in self.findings.items()},
            "notes": self.notes,
        }

    def as_text(self) -> str:
        lines = [f"{self.storage} (namespace {self.namespace!r}): {self.command}"]
        for key, value in self.figures.items():
            lines.append(f"  {key.replace('_', ' ')}: {_figure(value)}")
        for kind, found in self.findings.items():
            marker = "!" if kind in self.problem_kinds and found.count else " "
            lines.append(f" {marker}{kind.replace('_', ' ')}: {found.count}")
            for example in found.examples[:5]:
                lines.append("      " + ", ".join(f"{k}={v!r}" for k, v in example.items()))
            if found.count > 5:
                lines.append(f"      ... and {found.count - 5} more (--json lists {EXAMPLES})")
        lines.extend(f"  {note}" for note in self.notes)
        lines.append(
            "  result: " + ("ok" if self.ok else "refused" if self.refused else "PROBLEMS")
        )
        return "\n".join(lines)


def _figure(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, list):
        return (
            "; ".join(
                ", ".join(f"{k}={v}" for k, v in item.items())
                if isinstance(item, dict)
                else str(item)
                for item in value
            )
            or "none"
        )
    return str(value)


def progress(
    items: Iterable[T], *, enabled: bool, description: str, total: int | None = None
) -> Iterable[T]:
    """Wrap ``items`` in a progress bar on standard error when ``enabled`` (a terminal)."""
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional: no bar then
        return items
    return tqdm(items, desc=description, total=total, file=sys.stderr, unit=" names")


def source_counts(storage: DedupStorage) -> Counter[str]:
    """Count the names ``DEDUPSTORE_REFERENCE_SOURCES`` yield (held in memory: say so)."""
    counts: Counter[str] = Counter()
    for source in liveset.reference_sources():
        counts.update(source(storage))
    return counts


def held_counts(
    storage: DedupStorage, names: list[str], sources: Counter[str] | None = None
) -> dict[str, int]:
    """Return, for each of ``names`` that rows hold, how many rows hold it.

    One grouped ``IN`` query per field, plus the reference sources' counts (``sources``,
    read once by the caller with ``source_counts``).
    """
    counts: Counter[str] = Counter()
    if not names:
        return {}
    for ref in liveset.reference_fields(storage):
        rows = (
            ref.queryset()
            .filter(**{f"{ref.field}__in": names})
            .values_list(ref.field)
            .annotate(rows=Count("pk"))
            .order_by()
        )
        for name, count in rows:
            counts[str(name)] += count
    if sources:
        for name in names:
            if name in sources:
                counts[name] += sources[name]
    return dict(counts)


def inner_names(storage: DedupStorage, path: str = "") -> Iterator[str]:
    """Yield every name the inner storage lists, walking its directories one at a time.

    Raises ``NotImplementedError`` when the inner storage cannot list.
    """
    directories, files = storage.inner.listdir(path)
    for name in sorted(files):
        yield f"{path}/{name}" if path else name
    for directory in sorted(directories):
        yield from inner_names(storage, f"{path}/{directory}" if path else directory)


#: A name a listing may not find as written: absolute, with a backslash, or with an
#: empty, ``.`` or ``..`` part.
_UNUSUAL_NAME = re.compile(r"^/|\\|(?:^|/)\.{0,2}(?:/|$)")
#: What ``_UNUSUAL_NAME`` matches, as substrings of names joined by newlines (and
#: framed by them): ``^`` and ``$`` become newlines.
_UNUSUAL_PARTS = (
    "\\",
    *(
        f"{before}{dots}{after}"
        for before in ("\n", "/")
        for dots in ("", ".", "..")
        for after in ("/", "\n")
    ),
)


def _any_unusual(names: list[str]) -> bool:
    """Whether ``_UNUSUAL_NAME`` may match one of ``names`` (a few C searches per batch).

    Never False when one matches: each of its matches is one of these substrings of the
    joined names. It may be True when none does (a name holding a newline).
    """
    joined = "\n" + "\n".join(names) + "\n"
    return any(part in joined for part in _UNUSUAL_PARTS)


class Existence:
    """Tell which names the inner storage holds: one listing for many names of a directory.

    A name the listing lacks is asked again with ``exists`` (broken links are rare), so a
    listing older than the object never reports a broken link that is not one. Memory: the
    listings kept (``LISTINGS_KEPT`` directories). Unusual names, storages that cannot
    list and directories few names of a batch lie in are asked with ``exists``, which
    raises what it always raises (``SuspiciousFileOperation`` for a bad name).
    """

    def __init__(self, storage: DedupStorage) -> None:
        self.inner = storage.inner
        self.can_list = True
        self._listings: OrderedDict[str, frozenset[str]] = OrderedDict()

    def existing(self, names: Iterable[str]) -> set[str]:
        """Return those of ``names`` the inner storage holds."""
        names = list(names)
        # One search over the whole batch: the per-name search is only needed when the
        # batch holds an unusual name (a per-line match is never narrower than one per name).
        if _any_unusual(names):
            unusual = [name for name in names if _UNUSUAL_NAME.search(name)]
            found = {name for name in unusual if self.inner.exists(name)}
            names = [name for name in names if not _UNUSUAL_NAME.search(name)]
        else:
            found = set()
        directories = Counter(name.rpartition("/")[0] for name in names)
        wanted = set(names)
        for directory, count in directories.items():
            if self.can_list and (count >= LIST_AT or directory in self._listings):
                listing = self._listing(directory)
                if listing is not None:
                    found |= wanted & listing
        # Directories few names lie in, and names a listing lacks, are asked one by one.
        found.update(name for name in names if name not in found and self.inner.exists(name))
        return found

    def _listing(self, directory: str) -> frozenset[str] | None:
        """Return the names (full, as ``exists`` takes them) ``directory`` lists."""
        listing = self._listings.get(directory)
        if listing is not None:
            self._listings.move_to_end(directory)
            return listing
        try:
            directories, files = self.inner.listdir(directory)
        except NotImplementedError:
            self.can_list = False
            return None
        except FileNotFoundError:
            directories, files = [], []
        prefix = f"{directory}/" if directory else ""
        listing = frozenset(prefix + entry for entry in itertools.chain(directories, files))
        self._listings[directory] = listing
        if len(self._listings) > LISTINGS_KEPT:
            self._listings.popitem(last=False)
        return listing


class StoredHasher:
    """Hash stored objects: return each one's content key and size, or None if gone.

    A file of a plain ``FileSystemStorage`` is mapped and hashed by its path, as raw BLAKE3
    does (``update_mmap``: no ``File``, no Python buffer); any other storage is read
    through its ``open``. A plain storage is one that opens files as Django's does (a
    subclass may decrypt or decompress in ``_open``) under a ``DedupStorage`` that hashes
    stored objects its own way.
    """

    def __init__(self, storage: DedupStorage, *, one_thread_per_file: bool = False) -> None:
        from dedupstore.storage import DedupStorage

        self.storage = storage
        #: Hash each mapped file on one thread (the caller hashes several files at once).
        self._one_thread_per_file = one_thread_per_file
        inner = storage.inner
        self._location: str | None = None
        if (
            isinstance(inner, FileSystemStorage)
            and getattr(type(inner), "_open", None) is getattr(FileSystemStorage, "_open", 0)
            and type(inner).open is Storage.open
            and type(inner).path is FileSystemStorage.path
            and type(storage)._content_key_of_stored is DedupStorage._content_key_of_stored
        ):
            self._location = str(inner.location)
        # Joining by hand is path()'s result only where "/" is the one separator.
        self._join = os.sep == "/" and os.altsep is None

    @property
    def maps_paths(self) -> bool:
        """Whether files are hashed by their paths (a plain ``FileSystemStorage``)."""
        return self._location is not None

    def hash_all(self, names: list[str]) -> list[tuple[str, int] | None]:
        """Hash each of ``names`` in turn (one task of several run at once)."""
        return [self(name) for name in names]

    def __call__(self, name: str) -> tuple[str, int] | None:
        if self._location is None:
            key, size = self.storage._content_key_of_stored(name)
            return (key, size) if key else None
        # A usual name is joined as FileSystemStorage.path() would (its location is
        # absolute); path() checks the others, raising SuspiciousFileOperation.
        if not self._join or _UNUSUAL_NAME.search(name):
            path = str(self.storage.inner.path(name))
        else:
            path = os.path.join(self._location, name)
        try:
            size = os.stat(path).st_size
            hint = 0 if self._one_thread_per_file else size  # 0: one thread
            hasher = self.storage.hasher.new(size_hint=hint)
            hasher.update_mmap(path)
        except FileNotFoundError:
            return None
        return self.storage._content_key(name, hasher.hexdigest()), size


def stored_content_key(storage: DedupStorage, name: str) -> tuple[str, int] | None:
    """Hash the stored object ``name``; return its content key and size, or None if gone."""
    return StoredHasher(storage)(name)


def live_total(storage: DedupStorage, sources: Counter[str] | None = None) -> int:
    """Return how many references the rows hold in all: one ``COUNT`` per field."""
    total = 0
    for ref in liveset.reference_fields(storage):
        queryset = ref.queryset().exclude(**{ref.field: ""})
        total += queryset.exclude(**{f"{ref.field}__isnull": True}).count()
    return total + sum((sources or source_counts(storage)).values())


def too_small(rows: int, counted: int, max_drop: float) -> bool:
    """Whether ``rows`` references held look like a misconfiguration against ``counted``.

    True when the index counts references and the rows hold none, or fewer by more than
    the share ``max_drop``: a run pointed at the wrong database, or missing a reference
    source, must not lower every count (reconcile) or wipe the storage (gc).
    """
    return bool(counted) and (rows == 0 or rows < counted * (1 - max_drop))
