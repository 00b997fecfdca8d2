"""A hit confirms its object still exists; a missing one is never handed out."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile

from dedupstore import DedupStorage
from tests.helpers import InnerCalls

PAYLOAD = b"the user's upload" * 10


def _storage(index_url: str, tmp_path: Path, **options: Any) -> DedupStorage:
    options.setdefault("namespace", f"verify-{uuid.uuid4().hex}")
    inner = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "media")},
    }
    return DedupStorage(inner=inner, index=index_url, **options)


def test_a_hit_on_an_object_deleted_outside_the_storage_stores_the_upload_anew(
    index_url: str, tmp_path: Path
) -> None:
    storage = _storage(index_url, tmp_path)
    first = storage.save("docs/a.bin", ContentFile(PAYLOAD))
    Path(storage.path(first)).unlink()  # an operator, a test teardown, a lifecycle rule
    second = storage.save("docs/b.bin", ContentFile(PAYLOAD))
    assert storage.exists(second)
    assert Path(storage.path(second)).read_bytes() == PAYLOAD
    # Later uploads of the same bytes reuse the new object, not the missing one.
    assert storage.save("docs/c.bin", ContentFile(PAYLOAD)) == second
    assert storage.references(second) == 2


def test_the_holders_of_a_missing_object_keep_their_count_and_delete_nothing_new(
    index_url: str, tmp_path: Path
) -> None:
    storage = _storage(index_url, tmp_path)
    first = storage.save("a.bin", ContentFile(PAYLOAD))
    Path(storage.path(first)).unlink()
    second = storage.save("a.bin", ContentFile(PAYLOAD))
    assert Path(storage.path(second)).read_bytes() == PAYLOAD
    # Two holders of the bytes now (the first row, whose file was lost, and this one):
    # the first row's delete must not take the new upload with it.
    storage.delete(first)
    assert Path(storage.path(second)).read_bytes() == PAYLOAD
    assert storage.references(second) >= 1


def test_reuse_by_name_confirms_its_hit_too(index_url: str, tmp_path: Path) -> None:
    storage = _storage(index_url, tmp_path, reuse="name")
    first = storage.save("logo.png", ContentFile(PAYLOAD))
    Path(storage.path(first)).unlink()
    again = storage.save("logo.png", ContentFile(PAYLOAD))
    assert Path(storage.path(again)).read_bytes() == PAYLOAD


def test_a_confirmed_hit_makes_exactly_one_inner_call(index_url: str, tmp_path: Path) -> None:
    storage = _storage(index_url, tmp_path)
    name = storage.save("a.bin", ContentFile(PAYLOAD))
    calls = InnerCalls(storage.inner)
    assert storage.save("b.bin", ContentFile(PAYLOAD)) == name
    # FileSystemStorage.exists() calls its own path(): one stat in all.
    assert {method: n for method, n in calls.counts.items() if method != "path"} == {"exists": 1}


def test_verify_hits_false_makes_no_inner_call_on_a_hit(index_url: str, tmp_path: Path) -> None:
    storage = _storage(index_url, tmp_path, verify_hits=False)
    name = storage.save("a.bin", ContentFile(PAYLOAD))
    calls = InnerCalls(storage.inner)
    assert storage.save("b.bin", ContentFile(PAYLOAD)) == name
    assert calls.total == 0


def test_verify_hits_falls_back_to_its_setting(settings: Any) -> None:
    inner = {"BACKEND": "django.core.files.storage.InMemoryStorage"}
    assert DedupStorage(inner=inner).verify_hits is True
    settings.DEDUPSTORE_VERIFY_HITS = False
    assert DedupStorage(inner=inner).verify_hits is False
    assert DedupStorage(inner=inner, verify_hits=True).verify_hits is True
    with pytest.raises(ImproperlyConfigured, match="'verify_hits' must be True or False"):
        DedupStorage(inner=inner, verify_hits="yes")
