"""Tell a lost index from a new one: the database's marker against the index's own mark.

A namespace's index gets an initialisation mark (a key that never expires) when it is
first set up, and the database an ``IndexMarker`` row. Both present: the index is the one
the database knew. Neither: a new namespace. A marker without the mark: the index was lost.
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING

from django.apps import apps
from django.db import DatabaseError, models

if TYPE_CHECKING:
    from dedupstore.storage import DedupStorage

__all__ = ["IndexState", "index_state", "initialise_index"]

logger = logging.getLogger("dedupstore")


class IndexState(enum.Enum):
    OK = "ok"
    NEW = "new"
    LOST = "lost"
    #: The dedupstore app is not installed (or not migrated): no marker can be kept.
    UNMARKED = "unmarked"


def _marker_model() -> type[models.Model] | None:
    if not apps.is_installed("dedupstore"):
        return None
    return apps.get_model("dedupstore", "IndexMarker")


def index_state(storage: DedupStorage, *, using: str = "default") -> IndexState:
    """Compare the index's initialisation mark with the database's marker."""
    model = _marker_model()
    if model is None:
        return IndexState.UNMARKED
    marked = storage.index.is_initialised()
    try:
        known = model._default_manager.using(using).filter(namespace=storage.namespace).exists()
    except DatabaseError:
        return IndexState.UNMARKED  # not migrated yet
    if known:
        return IndexState.OK if marked else IndexState.LOST
    return IndexState.NEW


def initialise_index(storage: DedupStorage, *, using: str = "default") -> IndexState:
    """Mark a new index and record it in the database; return the state found before.

    A lost index is left as it is: only ``reconcile`` may mark it again, after it rebuilt
    the counts. An index that already carries its mark (a deployment from before the
    marker existed) gets its database row.
    """
    state = index_state(storage, using=using)
    model = _marker_model()
    if model is None or state in (IndexState.LOST, IndexState.UNMARKED):
        return state
    if state is IndexState.NEW:
        model._default_manager.using(using).get_or_create(
            namespace=storage.namespace, defaults={"index_url": storage.index.display_url}
        )
        storage.index.mark_initialised()
    return state
