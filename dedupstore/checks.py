"""System checks for STORAGES entries that use ``DedupStorage``."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from dedupstore.index import mask_url
from dedupstore.storage import DedupStorage

#: Attributes by which common inner storages overwrite taken names themselves.
_INNER_OVERWRITE_FLAGS = ("allow_overwrite", "file_overwrite")


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
    for flag in _INNER_OVERWRITE_FLAGS:
        # Django's FileSystemStorage keeps allow_overwrite as _allow_overwrite.
        if True in (getattr(inner, flag, False), getattr(inner, f"_{flag}", False)):
            messages.append(
                checks.Warning(
                    f"the inner storage has {flag}=True: it may replace an object that other "
                    "references share",
                    hint=f"turn {flag} off on the inner storage and use DedupStorage's "
                    "overwrite option, which never modifies a shared object",
                    obj=where,
                    id="dedupstore.W002",
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
    for alias, definition in getattr(settings, "STORAGES", {}).items():
        try:
            backend = import_string(definition.get("BACKEND", ""))
        except ImportError:
            continue
        if not (isinstance(backend, type) and issubclass(backend, DedupStorage)):
            continue
        try:
            storage = backend(**definition.get("OPTIONS", {}))
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
    for alias, definition in getattr(settings, "STORAGES", {}).items():
        try:
            backend = import_string(definition.get("BACKEND", ""))
        except ImportError:
            continue
        if not (isinstance(backend, type) and issubclass(backend, DedupStorage)):
            continue
        try:
            backend(**definition.get("OPTIONS", {})).namespace  # noqa: B018
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
