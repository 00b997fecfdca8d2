"""DedupStorage over AppwriteStorage, DedupAppwriteStorage, and the drop-in AppWriteStorage."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, default_storage, storages
from django.db import models
from django.db.migrations.writer import MigrationWriter
from django.test.utils import isolate_apps

from dedupstore import DedupStorage
from dedupstore.backends.appwrite import AppWriteStorage, AppwriteStorage, DedupAppwriteStorage
from dedupstore.testing.appwrite import AppwriteTestServer
from tests.contract import DedupContract


class TestDedupOverAppwrite(DedupContract):
    """The core contract suite, with AppwriteStorage as the inner storage."""

    @pytest.fixture
    def storage(self, dedup_over_appwrite: Callable[..., DedupStorage]) -> DedupStorage:
        return dedup_over_appwrite()

    def test_identical_content_in_another_bucket_is_stored_again(
        self, storage: DedupStorage
    ) -> None:
        first = storage.save("a/one.bin", ContentFile(b"same bytes"))
        second = storage.save("b/two.bin", ContentFile(b"same bytes"))
        assert (first.split("/")[0], second.split("/")[0]) == ("a", "b")
        assert storage.references(first) == storage.references(second) == 1

    def test_a_hit_makes_zero_requests_to_appwrite(
        self, storage: DedupStorage, server: AppwriteTestServer
    ) -> None:
        storage.verify_hits = False  # the default confirms a hit with one request
        payload = os.urandom(6 * 1024 * 1024)
        first = storage.save("hits/original.bin", ContentFile(payload))
        server.clear_log()
        assert storage.save("elsewhere/hits/copy.bin", ContentFile(payload)) == first
        assert storage.save("hits/original.bin", ContentFile(payload)) == first
        assert server.request_count == 0
        assert storage.references(first) == 3

    def test_a_miss_checks_the_name_once_and_uploads_once(
        self, storage: DedupStorage, server: AppwriteTestServer
    ) -> None:
        storage.save("misses/warm.bin", ContentFile(b"the bucket exists now"))
        server.clear_log()
        stored = storage.save("misses/new.bin", ContentFile(os.urandom(1024)))
        calls = [(record.method, record.status) for record in server.requests]
        assert calls == [("GET", 404), ("POST", 201)], calls
        assert stored == "misses/new.bin"
        # A taken name still gets an alternative, in Appwrite's <bucket>/<fileId> form.
        again = storage.save("misses/new.bin", ContentFile(os.urandom(1024)))
        assert again.startswith("misses/new_") and again != stored
        assert storage.inner.exists(again)


# -- DedupAppwriteStorage ---------------------------------------------------------------


def test_dedup_appwrite_storage_is_a_dedup_storage_over_appwrite_storage(
    server: AppwriteTestServer, redis_url: str
) -> None:
    made = DedupAppwriteStorage(
        **server.storage_options(bucket_id="default"),
        index=redis_url,
        namespace=f"aw-{uuid.uuid4().hex}",
    )
    assert isinstance(made.inner, AppwriteStorage)
    assert made.inner.bucket_id == "default"
    first = made.save("docs/one.txt", ContentFile(b"shared bytes"))
    second = made.save("docs/two.txt", ContentFile(b"shared bytes"))
    assert first == second == "docs/one.txt"
    assert made.references(first) == 2
    path, _args, kwargs = made.deconstruct()
    assert path == "dedupstore.backends.appwrite.DedupAppwriteStorage"
    assert "api_key" not in kwargs
    serialized, _imports = MigrationWriter.serialize(made)
    assert server.api_key not in serialized


def test_dedup_appwrite_storage_takes_its_policy_from_dedupstore_settings_only(
    old_settings: Any,
) -> None:
    old_settings.CLOUD_STORAGE_CREATE_NEW_IF_SAME_CONTENT = False
    old_settings.OVERWRITE_FILE = True
    made = DedupAppwriteStorage()
    assert (made.reuse, made.overwrite) == ("content", False)
    old_settings.DEDUPSTORE_REUSE = "name"
    assert DedupAppwriteStorage().reuse == "name"
    # The django-cloud-storages name reads the old package's settings instead.
    assert (AppWriteStorage().reuse, AppWriteStorage().overwrite) == ("name", True)


def test_dedup_appwrite_storage_refuses_inner_with_appwrite_options(old_settings: Any) -> None:
    with pytest.raises(ImproperlyConfigured, match="either 'inner' or Appwrite options"):
        DedupAppwriteStorage(inner="plain", bucket_id="b")
    with pytest.raises(ImproperlyConfigured, match="unknown option"):
        DedupAppwriteStorage(bucket="b")


# -- the drop-in -----------------------------------------------------------------------


def test_defaults_follow_the_old_settings(old_settings: Any) -> None:
    made = AppWriteStorage()
    assert (made.reuse, made.overwrite) == ("never", False)
    assert isinstance(made.inner, AppwriteStorage)
    assert made.inner.bucket_id == "default"
    old_settings.CLOUD_STORAGE_CREATE_NEW_IF_SAME_CONTENT = False
    old_settings.OVERWRITE_FILE = True
    made = AppWriteStorage()
    assert (made.reuse, made.overwrite) == ("name", True)
    # Explicit options beat the old settings.
    assert AppWriteStorage(reuse="content").reuse == "content"


def test_create_new_if_same_content_stores_every_save(
    old_settings: Any, server: AppwriteTestServer
) -> None:
    made = AppWriteStorage()
    first = made.save("docs/a.txt", ContentFile(b"same"))
    second = made.save("docs/a.txt", ContentFile(b"same"))
    assert first != second
    assert made.open(first).read() == made.open(second).read() == b"same"


def test_same_name_same_content_is_a_hit_with_zero_requests(
    old_settings: Any, server: AppwriteTestServer
) -> None:
    old_settings.CLOUD_STORAGE_CREATE_NEW_IF_SAME_CONTENT = False
    old_settings.DEDUPSTORE_VERIFY_HITS = False  # else one request confirms the hit
    made = AppWriteStorage()
    first = made.save("docs/a.txt", ContentFile(b"same"))
    server.clear_log()
    assert made.save("docs/a.txt", ContentFile(b"same")) == first
    assert server.request_count == 0
    # Other content under the name is a new file, whatever the name.
    other = made.save("docs/a.txt", ContentFile(b"other"))
    assert other != first and server.request_count > 0


def test_overwrite_file_replaces_the_name(old_settings: Any) -> None:
    old_settings.OVERWRITE_FILE = True
    made = AppWriteStorage()
    first = made.save("docs/o.txt", ContentFile(b"one"))
    second = made.save("docs/o.txt", ContentFile(b"two"))
    assert first == second == "docs/o.txt"
    assert made.open(second).read() == b"two"


def test_appwrite_options_and_inner_are_exclusive(old_settings: Any) -> None:
    with pytest.raises(ImproperlyConfigured, match="either 'inner' or Appwrite options"):
        AppWriteStorage(inner="plain", bucket_id="b")
    with pytest.raises(ImproperlyConfigured, match="unknown option"):
        AppWriteStorage(bucket="b")


def test_deconstruct_and_migrations_hold_no_key(
    old_settings: Any, server: AppwriteTestServer
) -> None:
    made = AppWriteStorage(api_key=server.api_key, bucket_id="b", reuse="content")
    path, args, kwargs = made.deconstruct()
    assert path == "dedupstore.backends.appwrite.AppWriteStorage"
    assert "api_key" not in kwargs
    serialized, _imports = MigrationWriter.serialize(made)
    assert server.api_key not in serialized
    rebuilt = AppWriteStorage(*args, **kwargs)
    assert rebuilt.reuse == "content"


def test_namespace_follows_endpoint_and_project_not_key_or_default_bucket(
    old_settings: Any,
) -> None:
    old_settings.DEDUPSTORE_NAMESPACE = None
    one = AppWriteStorage(api_key="key-one")
    two = AppWriteStorage(api_key="key-two")
    # Stored names carry their bucket, so the default bucket does not separate counts.
    other_bucket = AppWriteStorage(api_key="key-one", bucket_id="elsewhere")
    other_project = AppWriteStorage(api_key="key-one", project_id="another-project")
    assert one.namespace == two.namespace == other_bucket.namespace
    assert one.namespace != other_project.namespace
    # The same bytes as a DedupStorage over AppwriteStorage: the same reference counts.
    plain = DedupStorage(
        inner={
            "BACKEND": "dedupstore.backends.appwrite.AppwriteStorage",
            "OPTIONS": {"api_key": "key-three", "bucket_id": "other"},
        }
    )
    assert plain.namespace == one.namespace
    assert DedupAppwriteStorage(api_key="key-four").namespace == one.namespace


def test_as_the_default_storage(old_settings: Any, server: AppwriteTestServer) -> None:
    old_settings.CLOUD_STORAGE_CREATE_NEW_IF_SAME_CONTENT = False
    old_settings.STORAGES = {
        **old_settings.STORAGES,
        "default": {"BACKEND": "dedupstore.backends.appwrite.AppWriteStorage"},
    }
    assert isinstance(storages["default"], AppWriteStorage)
    name = default_storage.save("media/d.txt", ContentFile(b"default"))
    assert name == "media/d.txt"
    assert default_storage.open(name).read() == b"default"
    assert default_storage.url(name).startswith(server.endpoint + "/storage/buckets/media/")


def pick_appwrite_storage() -> Storage:
    """A callable storage, as Django allows for FileField(storage=...).

    Django calls it when the model class is created; the storage reads its settings on
    first use, so the test's settings apply.
    """
    return AppWriteStorage(reuse="content", index="locmem://appwrite-callable")


def document_model() -> type[models.Model]:
    """Define a model with a per-field and a callable storage, outside the app registry.

    ``isolate_apps`` keeps it out of the test app, whose migrations must stay unchanged.
    """
    with isolate_apps("tests.testapp"):

        class AppwriteDocument(models.Model):
            per_field = models.FileField(
                upload_to="fields/",
                max_length=40,
                storage=AppWriteStorage(reuse="content", index="locmem://appwrite-fields"),
            )
            chosen = models.FileField(upload_to="chosen/", storage=pick_appwrite_storage)

            class Meta:
                app_label = "testapp"

    return AppwriteDocument


def test_per_field_and_callable_storages(old_settings: Any, server: AppwriteTestServer) -> None:
    old_settings.DEDUPSTORE_VERIFY_HITS = False  # else one request confirms each hit
    AppwriteDocument = document_model()
    document = AppwriteDocument()
    document.per_field.save("report.pdf", ContentFile(b"%PDF-1.7 report"), save=False)
    assert document.per_field.name == "fields/report.pdf"
    assert len(document.per_field.name) <= 40
    assert document.per_field.read() == b"%PDF-1.7 report"
    document.chosen.save("pick.txt", ContentFile(b"chosen"), save=False)
    assert document.chosen.name == "chosen/pick.txt"
    assert isinstance(document.chosen.storage, AppWriteStorage)
    server.clear_log()
    again = AppwriteDocument()
    again.chosen.save("other-name.txt", ContentFile(b"chosen"), save=False)
    assert again.chosen.name == "chosen/pick.txt"
    assert server.request_count == 0
    # The field deconstructs the callable by reference, and the instance without its key.
    _name, _path, _args, kwargs = AppwriteDocument._meta.get_field("chosen").deconstruct()
    assert kwargs["storage"] is pick_appwrite_storage
    serialized, _ = MigrationWriter.serialize(AppwriteDocument._meta.get_field("per_field"))
    assert server.api_key not in serialized
