"""Django app config: add ``"dedupstore"`` to INSTALLED_APPS to get the system checks."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class DedupStoreConfig(AppConfig):
    name = "dedupstore"
    verbose_name = "dedupstore"

    def ready(self) -> None:
        from dedupstore.checks import (
            check_index_eviction_policy,
            check_namespaces,
            check_old_settings,
            check_storages,
        )

        checks.register(check_storages)
        checks.register(check_old_settings, checks.Tags.compatibility)
        checks.register(check_index_eviction_policy)
        checks.register(check_namespaces)
