"""Bad input gets a clear, typed error and loses nothing already stored."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.files.base import ContentFile
from django.core.files.storage import InMemoryStorage

from dedupstore import DedupStorage
from tests.contract import read_all

Make = Callable[..., DedupStorage]
INNER = {"BACKEND": "django.core.files.storage.InMemoryStorage"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs 'inner'"),
        ({"inner": INNER, "colour": "blue"}, "unknown option"),
        ({"inner": InMemoryStorage()}, "not a InMemoryStorage instance"),
        ({"inner": {"OPTIONS": {}}}, "BACKEND"),
        ({"inner": {"BACKEND": "x.Y", "EXTRA": 1}}, "only BACKEND and OPTIONS"),
        ({"inner": INNER, "index": "mysql://db"}, "unsupported index URL scheme"),
        ({"inner": INNER, "index": "redis://host:notaport/0"}, "malformed index URL"),
        ({"inner": INNER, "index": "redis://host:6379/zero"}, "must be a number"),
        ({"inner": INNER, "index": "redis:///0"}, "names no host"),
        ({"inner": INNER, "index": ""}, "must be a URL"),
        ({"inner": INNER, "reuse": "sometimes"}, "'reuse' must be one of"),
        ({"inner": INNER, "overwrite": "yes"}, "'overwrite' must be True or False"),
        ({"inner": INNER, "hash_key": True}, "'hash_key' must be"),
        ({"inner": INNER, "hash_key": ""}, "must not be empty"),
        ({"inner": INNER, "chunk_size": 0}, "'chunk_size' must be a positive"),
        ({"inner": INNER, "on_index_error": "ignore"}, "'on_index_error' must be"),
        ({"inner": INNER, "wait_timeout": -1}, "'wait_timeout' must be a positive"),
    ],
)
def test_bad_options_raise_improperly_configured(options: dict, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        DedupStorage(**options)


def test_malformed_index_url_does_not_leak_a_password() -> None:
    with pytest.raises(ImproperlyConfigured) as caught:
        DedupStorage(inner=INNER, index="redis://:s3cret@host:bad/0")
    assert "s3cret" not in str(caught.value)


def test_unknown_inner_alias_is_reported_on_first_use(redis_url: str) -> None:
    storage = DedupStorage(inner="no-such-alias", index=redis_url)
    with pytest.raises(ImproperlyConfigured, match=r"'no-such-alias' is not in settings\.STORAGES"):
        storage.save("a.txt", ContentFile(b"x"))


def test_unimportable_inner_backend(redis_url: str) -> None:
    storage = DedupStorage(inner={"BACKEND": "nowhere.Storage"}, index=redis_url)
    with pytest.raises(ImproperlyConfigured, match="cannot import inner BACKEND"):
        storage.inner  # noqa: B018


def test_inner_must_not_be_a_dedup_storage(redis_url: str) -> None:
    storage = DedupStorage(inner={"BACKEND": "dedupstore.DedupStorage"}, index=redis_url)
    with pytest.raises(ImproperlyConfigured, match="must not be another DedupStorage"):
        storage.inner  # noqa: B018


def test_settings_fallback_and_keyword_precedence(settings, redis_url: str) -> None:
    settings.DEDUPSTORE_INNER = INNER
    settings.DEDUPSTORE_INDEX = redis_url
    settings.DEDUPSTORE_REUSE = "never"
    assert DedupStorage().reuse == "never"
    assert DedupStorage(reuse="name").reuse == "name"
    settings.DEDUPSTORE_REUSE = "bogus"
    with pytest.raises(ImproperlyConfigured):
        DedupStorage()


def test_name_longer_than_max_length_is_shortened_or_refused(make_fs_dedup: Make) -> None:
    storage = make_fs_dedup()
    name = storage.save("d/" + "x" * 80 + ".txt", ContentFile(b"long"), max_length=40)
    assert len(name) <= 40
    with pytest.raises(SuspiciousFileOperation):
        storage.save("a-directory-that-is-too-long/file.txt", ContentFile(b"y"), max_length=10)


def test_bad_names_lose_nothing(make_fs_dedup: Make) -> None:
    storage = make_fs_dedup()
    name = storage.save("keep.txt", ContentFile(b"precious"))
    for bad in ("../keep.txt", "/keep.txt", "", None):
        with pytest.raises((SuspiciousFileOperation, ValueError)):
            storage.delete(bad)  # type: ignore[arg-type]
    with pytest.raises(SuspiciousFileOperation):
        storage.save(None, ContentFile(b"nameless"))
    assert read_all(storage, name) == b"precious" and storage.references(name) == 1


def test_open_of_a_missing_name(make_fs_dedup: Make) -> None:
    with pytest.raises(FileNotFoundError):
        make_fs_dedup().open("missing.txt")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("claim_ttl", 0.0005, r"'claim_ttl' must be at least 0\.01 seconds"),
        ("claim_ttl", 0.009, r"'claim_ttl' must be at least 0\.01 seconds"),
        ("claim_ttl", float("nan"), "'claim_ttl' must be a finite number"),
        ("claim_ttl", float("inf"), "'claim_ttl' must be a finite number"),
        ("wait_timeout", float("nan"), "'wait_timeout' must be a finite number"),
        ("index_timeout", float("inf"), "'index_timeout' must be a finite number"),
        ("index_timeout", 0, "'index_timeout' must be a positive"),
    ],
)
def test_unusable_durations_are_refused(option: str, value: float, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        DedupStorage(
            inner={"BACKEND": "django.core.files.storage.InMemoryStorage"}, **{option: value}
        )
