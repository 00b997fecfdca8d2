"""Find every ``DedupStorage`` a project uses: in ``STORAGES`` and on model fields."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from django.apps import apps
from django.conf import settings
from django.core.files.storage import storages
from django.db import models

if TYPE_CHECKING:
    from dedupstore.storage import DedupStorage

__all__ = ["storages_in_use"]


def storages_in_use() -> Iterator[tuple[str, DedupStorage]]:
    """Yield ``(where, storage)`` for each distinct namespace, ``STORAGES`` aliases first."""
    from dedupstore.storage import DedupStorage

    seen: set[str] = set()
    for alias in getattr(settings, "STORAGES", {}):
        try:
            storage = storages[alias]
        except Exception:  # a broken alias is the system checks' to report
            continue
        if isinstance(storage, DedupStorage) and storage.namespace not in seen:
            seen.add(storage.namespace)
            yield f"STORAGES[{alias!r}]", storage
    for model in apps.get_models():
        for field in model._meta.local_concrete_fields:
            field_storage = getattr(field, "storage", None)
            if not isinstance(field, models.FileField) or not isinstance(
                field_storage, DedupStorage
            ):
                continue
            if field_storage.namespace not in seen:
                seen.add(field_storage.namespace)
                yield f"{model._meta.label}.{field.name}", field_storage
