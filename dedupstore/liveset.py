"""The live set: the names that rows in the Django database hold for a ``DedupStorage``.

The rows are the truth about who references what; the index's counts are a cache of it.
A storage's live set is every value of every concrete model's ``FileField`` (``ImageField``
and other subclasses included) whose storage shares its namespace, in every database alias
the model lives in, plus the names yielded by the callables that the setting
``DEDUPSTORE_REFERENCE_SOURCES`` names. Everything here reads with bounded memory: values
are streamed with ``values_list(...).iterator(chunk_size=...)``, never as model instances.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, models, router, transaction
from django.db.models import F
from django.db.models.functions import Collate
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from dedupstore.storage import DedupStorage

__all__ = [
    "FieldReference",
    "has_witnesses",
    "holders_of",
    "live_counts",
    "reference_fields",
    "reference_sources",
    "rows_holding",
]

#: Rows fetched per round trip when streaming a field's values (a server-side cursor on
#: PostgreSQL; about 1 MB of names held at a time).
DEFAULT_CHUNK_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class FieldReference:
    """One place where rows hold names: a model's file field in one database."""

    model: type[models.Model]
    field: str
    using: str

    @property
    def label(self) -> str:
        return f"{self.model._meta.label}.{self.field} ({self.using})"

    def queryset(self) -> models.QuerySet[Any]:
        # The base manager: a default manager that filters rows out must not hide them.
        return self.model._base_manager.using(self.using).all()


def _shares_namespace(field_storage: object, storage: DedupStorage) -> bool:
    from dedupstore.storage import DedupStorage

    if field_storage is storage:
        return True
    return isinstance(field_storage, DedupStorage) and field_storage.namespace == storage.namespace


def reference_fields(storage: DedupStorage) -> list[FieldReference]:
    """Return every (model, file field, database) whose rows hold names of ``storage``."""
    found = []
    for model in apps.get_models():
        meta = model._meta
        if meta.proxy or meta.abstract or meta.swapped:
            continue
        for field in meta.local_concrete_fields:  # a parent's fields belong to the parent
            if not isinstance(field, models.FileField):
                continue
            # Django resolves a callable storage when the field is made (field.storage).
            if not _shares_namespace(field.storage, storage):
                continue
            for using in connections:
                if router.allow_migrate_model(using, model):
                    found.append(FieldReference(model, field.attname, using))
    return found


def reference_sources() -> list[Callable[[DedupStorage], Iterable[str]]]:
    """Return the callables of ``DEDUPSTORE_REFERENCE_SOURCES`` (dotted paths)."""
    paths = getattr(settings, "DEDUPSTORE_REFERENCE_SOURCES", ())
    if isinstance(paths, str) or not isinstance(paths, list | tuple):
        raise ImproperlyConfigured(
            "DEDUPSTORE_REFERENCE_SOURCES must be a list of dotted paths of callables that "
            f"take the storage and yield the names it holds, not {paths!r}"
        )
    sources = []
    for path in paths:
        try:
            source = import_string(path)
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"DEDUPSTORE_REFERENCE_SOURCES: cannot import {path!r}: {exc}"
            ) from exc
        if not callable(source):
            raise ImproperlyConfigured(f"DEDUPSTORE_REFERENCE_SOURCES: {path!r} is not callable")
        sources.append(source)
    return sources


def has_witnesses(storage: DedupStorage) -> bool:
    """Return True when the database can say who holds ``storage``'s names."""
    return bool(reference_fields(storage) or reference_sources())


def rows_holding(storage: DedupStorage, name: str) -> dict[str, int]:
    """Return, per field (``app.Model.field (db)``) and source, how many rows hold ``name``.

    One ``COUNT`` query per field, then the reference sources; fields without such a row
    are left out.
    """
    rows: dict[str, int] = {}
    for ref in reference_fields(storage):
        count = ref.queryset().filter(**{ref.field: name}).count()
        if count:
            rows[ref.label] = count
    for source in reference_sources():
        count = sum(1 for held in source(storage) if held == name)
        if count:
            rows[f"{source.__module__}.{source.__qualname__}"] = count
    return rows


def holders_of(storage: DedupStorage, name: str) -> list[str]:
    """Return the fields (``app.Model.field (db)``) with a row that holds ``name``.

    One ``EXISTS`` query per field, then the reference sources.
    """
    holders = [
        ref.label
        for ref in reference_fields(storage)
        if ref.queryset().filter(**{ref.field: name}).exists()
    ]
    for source in reference_sources():
        if any(held == name for held in source(storage)):
            holders.append(f"{source.__module__}.{source.__qualname__}")
    return holders


#: Collations that order strings by code point, as Python does (UTF-8 byte order).
_CODE_POINT_COLLATIONS = {"postgresql": "C", "mysql": "utf8mb4_bin"}


def _sorted_names(ref: FieldReference, chunk_size: int) -> Iterator[str]:
    """Stream the names one field's rows hold, in Python's (code point) order."""
    queryset = ref.queryset().exclude(**{ref.field: ""}).exclude(**{f"{ref.field}__isnull": True})
    # SQLite's default BINARY collation already compares UTF-8 bytes.
    collation = _CODE_POINT_COLLATIONS.get(connections[ref.using].vendor)
    order: Any = Collate(F(ref.field), collation) if collation else F(ref.field)
    values = queryset.order_by(order).values_list(ref.field, flat=True)
    return values.iterator(chunk_size=chunk_size)


def live_counts(
    storage: DedupStorage, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Iterator[tuple[str, int]]:
    """Yield ``(name, rows holding it)`` for the whole live set, in name order.

    Each field is read in name order by its database and the streams are merged, so memory
    stays flat whatever the number of rows. A name a reference source yields counts once
    per time it is yielded.
    """
    streams: list[Iterable[str]] = [
        _sorted_names(ref, chunk_size) for ref in reference_fields(storage)
    ]
    streams.extend(sorted(source(storage)) for source in reference_sources())
    # The fields that hold names (often one: the others' models, databases are empty)
    # need no merge when there is only one.
    started = []
    for stream in streams:
        iterator = iter(stream)
        first = next(iterator, None)
        if first is not None:
            started.append(itertools.chain((first,), iterator))
    yield from _runs(started[0] if len(started) == 1 else heapq.merge(*started))


def _runs(names: Iterable[str]) -> Iterator[tuple[str, int]]:
    """Yield ``(name, how many times in a row)`` for sorted ``names`` (groupby, faster)."""
    iterator = iter(names)
    current = next(iterator, None)
    if current is None:
        return
    count = 1
    for name in iterator:
        if name == current:
            count += 1
        else:
            yield current, count
            current, count = name, 1
    yield current, count


# -- a delete kept for the caller's own row --------------------------------------------
#
# ``FieldFile.delete()`` calls ``storage.delete(name)`` while its own row still holds the
# name, and saves the row only afterwards: the guard then keeps the object for that very
# row. The name waits here; when a row of a model whose fields use the storage is saved or
# deleted, the delete is asked again once the transaction commits, and the guard then
# lets the object go if no row holds it any more.

_waiting: dict[str, tuple[DedupStorage, set[str]]] = {}
_waiting_lock = threading.Lock()


def delete_again_after_rows_change(storage: DedupStorage, name: str) -> None:
    """Ask ``storage.delete(name)`` again after the next save or delete of a holding model."""
    with _waiting_lock:
        _waiting.setdefault(storage.namespace, (storage, set()))[1].add(name)


def _on_row_change(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    """``post_save``/``post_delete``: delete again the waiting names the row let go of."""
    if not _waiting:
        return
    deleted = kwargs.get("signal") is models.signals.post_delete
    for field in sender._meta.concrete_fields:
        if not isinstance(field, models.FileField):
            continue
        with _waiting_lock:
            entry = _waiting.get(getattr(field.storage, "namespace", None) or "")
            if entry is None:
                continue
            storage, names = entry
            value = getattr(instance, field.attname) or ""
            held = "" if deleted else str(value)
            released = {name for name in names if name != held}
            names -= released
            if not names:
                _waiting.pop(storage.namespace, None)
        using = kwargs.get("using") or "default"
        for name in released:
            # After the commit: a transaction that rolls back still holds the name.
            transaction.on_commit(functools.partial(storage.delete, name), using=using)


def connect_row_signals() -> None:
    """Connect the row-change handler (the app config does this when Django starts)."""
    models.signals.post_save.connect(_on_row_change, dispatch_uid="dedupstore-row-saved")
    models.signals.post_delete.connect(_on_row_change, dispatch_uid="dedupstore-row-deleted")
