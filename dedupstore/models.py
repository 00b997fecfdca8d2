"""The database's own record of each namespace's index: the witness that an index existed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models


class IndexMarker(models.Model):
    """One row per namespace whose index was initialised.

    Redis can lose everything (a ``FLUSHDB``, a restart without persistence, a failover to
    an empty replica); the database keeps this row. A marker whose index holds no
    initialisation mark means the index was lost: deletes of untracked names then refuse
    (``IndexLost``) until ``manage.py dedupstore reconcile`` rebuilds it.
    """

    # Without the django-stubs mypy plugin, each field spells out its (set, get) types.
    namespace: models.CharField[str, str] = models.CharField(max_length=255, unique=True)
    #: The index URL, password masked: where the index was when it was marked.
    index_url: models.CharField[str, str] = models.CharField(max_length=500)
    created: models.DateTimeField[datetime, datetime] = models.DateTimeField(auto_now_add=True)
    #: The last ``reconcile`` that rebuilt this namespace's counts.
    reconciled: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True, blank=True
    )
    #: The result of the last ``verify`` (its ``--json`` report), shown in the admin.
    last_verify: models.JSONField[Any, Any] = models.JSONField(null=True, blank=True)
    last_verify_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True, blank=True
    )

    class Meta:
        verbose_name = "index marker"

    def __str__(self) -> str:
        return self.namespace
