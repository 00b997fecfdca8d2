"""``adopt``: bring existing files under the index, counting their references from the rows.

For a site moving from django-ipfs-storage, django-cloud-storages or a plain storage: each
name the live set holds (and with ``everything``, each object the inner storage lists)
that the index does not know is hashed and recorded with as many references as rows hold
it. Names stream a batch at a time (memory stays flat); ``jobs`` objects are read at once
(for remote backends), a plain ``FileSystemStorage``'s files mapped by their paths
(``ops.base.StoredHasher``); a batch is hashed, then recorded with one index call.
The records are the progress: a run that was interrupted and is started again skips every
name recorded already.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
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
    from collections.abc import Iterable

    from dedupstore.storage import DedupStorage

__all__ = ["adopt"]


def adopt(
    storage: DedupStorage,
    *,
    where: str,
    everything: bool = False,
    jobs: int = 1,
    show_progress: bool = False,
) -> Report:
    """Record every name the rows (or with ``everything``, the inner storage) hold."""
    report = Report("adopt", where, storage.namespace, problem_kinds=("broken_links",))
    for kind in ("recorded", "already_known", "broken_links"):
        report.finding(kind)
    state = index_state(storage)
    hashed_bytes = 0
    hasher = StoredHasher(storage)
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="dedupstore-adopt") as pool:
        live = progress(liveset.live_counts(storage), enabled=show_progress, description="rows")
        for batch in batched(live):
            hashed_bytes += _adopt_batch(storage, report, pool, jobs, hasher, batch)
        if everything:
            sources = source_counts(storage)
            try:
                listed = progress(inner_names(storage), enabled=show_progress, description="inner")
                for names in batched(listed):
                    held = held_counts(storage, names, sources)
                    hashed_bytes += _adopt_batch(
                        storage,
                        report,
                        pool,
                        jobs,
                        hasher,
                        [(name, held.get(name, 0)) for name in names],
                    )
            except NotImplementedError:
                report.notes.append("--all: the inner storage cannot list its objects")
    if state is IndexState.NEW:
        initialise_index(storage)
    elif state is IndexState.LOST:
        report.notes.append("the index was lost: run 'manage.py dedupstore reconcile' next")
    report.figures.update(index_state_before=state.value, hashed_bytes=hashed_bytes, jobs=jobs)
    return report


def _adopt_batch(
    storage: DedupStorage,
    report: Report,
    pool: ThreadPoolExecutor,
    jobs: int,
    hasher: StoredHasher,
    batch: Iterable[tuple[str, int]],
) -> int:
    """Hash and record the unknown names of one batch; return the bytes hashed."""
    batch = list(batch)
    records = storage.index.lookup_many([name for name, _ in batch])
    unknown = []
    for (name, held), record in zip(batch, records, strict=True):
        if record is None:
            unknown.append((name, held))
        else:
            report.finding("already_known").add(name=name)
    # Hash the whole batch, then record it in one call: the index calls wait for no
    # hashing thread. One job hashes here, in this thread.
    hashing = pool.map if jobs > 1 else map
    keys = list(hashing(hasher, [name for name, _ in unknown]))
    hashed = 0
    found: list[tuple[str, str, int, int]] = []
    for (name, held), stored in zip(unknown, keys, strict=True):
        if stored is None:
            if held:
                report.finding("broken_links").add(name=name, rows=held)
            continue
        digest, size = stored
        hashed += size
        found.append((name, digest, size, held))
    for (name, _, size, held), recorded in zip(
        found, storage.index.add_records(found), strict=True
    ):
        if recorded:
            report.finding("recorded").add(name=name, references=held, size=size)
        else:
            report.finding("already_known").add(name=name)
    return hashed
