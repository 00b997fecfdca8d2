"""The database guard asks the database only on a last-reference (or untracked) delete."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack

import pytest
from django.core.files.base import ContentFile
from django.db import connections
from django.test.utils import CaptureQueriesContext

from dedupstore import DedupStorage
from tests.ops_helpers import DATABASES, empty_ops_storage

pytestmark = pytest.mark.django_db(databases=DATABASES, transaction=True)


def queries_during(action: Callable[[], object]) -> dict[str, int]:
    """Run ``action`` and return the queries each database alias saw meanwhile."""
    with ExitStack() as stack:
        captured = {
            alias: stack.enter_context(CaptureQueriesContext(connections[alias]))
            for alias in DATABASES
        }
        action()
    return {alias: len(context) for alias, context in captured.items()}


def test_saves_hits_and_non_last_deletes_make_no_query_in_any_database() -> None:
    ops: DedupStorage = empty_ops_storage()
    names: list[str] = []

    def save_hit_and_drop_one() -> None:
        names.append(ops.save("clips/a.bin", ContentFile(b"shared")))
        names.append(ops.save("clips/b.bin", ContentFile(b"shared")))  # a hit
        ops.delete(names[0])  # one reference left

    assert queries_during(save_hit_and_drop_one) == dict.fromkeys(DATABASES, 0)
    assert names[0] == names[1] and ops.references(names[0]) == 1
    # The last reference asks each database, one COUNT per field (Clip.video, Reel.film,
    # Reel.poster), before the object goes.
    assert queries_during(lambda: ops.delete(names[0])) == dict.fromkeys(DATABASES, 3)
    assert not ops.exists(names[0])
