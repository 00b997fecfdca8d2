"""System checks of the database guard and the index marker."""

from __future__ import annotations

import pytest
import redis
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from dedupstore import DedupStorage
from dedupstore.checks import check_guarded_field_indexes, check_index_lost
from tests.ops_helpers import DATABASES, dedupstore, empty_ops_storage
from tests.testapp.models import Album, Reel

pytestmark = pytest.mark.django_db(databases=DATABASES, transaction=True)


def test_a_guarded_file_field_without_a_database_index_is_flagged_with_the_fix() -> None:
    flagged = {message.obj: message for message in check_guarded_field_indexes()}
    poster = Reel._meta.get_field("poster")
    assert poster in flagged
    assert flagged[poster].id == "dedupstore.W020"
    assert flagged[poster].hint is not None
    assert flagged[poster].hint.startswith("poster = models.FileField(..., db_index=True)")
    assert Reel._meta.get_field("film") not in flagged  # db_index=True
    assert Album._meta.get_field("cover") in flagged


def test_a_lost_index_is_a_system_check_error_that_names_reconcile() -> None:
    storage: DedupStorage = empty_ops_storage()
    assert not [m for m in check_index_lost(databases=["default"]) if m.obj == "STORAGES['ops']"]
    client = redis.Redis.from_url(storage.index_url)
    client.flushdb()
    client.close()
    errors = [m for m in check_index_lost(databases=["default"]) if m.obj == "STORAGES['ops']"]
    assert [error.id for error in errors] == ["dedupstore.E103"]
    assert errors[0].hint == "python manage.py dedupstore reconcile"
    call_command("check")  # a database check: not run by default
    with pytest.raises(SystemCheckError, match="E103"):
        call_command("check", "--database", "default")
    assert dedupstore("reconcile", "--storage", "ops").status == 0
    assert not [m for m in check_index_lost(databases=["default"]) if m.obj == "STORAGES['ops']"]
