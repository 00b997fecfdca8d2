"""DedupStorage keeps Django's Storage contract where Django's own tests rely on it.

Attributes of the inner storage read (and set) through the wrapper, the inner storage's
naming hooks, ``overwrite=True`` truncating long names, Django's sanitised URLs and the
inner ``url()``'s extra arguments, empty files, and what system check W002 says.
"""

from __future__ import annotations

import os
import pickle
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import django
import pytest
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage

from dedupstore import DedupStorage
from dedupstore.checks import check_storages

HERE = __name__
FS = "django.core.files.storage.FileSystemStorage"
needs_allow_overwrite = pytest.mark.skipif(
    django.VERSION < (5, 1), reason="FileSystemStorage(allow_overwrite=...) is Django 5.1+"
)


class TracNumberingStorage(FileSystemStorage):
    """Number taken names as Trac does (``name.2``): Django's own CustomStorage test."""

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        basename, *ext = os.path.splitext(name)
        number = 2
        while self.exists(name):
            name = "".join([basename, ".", str(number), *ext])
            number += 1
        return name


class DashAlternativeStorage(FileSystemStorage):
    """Give alternative names a counter after a dash: ``a-1.txt``, ``a-2.txt``..."""

    def get_alternative_name(self, file_root: str, file_ext: str) -> str:
        self.alternatives = getattr(self, "alternatives", 0) + 1
        return f"{file_root}-{self.alternatives}{file_ext}"


class ReservedNameStorage(FileSystemStorage):
    """Refuse the name ``reserved.txt`` although it is free."""

    def is_name_available(self, name: str, max_length: int | None = None) -> bool:
        return name != "reserved.txt" and super().is_name_available(name, max_length)


class OverwritingStorage(FileSystemStorage):
    """Hand out taken names unchanged, to overwrite them (Django's OverwritingStorage)."""

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        return name


class ExtraUrlArgumentsStorage(FileSystemStorage):
    """A ``url()`` with the extra keywords django-storages' S3Storage takes."""

    def url(  # type: ignore[override]
        self,
        name: str | None,
        parameters: dict[str, str] | None = None,
        expire: int | None = None,
        http_method: str | None = None,
    ) -> str:
        base = super().url(name)
        extras = {"expire": expire, "method": http_method, **(parameters or {})}
        query = "&".join(f"{key}={value}" for key, value in extras.items() if value)
        return f"{base}?{query}" if query else base


@pytest.fixture
def make_dedup(redis_url: str, tmp_path: Path) -> Callable[..., DedupStorage]:
    """Return a factory of DedupStorage over ``backend`` (a FileSystemStorage by default)."""

    def make(backend: str = FS, inner_options: dict[str, Any] | None = None, **options: Any):
        options.setdefault("index", redis_url)
        options.setdefault("namespace", f"test-{uuid.uuid4().hex}")
        inner = {
            "BACKEND": backend,
            "OPTIONS": {"location": str(tmp_path / "media"), **(inner_options or {})},
        }
        return DedupStorage(inner=inner, **options)

    return make


def read(storage: Storage, name: str) -> bytes:
    with storage.open(name, "rb") as handle:
        return handle.read()


# -- the inner storage's attributes ----------------------------------------------------


def test_the_inner_storages_public_attributes_read_through_the_wrapper(make_dedup) -> None:
    storage = make_dedup(
        inner_options={
            "base_url": "/files/",
            "file_permissions_mode": 0o640,
            "directory_permissions_mode": 0o750,
        }
    )
    inner = storage.inner
    assert storage.location == inner.location
    assert storage.base_location == inner.base_location
    assert storage.base_url == "/files/"
    assert storage.file_permissions_mode == 0o640
    assert storage.directory_permissions_mode == 0o750


def test_setting_an_inner_attribute_through_the_wrapper_reaches_the_inner(make_dedup) -> None:
    storage = make_dedup(inner_options={"base_url": "/files/"})
    storage.base_url = None
    assert storage.inner.base_url is None
    with pytest.raises(ValueError):
        storage.url("a.txt")


def test_the_wrappers_own_attributes_stay_its_own(make_dedup) -> None:
    storage = make_dedup(reuse="never")
    storage.reuse = "content"
    assert storage.reuse == "content"
    assert not hasattr(storage.inner, "reuse")


class DeclaringStorage(FileSystemStorage):
    """Declare the optional hooks of ``dedupstore.protocol`` (with their default values)."""

    content_addressed = False
    dedupstore_direct_save = False


def test_private_attributes_and_inner_hooks_are_not_exposed(make_dedup) -> None:
    storage = make_dedup(backend=f"{HERE}.DeclaringStorage")
    assert hasattr(storage.inner, "_location")
    with pytest.raises(AttributeError):
        storage._location  # noqa: B018
    # The hooks describe the inner storage to the wrapper, not the wrapper to its users.
    for hook in ("content_addressed", "dedupstore_direct_save"):
        assert hasattr(storage.inner, hook)
        assert not hasattr(storage, hook), hook
    with pytest.raises(AttributeError, match="no_such_attribute"):
        storage.no_such_attribute  # noqa: B018


def test_inner_methods_are_not_exposed_as_wrapper_methods(make_dedup) -> None:
    # A method of the inner storage that writes would bypass the index.
    storage = make_dedup(backend=f"{HERE}.DashAlternativeStorage")
    storage.inner.extra_writer = lambda: None  # a callable the inner has
    with pytest.raises(AttributeError):
        storage.extra_writer  # noqa: B018


def test_a_wrapper_with_an_attribute_read_still_pickles_without_its_clients(make_dedup) -> None:
    storage = make_dedup(inner_options={"base_url": "/files/"})
    assert storage.base_url == "/files/"
    clone = pickle.loads(pickle.dumps(storage))
    assert clone._inner is None
    assert clone.base_url == "/files/"


# -- the inner storage's naming hooks ----------------------------------------------------


def test_the_inner_get_available_name_names_a_taken_name(make_dedup) -> None:
    storage = make_dedup(backend=f"{HERE}.TracNumberingStorage")
    assert storage.save("custom_storage", ContentFile(b"custom contents")) == "custom_storage"
    assert storage.save("custom_storage", ContentFile(b"more contents")) == "custom_storage.2"


def test_the_inner_get_alternative_name_is_used(make_dedup) -> None:
    storage = make_dedup(backend=f"{HERE}.DashAlternativeStorage")
    storage.save("a.txt", ContentFile(b"one"))
    assert storage.save("a.txt", ContentFile(b"two")) == "a-1.txt"
    assert storage.get_alternative_name("b", ".txt") == "b-2.txt"


@pytest.mark.skipif(django.VERSION < (5, 1), reason="is_name_available is Django 5.1+")
def test_the_inner_is_name_available_is_used(make_dedup) -> None:
    storage = make_dedup(backend=f"{HERE}.ReservedNameStorage")
    name = storage.save("reserved.txt", ContentFile(b"free but reserved"))
    assert name != "reserved.txt" and name.startswith("reserved_")
    assert not storage.is_name_available("reserved.txt")


def test_an_inner_that_hands_out_taken_names_never_replaces_an_object(make_dedup) -> None:
    storage = make_dedup(backend=f"{HERE}.OverwritingStorage")
    first = storage.save("x.txt", ContentFile(b"first"))
    second = storage.save("x.txt", ContentFile(b"second"))
    assert first == "x.txt" and second != first
    assert read(storage, first) == b"first" and read(storage, second) == b"second"


@needs_allow_overwrite
def test_an_inner_with_allow_overwrite_never_replaces_a_shared_object(make_dedup) -> None:
    storage = make_dedup(inner_options={"allow_overwrite": True})
    shared = storage.save("s.txt", ContentFile(b"shared"))
    assert storage.save("other.txt", ContentFile(b"shared")) == shared
    replacement = storage.save("s.txt", ContentFile(b"different"))
    assert replacement != shared
    assert read(storage, shared) == b"shared"
    assert storage.get_alternative_name("s", ".txt") != "s.txt"


def test_get_available_name_takes_a_path(make_dedup) -> None:
    storage = make_dedup()
    assert storage.get_available_name(Path("dir/p.txt")) == "dir/p.txt"


# -- overwrite=True and long names ------------------------------------------------------


def test_overwrite_truncates_a_long_name_as_allow_overwrite_does(make_dedup) -> None:
    storage = make_dedup(overwrite=True)
    name = storage.save("test_long_file_name.txt", ContentFile(b"content"), max_length=10)
    assert name == "test_l.txt"
    again = storage.save("test_long_file_name.txt", ContentFile(b"changed"), max_length=10)
    assert again == "test_l.txt"
    assert read(storage, again) == b"changed"


def test_overwrite_refuses_a_name_whose_extension_alone_is_too_long(make_dedup) -> None:
    storage = make_dedup(overwrite=True)
    with pytest.raises(SuspiciousFileOperation, match="Storage can not find an available"):
        storage.save("file_name.longext", ContentFile(b"content"), max_length=5)


def test_overwrite_truncates_in_a_directory_and_keeps_every_suffix(make_dedup) -> None:
    storage = make_dedup(overwrite=True)
    name = storage.save("dir/archive_name.tar.gz", ContentFile(b"tgz"), max_length=17)
    assert name == "dir/archiv.tar.gz"


# -- url() --------------------------------------------------------------------------------


def test_url_of_a_name_with_leading_slashes_is_djangos_sanitised_url(make_dedup) -> None:
    storage = make_dedup(inner_options={"base_url": "/media/"})
    for name in ("/evil.com", "///evil.com", r"\evil.com", r"\\\evil.com"):
        assert storage.url(name) == "/media/evil.com", name
    assert storage.url(None) == "/media/"
    assert storage.url("a/b c.txt") == "/media/a/b%20c.txt"


def test_url_of_an_empty_name_is_the_base_url_as_in_django(make_dedup) -> None:
    storage = make_dedup(inner_options={"base_url": "/media/"})
    assert storage.url("/") == "/media/"
    assert storage.url("") == "/media/"


def test_url_percent_encodes_a_nul_byte_as_django_does(make_dedup) -> None:
    # A link is not a stored name: templates render what the database holds.
    storage = make_dedup(inner_options={"base_url": "/media/"})
    assert storage.url("ab\0c") == "/media/ab%00c"


def test_url_spells_a_name_as_save_recorded_it(make_dedup) -> None:
    storage = make_dedup(inner_options={"base_url": "/media/"})
    assert storage.url("e\u0301t\u00e9.txt") == storage.url("\u00e9t\u00e9.txt")


def test_url_passes_the_inner_storages_extra_arguments_through(make_dedup) -> None:
    storage = make_dedup(backend=f"{HERE}.ExtraUrlArgumentsStorage")
    url = storage.url(
        "report.csv",
        parameters={"ResponseContentDisposition": "attachment"},
        expire=60,
        http_method="GET",
    )
    assert url.endswith("report.csv?expire=60&method=GET&ResponseContentDisposition=attachment")
    assert storage.url("report.csv", expire=5).endswith("?expire=5")


def test_url_passes_s3storage_arguments_through_to_a_presigned_url(
    make_dedup, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Presigning is computed locally by botocore: no request is sent.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    storage = DedupStorage(
        inner={
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": "bucket",
                "endpoint_url": "http://127.0.0.1:9",
                "access_key": "test",
                "secret_key": "test",
                "region_name": "us-east-1",
                "signature_version": "s3v4",
            },
        },
        index="locmem://s3-url",
        namespace="s3-url",
    )
    url = storage.url(
        "report.csv",
        parameters={"ResponseContentDisposition": "attachment; filename=r.csv"},
        expire=120,
        http_method="GET",
    )
    assert url.startswith("http://127.0.0.1:9/bucket/report.csv?")
    assert "response-content-disposition=attachment" in url
    assert "X-Amz-Expires=120" in url


def test_url_still_refuses_a_traversal(make_dedup) -> None:
    storage = make_dedup()
    with pytest.raises(SuspiciousFileOperation):
        storage.url("../secret.txt")


# -- empty files ------------------------------------------------------------------------


def test_an_empty_file_is_stored_and_reads_back_empty(make_dedup) -> None:
    storage = make_dedup()
    name = storage.save("empty.csv", ContentFile(b""))
    assert name == "empty.csv"
    assert storage.exists(name) and storage.size(name) == 0
    assert read(storage, name) == b""


def test_all_empty_files_share_one_object(make_dedup) -> None:
    storage = make_dedup(reuse="content")
    first = storage.save("a/placeholder.txt", ContentFile(b""))
    assert storage.save("b/placeholder.txt", ContentFile(b"")) == first
    assert storage.references(first) == 2
    storage.delete(first)
    assert storage.exists(first)
    storage.delete(first)
    assert not storage.exists(first)


def test_empty_files_follow_the_reuse_policy(make_dedup) -> None:
    storage = make_dedup(reuse="never")
    first = storage.save("e.txt", ContentFile(b""))
    second = storage.save("e.txt", ContentFile(b""))
    assert first != second and storage.size(second) == 0


# -- system check W002 -------------------------------------------------------------------


def _w002(settings: Any, inner: dict[str, Any], **options: Any) -> list[str]:
    settings.STORAGES = {
        **settings.STORAGES,
        "inner-under-test": inner,
        "deduped": {
            "BACKEND": "dedupstore.DedupStorage",
            "OPTIONS": {
                "inner": "inner-under-test",
                "index": "locmem://w002",
                "namespace": "w002",
                **options,
            },
        },
    }
    settings.DEBUG = True  # keep W001 (locmem) out of the way
    return [m.msg for m in check_storages() if m.id == "dedupstore.W002"]


@needs_allow_overwrite
def test_w002_flags_a_filesystem_storage_with_allow_overwrite(settings: Any) -> None:
    messages = _w002(settings, {"BACKEND": FS, "OPTIONS": {"allow_overwrite": True}})
    assert len(messages) == 1
    assert "allow_overwrite=True" in messages[0] and "changes nothing" in messages[0]
    assert "writes to the inner storage directly" in messages[0]


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
    if django.VERSION < (5, 1):
        pytest.skip("FileSystemStorage(allow_overwrite=...) arrived in Django 5.1")
    assert "dedupstore.W002" in [m.id for m in check_storages()]


def test_w002_is_silent_for_a_filesystem_storage_that_creates_exclusively(settings: Any) -> None:
    assert _w002(settings, {"BACKEND": FS}) == []
    assert _w002(settings, {"BACKEND": FS}, on_index_error="bypass") == []


S3_OPTIONS = {
    "bucket_name": "bucket",
    "endpoint_url": "http://127.0.0.1:9",
    "access_key": "test",
    "secret_key": "test",
}


def test_w002_does_not_fire_on_file_overwrite_which_changes_nothing(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Saves reserve their names in the index (a bypassing save takes a random name):
    # two of them never write one name, whatever file_overwrite says.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for file_overwrite in (True, False):
        for on_index_error in ("raise", "bypass"):
            inner = {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {**S3_OPTIONS, "file_overwrite": file_overwrite},
            }
            assert _w002(settings, inner, on_index_error=on_index_error) == []


def test_every_dedupstore_system_check_returns_a_list() -> None:
    # Django's check framework raises TypeError for any other answer, which stops every
    # test runner and manage.py check.
    from django.core.checks.registry import registry

    ours = [check for check in registry.get_checks() if check.__module__.startswith("dedupstore")]
    assert ours
    for check in ours:
        assert isinstance(check(app_configs=None), list), check.__name__
