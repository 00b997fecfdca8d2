"""System checks for STORAGES entries that use ``DedupStorage``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import django
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from dedupstore import naming
from dedupstore.index import mask_url
from dedupstore.options import redact
from dedupstore.protocol import backend_of
from dedupstore.storage import DedupStorage


def _dedup_storages() -> Iterator[tuple[str, type[DedupStorage], dict[str, Any]]]:
    """Yield (alias, class, options) of each ``DedupStorage`` in ``settings.STORAGES``."""
    for alias, definition in getattr(settings, "STORAGES", {}).items():
        if not isinstance(definition, Mapping):
            continue
        try:
            backend = import_string(definition.get("BACKEND", ""))
        except ImportError:
            continue  # Django reports unimportable backends itself when they are used.
        if isinstance(backend, type) and issubclass(backend, DedupStorage):
            yield alias, backend, definition.get("OPTIONS", {})


def check_storages(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Check every ``DedupStorage`` configured in ``settings.STORAGES``."""
    messages: list[checks.CheckMessage] = []
    for alias, backend, options in _dedup_storages():
        messages.extend(_check_one(alias, backend, options))
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


#: Import-path prefixes of the packages dedupstore replaces -> the class to use instead.
#: django-cloud-storages also ships a Dropbox backend, which has no replacement here.
_OLD_BACKENDS = (
    ("ipfs_storage.", "dedupstore.backends.ipfs.InterPlanetaryFileSystemStorage"),
    ("cloud_storages.backends.appwrite.", "dedupstore.backends.appwrite.AppWriteStorage"),
)
#: Settings Django 5.1 removed (it ignores them now) -> the STORAGES alias that replaced each.
_REMOVED_STORAGE_SETTINGS = (
    ("DEFAULT_FILE_STORAGE", "default"),
    ("STATICFILES_STORAGE", "staticfiles"),
)


def _replacement(backend: object) -> str | None:
    """Return dedupstore's class for an old package's import path, else None."""
    if not isinstance(backend, str):
        return None
    for prefix, replacement in _OLD_BACKENDS:
        if backend.startswith(prefix):
            return replacement
    return None


def _storages_entry(alias: str, backend: str, options: Any = None) -> str:
    """Return the ``STORAGES`` line to write, with secret-looking option values masked."""
    entry: dict[str, Any] = {"BACKEND": backend}
    if options:
        entry["OPTIONS"] = redact(options) if isinstance(options, Mapping) else options
    return f"STORAGES[{alias!r}] = {entry!r}"


def check_old_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Warn about storage settings written for the old packages that do nothing now.

    ``DEFAULT_FILE_STORAGE`` and ``STATICFILES_STORAGE`` are ignored since Django 5.1, and a
    ``STORAGES`` entry naming django-ipfs-storage's or django-cloud-storages' Appwrite
    class uses the old package, without deduplication or reference counts. Each warning
    gives the exact ``STORAGES`` entry to write instead.
    """
    messages: list[checks.CheckMessage] = []
    storages = getattr(settings, "STORAGES", {})
    # Before Django 5.1 these settings still work (Django itself warns that they go).
    removed = _REMOVED_STORAGE_SETTINGS if django.VERSION >= (5, 1) else ()
    for setting, alias in removed:
        if not hasattr(settings, setting):
            continue
        value = getattr(settings, setting)
        backend = _replacement(value) or value
        entry = _storages_entry(alias, str(backend))
        configured = storages.get(alias, {}).get("BACKEND")
        hint = (
            f"remove {setting}: STORAGES[{alias!r}] already names {backend}"
            if configured == backend
            else f"write instead: {entry}"
        )
        messages.append(
            checks.Warning(
                f"{setting} = {value!r} is ignored since Django 5.1: the {alias!r} storage "
                f"is STORAGES[{alias!r}] ({configured or 'not set'})",
                hint=hint,
                obj=f"settings.{setting}",
                id="dedupstore.W010",
            )
        )
    for alias, definition in storages.items():
        backend = definition.get("BACKEND") if isinstance(definition, Mapping) else None
        replacement = _replacement(backend)
        if replacement is None:
            continue
        entry = _storages_entry(alias, replacement, definition.get("OPTIONS"))
        messages.append(
            checks.Warning(
                f"STORAGES[{alias!r}] names {backend}, the old package's class: it stores "
                "without deduplication or reference counts",
                hint=f"to use dedupstore's drop-in replacement, write: {entry}",
                obj=f"STORAGES[{alias!r}]",
                id="dedupstore.W011",
            )
        )
    return messages


def check_index_eviction_policy(
    app_configs: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Refuse (``dedupstore.E101``) a Redis index whose server may evict keys.

    Each Redis index configured in ``settings.STORAGES`` is asked once, with a short
    timeout; one that cannot be reached now is left to the same check at first use.
    """
    import redis

    from dedupstore.index.redis import eviction_policy_problem, read_eviction_policy

    messages: list[checks.CheckMessage] = []
    for alias, backend, options in _dedup_storages():
        try:
            storage = backend(**options)
        except Exception:
            continue  # check_storages reports it
        if storage.index_url.startswith("locmem://"):
            continue
        display_url = mask_url(storage.index_url)
        client = redis.Redis.from_url(
            storage.index_url, socket_timeout=2.0, socket_connect_timeout=2.0
        )
        try:
            problem = eviction_policy_problem(read_eviction_policy(client), display_url)
        except redis.RedisError:
            continue  # unreachable now: the index checks again when it is first used
        finally:
            client.close()
        if problem:
            messages.append(
                checks.Error(
                    problem,
                    hint="redis-cli CONFIG SET maxmemory-policy noeviction, and "
                    "maxmemory-policy noeviction in redis.conf (see the Operations page)",
                    obj=f"STORAGES[{alias!r}]",
                    id="dedupstore.E101",
                )
            )
    return messages


def check_namespaces(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Report (``dedupstore.E102``) a DedupStorage whose default namespace cannot be derived.

    That happens over an inner storage dedupstore cannot place; the hint gives the
    ``namespace`` option to write.
    """
    from dedupstore.namespace import NamespaceUnknown

    messages: list[checks.CheckMessage] = []
    for alias, backend, options in _dedup_storages():
        try:
            backend(**options).namespace  # noqa: B018
        except NamespaceUnknown as exc:
            messages.append(
                checks.Error(
                    str(exc),
                    hint=f'add "namespace": "{alias}" to STORAGES[{alias!r}]["OPTIONS"] (any '
                    "fixed name, the same in every process and deploy that uses these bytes)",
                    obj=f"STORAGES[{alias!r}]",
                    id="dedupstore.E102",
                )
            )
        except Exception:
            continue  # check_storages reports a storage that cannot be built
    return messages


def _overwrite_hazards(inner: Any, where: str) -> list[checks.CheckMessage]:
    """W002: say what an inner storage's overwrite switch still changes under the wrapper.

    DedupStorage picks and reserves free names itself, so ``allow_overwrite`` or
    ``file_overwrite`` decides nothing for its saves. Only ``FileSystemStorage(
    allow_overwrite=True)`` still matters: a write that bypasses DedupStorage may replace
    an object that records use.
    """
    from django.core.files.storage import FileSystemStorage

    if backend_of(inner).content_addressed or not isinstance(inner, FileSystemStorage):
        # Names derive from content; or an object store (S3, Google Cloud, Azure...),
        # whose file_overwrite changes nothing under DedupStorage: nothing to flag.
        return []
    if naming.creates_exclusively(inner):
        return []
    return [
        checks.Warning(
            f"the inner {type(inner).__name__} has allow_overwrite=True (or OS_OPEN_FLAGS "
            "without O_EXCL), which changes nothing for DedupStorage's saves (they pick "
            "and reserve free names themselves) but lets code that writes to the inner "
            "storage directly replace an object that records still use, where "
            "FileSystemStorage would refuse to write a name that exists",
            hint="turn allow_overwrite off on the inner storage; use DedupStorage's "
            "overwrite option to replace unshared objects",
            obj=where,
            id="dedupstore.W002",
        )
    ]


def check_guarded_field_indexes(
    app_configs: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """W020: a file field the database guard asks about has no database index.

    On every last-reference delete the guard counts the rows holding the name, one query
    per field: without an index each is a scan of the whole table.
    """
    from django.apps import apps
    from django.db import models

    messages: list[checks.CheckMessage] = []
    for model in apps.get_models():
        meta = model._meta
        if meta.proxy or meta.abstract or meta.swapped:
            continue
        for field in meta.local_concrete_fields:
            if not isinstance(field, models.FileField):
                continue
            if getattr(field, "db_index", False) or field.unique:
                continue
            try:
                storage = field.storage
                guarded = isinstance(storage, DedupStorage) and storage.db_guard
            except Exception:  # default_storage may not resolve: check_storages reports it
                continue
            if not guarded:
                continue
            if any(field.name in index.fields for index in meta.indexes):
                continue
            messages.append(
                checks.Warning(
                    f"{meta.label}.{field.name} has no database index: the database guard "
                    "counts the rows holding a name on every last-reference delete, a scan "
                    "of the whole table without one",
                    hint=f"{field.name} = models.{type(field).__name__}(..., db_index=True), "
                    "then makemigrations and migrate",
                    obj=field,
                    id="dedupstore.W020",
                )
            )
    return messages


def check_index_lost(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E103: the database's marker says an index existed that Redis no longer holds."""
    if not kwargs.get("databases"):
        return []
    from dedupstore.exceptions import IndexUnavailable
    from dedupstore.marker import IndexState, index_state
    from dedupstore.storages_in_use import storages_in_use

    messages: list[checks.CheckMessage] = []
    for where, storage in storages_in_use():
        try:
            state = index_state(storage)
        except IndexUnavailable:
            continue  # reported when it is used; the check must not hang on it
        if state is IndexState.LOST:
            messages.append(
                checks.Error(
                    f"the index of namespace {storage.namespace!r} at "
                    f"{storage.index.display_url} was lost (flushed, restarted without "
                    "persistence, or failed over to an empty replica): deletes of untracked "
                    "names refuse (IndexLost) until it is rebuilt",
                    hint="python manage.py dedupstore reconcile",
                    obj=where,
                    id="dedupstore.E103",
                )
            )
    return messages
