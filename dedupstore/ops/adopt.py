"""``adopt``: bring existing files under the index, counting their references from the rows.

For a site moving from django-ipfs-storage, django-cloud-storages or a plain storage: each
name the live set holds (and with ``everything``, each object the inner storage lists)
that the index does not know is hashed and recorded with as many references as rows hold
it. Names stream a batch at a time (memory stays flat). ``jobs`` objects are hashed at
once: by default one per core for a plain ``FileSystemStorage``, whose files are mapped
by their paths (``ops.base.StoredHasher``), and one for any other storage (``--jobs N``
for remote backends). A batch is recorded with one index call in a thread of its own
while the next batch is hashed. The records are the progress: a run that was interrupted
and is started again skips every name recorded already.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from dedupstore import liveset
from dedupstore.marker import IndexState, index_state, initialise_index
from dedupstore.ops.base import (
    Report,
    StoredHasher,
    batched,
    held_counts,
    inner_names,
    progress,
    source_counts,
)

if TYPE_CHECKING:
    from collections import Counter

    from dedupstore.storage import DedupStorage

__all__ = ["adopt", "default_jobs"]

#: Names a hashing job takes at a time (a task per file costs more than a small file).
NAMES_PER_TASK = 16
#: Names hashed, then recorded, a batch: small enough that recording one batch overlaps
#: hashing the next even in a run of a few thousand files.
ADOPT_BATCH = 256

#: A batch waiting to be recorded: its records (name, content key, size, references) and
#: the index's replies to come.
_Recording = tuple[list[tuple[str, str, int, int]], "Future[list[bool]]"]


def default_jobs(storage: DedupStorage) -> int:
    """Return how many objects ``adopt`` hashes at once unless told: one per core for files
    mapped by path (hashing is the work), one for any other storage."""
    return (os.cpu_count() or 1) if StoredHasher(storage).maps_paths else 1


def adopt(
    storage: DedupStorage,
    *,
    where: str,
    everything: bool = False,
    jobs: int | None = None,
    show_progress: bool = False,
) -> Report:
    """Record every name the rows (or with ``everything``, the inner storage) hold."""
    report = Report("adopt", where, storage.namespace, problem_kinds=("broken_links",))
    for kind in ("recorded", "already_known", "broken_links"):
        report.finding(kind)
    state = index_state(storage)
    jobs = jobs or default_jobs(storage)
    adopter = _Adopter(storage, report, jobs)
    with adopter:
        live = progress(liveset.live_counts(storage), enabled=show_progress, description="rows")
        adopter.adopt(live)
        if everything:
            sources = source_counts(storage)
            try:
                listed = progress(inner_names(storage), enabled=show_progress, description="inner")
                adopter.adopt(_with_rows(storage, listed, sources))
            except NotImplementedError:
                report.notes.append("--all: the inner storage cannot list its objects")
    if state is IndexState.NEW:
        initialise_index(storage)
    elif state is IndexState.LOST:
        report.notes.append("the index was lost: run 'manage.py dedupstore reconcile' next")
    report.figures.update(
        index_state_before=state.value, hashed_bytes=adopter.hashed_bytes, jobs=jobs
    )
    return report


def _with_rows(
    storage: DedupStorage, names: Iterable[str], sources: Counter[str]
) -> Iterator[tuple[str, int]]:
    """Yield each listed name with how many rows hold it (one query per field a batch)."""
    for batch in batched(names):
        held = held_counts(storage, batch, sources)
        yield from ((name, held.get(name, 0)) for name in batch)


class _Adopter:
    """Hash the unknown names of each batch; record a batch while the next is hashed."""

    def __init__(self, storage: DedupStorage, report: Report, jobs: int) -> None:
        self.storage = storage
        self.report = report
        self.jobs = jobs
        # With several jobs each file gets one thread: the jobs already use the cores.
        self.hasher = StoredHasher(storage, one_thread_per_file=jobs > 1)
        self.hashed_bytes = 0
        self._hashing = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="dedupstore-adopt")
        self._recorder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dedupstore-record")
        self._pending: _Recording | None = None

    def __enter__(self) -> _Adopter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if exc_info[0] is None:
                self._finish_recording()
        finally:
            self._recorder.shutdown()
            self._hashing.shutdown()

    def adopt(self, names: Iterable[tuple[str, int]]) -> None:
        """Adopt ``names`` (name, rows holding it) a batch at a time."""
        for batch in batched(names, ADOPT_BATCH):
            found = self._hash_unknown(batch)
            self._finish_recording()
            self._pending = (found, self._recorder.submit(self.storage.index.add_records, found))
        # The next names (another pass) may repeat these: they must be known first.
        self._finish_recording()

    def _hash_unknown(self, batch: list[tuple[str, int]]) -> list[tuple[str, str, int, int]]:
        """Return the records (name, content key, size, rows) of the names the index lacks."""
        report = self.report
        # The index's count comparison names the records it lacks (state None), reading
        # each in place: a cheaper question than reading the records.
        check = self.storage.index.compare_counts(
            [name for name, _ in batch], [held for _, held in batch]
        )
        lacking = {position for position, state, _, _ in check.differences if state is None}
        unknown = []
        for position, (name, held) in enumerate(batch):
            if position in lacking:
                unknown.append((name, held))
            else:
                report.finding("already_known").add(name=name)
        found: list[tuple[str, str, int, int]] = []
        for (name, held), stored in zip(unknown, self._hash([n for n, _ in unknown]), strict=True):
            if stored is None:
                if held:
                    report.finding("broken_links").add(name=name, rows=held)
                continue
            digest, size = stored
            self.hashed_bytes += size
            found.append((name, digest, size, held))
        return found

    def _hash(self, names: list[str]) -> Iterable[tuple[str, int] | None]:
        """Hash ``names``, ``jobs`` at a time (in this thread with one job)."""
        if self.jobs == 1:
            return map(self.hasher, names)
        tasks = [names[at : at + NAMES_PER_TASK] for at in range(0, len(names), NAMES_PER_TASK)]
        hash_task = self.hasher.hash_all
        return itertools.chain.from_iterable(self._hashing.map(hash_task, tasks))

    def _finish_recording(self) -> None:
        """Wait for the batch being recorded and report each name's outcome."""
        if self._pending is None:
            return
        found, replies = self._pending
        self._pending = None
        for (name, _, size, held), recorded in zip(found, replies.result(), strict=True):
            if recorded:
                self.report.finding("recorded").add(name=name, references=held, size=size)
            else:
                self.report.finding("already_known").add(name=name)
