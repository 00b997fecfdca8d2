"""System checks for STORAGES entries that use ``DedupStorage``."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from dedupstore import naming
from dedupstore.storage import DedupStorage


def check_storages(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Check every ``DedupStorage`` configured in ``settings.STORAGES``."""
    messages: list[checks.CheckMessage] = []
    for alias, definition in getattr(settings, "STORAGES", {}).items():
        backend_path = definition.get("BACKEND", "")
        try:
            backend = import_string(backend_path)
        except ImportError:
            continue  # Django reports unimportable backends itself when they are used.
        if not (isinstance(backend, type) and issubclass(backend, DedupStorage)):
            continue
        messages.extend(_check_one(alias, backend, definition.get("OPTIONS", {})))
    return messages


def _check_one(
    alias: str, backend: type[DedupStorage], options: dict[str, Any]
) -> list[checks.CheckMessage]:
    where = f"STORAGES[{alias!r}]"
    try:
        storage = backend(**options)
        inner = storage.inner
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), obj=where, id="dedupstore.E001")]
    except Exception as exc:
        return [
            checks.Error(
                f"the inner storage could not be built: {type(exc).__name__}: {exc}",
                obj=where,
                id="dedupstore.E002",
            )
        ]
    messages: list[checks.CheckMessage] = []
    if storage.index_url.startswith("locmem://") and not settings.DEBUG:
        messages.append(
            checks.Warning(
                "the locmem:// index lives in one process: with several workers each keeps "
                "its own reference counts and deletes can remove shared objects early",
                hint="use a redis:// index in production",
                obj=where,
                id="dedupstore.W001",
            )
        )
    messages.extend(_overwrite_hazards(inner, where))
    return messages


def _overwrite_hazards(inner: Any, where: str) -> list[checks.CheckMessage]:
    """W002: say when two saves can write one name, and what the inner's switch changes.

    DedupStorage picks free names itself, so an inner storage's ``allow_overwrite`` or
    ``file_overwrite`` no longer makes a save replace a taken name. What remains is the
    race: two saves of different content that pick the same free name at the same moment
    both write it, and unless the inner storage refuses to create a name that exists
    (``FileSystemStorage`` without ``allow_overwrite`` does), the second write replaces
    the first one's bytes under a name recorded for the first.
    """
    if getattr(inner, "content_addressed", False) or getattr(
        inner, "dedupstore_direct_save", False
    ):
        return []  # names derive from content, or the storage creates exclusively
    flag = naming.overwrite_flag(inner)
    backend = type(inner).__name__
    race = (
        "two saves of different content that pick the same free name at the same moment "
        "both write it, and the second replaces the first one's bytes under a name the "
        "index records for the first"
    )
    if hasattr(inner, "OS_OPEN_FLAGS"):
        if naming.creates_exclusively(inner):
            return []
        return [
            checks.Warning(
                f"the inner {backend} has allow_overwrite=True (or OS_OPEN_FLAGS without "
                "O_EXCL): DedupStorage still never picks a taken name, but the inner "
                f"storage no longer refuses to write one that exists, so {race}",
                hint="turn allow_overwrite off on the inner storage: under DedupStorage it "
                "changes nothing else; use DedupStorage's overwrite option to replace "
                "unshared objects",
                obj=where,
                id="dedupstore.W002",
            )
        ]
    if flag is None or flag[0] not in ("file_overwrite", "overwrite_files"):
        return []  # a storage whose write semantics are unknown: nothing to say
    return [
        checks.Warning(
            f"the inner {backend} has {flag[0]}={flag[1]}, which changes nothing under "
            "DedupStorage (it picks free names itself, and overwrite decides replacing); "
            f"but an object store replaces an object on every write, so {race}",
            hint="give uploads names no other upload takes at the same moment (an "
            "upload_to that adds a unique part), or silence dedupstore.W002 if one "
            "process writes a given name at a time",
            obj=where,
            id="dedupstore.W002",
        )
    ]
