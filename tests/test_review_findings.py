"""Races and aliases found in review: each of these failed before its fix."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile

from dedupstore import DedupStorage
from dedupstore.checks import check_storages
from tests.contract import read_all

Make = Callable[..., DedupStorage]


class Boom(RuntimeError):
    pass


def fail_once(target: Any, method: str) -> None:
    def failing(*args: Any, **kwargs: Any) -> Any:
        target.__dict__.pop(method, None)
        raise Boom(method)

    setattr(target, method, failing)


def test_concurrent_overwrite_of_an_uncommitted_name_keeps_content_right(
    make_fs_dedup: Make,
) -> None:
    a = make_fs_dedup(overwrite=True, namespace="race")
    b = make_fs_dedup(overwrite=True, namespace="race")
    original = a.inner._save

    def write_then_let_b_overwrite(name: str, content: Any) -> str:
        stored = original(name, content)  # A has written but not yet committed
        b.save("avatar.png", ContentFile(b"Y" * 10))
        return stored

    a.inner._save = write_then_let_b_overwrite
    first = a.save("avatar.png", ContentFile(b"X" * 10))
    a.inner._save = original
    assert read_all(a, first) == b"X" * 10
    hit = a.save("other.png", ContentFile(b"X" * 10))
    assert read_all(a, hit) == b"X" * 10


@pytest.mark.parametrize("failing", ["inner.delete", "index.commit_save"])
def test_a_failed_overwrite_does_not_lock_the_name(make_fs_dedup: Make, failing: str) -> None:
    storage = make_fs_dedup(overwrite=True, claim_ttl=0.3, wait_timeout=1)
    storage.save("a.txt", ContentFile(b"old"))
    owner, method = failing.split(".")
    fail_once(getattr(storage, owner), method)
    with pytest.raises(Boom):
        storage.save("a.txt", ContentFile(b"new"))
    time.sleep(0.4)
    storage.delete("a.txt")  # raised ClaimTimeout while the record stayed "replacing"
    assert storage.save("a.txt", ContentFile(b"again")) == "a.txt"


@pytest.mark.parametrize("alias", ["a//b.txt", "a/./b.txt", "a/b/../b.txt"])
def test_aliases_of_a_name_are_refused(make_fs_dedup: Make, alias: str) -> None:
    storage = make_fs_dedup(overwrite=True)
    name = storage.save("a/b.txt", ContentFile(b"shared"))
    assert storage.save("c.txt", ContentFile(b"shared")) == name
    with pytest.raises(SuspiciousFileOperation):
        storage.delete(alias)
    with pytest.raises(SuspiciousFileOperation):
        storage.save(alias, ContentFile(b"other"))
    assert read_all(storage, name) == b"shared" and storage.references(name) == 2


def test_a_password_in_the_url_query_stays_out_of_migrations() -> None:
    storage = DedupStorage(
        inner={"BACKEND": "django.core.files.storage.InMemoryStorage"},
        index="redis://127.0.0.1:6379/0?password=hunter2&db=1",
    )
    assert "hunter2" not in repr(storage.deconstruct())


def test_inner_allow_overwrite_is_reported(settings: Any) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "overwriting": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"allow_overwrite": True},
        },
        "deduped": {
            "BACKEND": "dedupstore.DedupStorage",
            "OPTIONS": {"inner": "overwriting", "index": "locmem://w002"},
        },
    }
    import django

    if django.VERSION < (5, 1):
        pytest.skip("FileSystemStorage(allow_overwrite=...) arrived in Django 5.1")
    assert "dedupstore.W002" in [m.id for m in check_storages()]
