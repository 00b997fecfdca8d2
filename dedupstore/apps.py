"""Django app config: add ``"dedupstore"`` to INSTALLED_APPS to get the system checks."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_migrate


class DedupStoreConfig(AppConfig):
    name = "dedupstore"
    verbose_name = "dedupstore"

    def ready(self) -> None:
        from dedupstore.checks import (
            check_guarded_field_indexes,
            check_index_eviction_policy,
            check_index_lost,
            check_namespaces,
            check_old_settings,
            check_storages,
        )

        checks.register(check_storages)
        checks.register(check_old_settings, checks.Tags.compatibility)
        checks.register(check_index_eviction_policy)
        checks.register(check_namespaces)
        checks.register(check_guarded_field_indexes, checks.Tags.models)
        # It reads the database's marker: run by migrate and check --database, as Django
        # runs every check that queries a database.
        checks.register(check_index_lost, checks.Tags.database)
        post_migrate.connect(_initialise_indexes, sender=self)
        from dedupstore.liveset import connect_row_signals

        connect_row_signals()


def _initialise_indexes(using: str = "default", **kwargs: Any) -> None:
    """After ``migrate``: mark the index of every configured ``DedupStorage`` (see marker)."""
    import logging

    from dedupstore.exceptions import IndexUnavailable
    from dedupstore.marker import IndexState, initialise_index
    from dedupstore.storages_in_use import storages_in_use

    logger = logging.getLogger("dedupstore")
    for where, storage in storages_in_use():
        try:
            state = initialise_index(storage, using=using)
        except IndexUnavailable as exc:
            logger.warning("dedupstore: could not mark the index of %s: %s", where, exc)
            continue
        if state is IndexState.LOST:
            logger.error(
                "dedupstore: the index of %s (namespace %r) was lost; run "
                "'python manage.py dedupstore reconcile'",
                where,
                storage.namespace,
            )
