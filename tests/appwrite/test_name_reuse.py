"""``reuse="name"`` over Appwrite: a save whose bucket already holds that name's file with
the same content returns it (``CLOUD_STORAGE_CREATE_NEW_IF_SAME_CONTENT=False``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from appwrite.input_file import InputFile
from appwrite.services.storage import Storage as SDKStorage
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import models
from django.test.utils import isolate_apps

from dedupstore import DedupStorage
from dedupstore.backends.appwrite import AppWriteStorage, AppwriteStorage
from dedupstore.testing.appwrite import AppwriteTestServer

PNG = b"\x89PNG\r\n\x1a\n" + b"logo pixels " * 50


def logo_model(storage: Any) -> type[models.Model]:
    with isolate_apps("tests.testapp"):

        class Logo(models.Model):
            image = models.FileField(upload_to="uploads/", storage=storage)

            class Meta:
                app_label = "testapp"

    return Logo


def uploads(server: AppwriteTestServer) -> list[str]:
    return [r.path for r in server.requests if r.method == "POST" and r.path.endswith("/files")]


def test_a_filefield_duplicate_returns_the_stored_name_and_uploads_nothing(
    name_reuse_settings: Any, server: AppwriteTestServer
) -> None:
    Logo = logo_model(AppWriteStorage())
    first = Logo()
    first.image.save("logo.png", SimpleUploadedFile("logo.png", PNG), save=False)
    assert first.image.name == "uploads/logo.png"
    server.clear_log()
    again = Logo()
    again.image.save("logo.png", SimpleUploadedFile("logo.png", PNG), save=False)
    assert again.image.name == "uploads/logo.png"
    # Nothing uploaded: one request, the hit's check that the file still exists.
    assert uploads(server) == [] and server.request_count == 1
    assert first.image.storage.references("uploads/logo.png") == 2


def test_names_that_map_to_another_stored_name_are_matched_by_that_name(
    name_reuse_settings: Any, server: AppwriteTestServer
) -> None:
    storage = AppWriteStorage()
    # The last directory names the bucket, and a name that is not an Appwrite ID gets one.
    for requested in ("assets/statics/media/my_file.txt", "uploads/My Logo.png"):
        stored = storage.save(requested, ContentFile(b"content of " + requested.encode()))
        assert stored != requested
        server.clear_log()
        assert storage.save(requested, ContentFile(b"content of " + requested.encode())) == stored
        assert uploads(server) == []
    # Other content under the same name is still a new file.
    other = storage.save("uploads/My Logo.png", ContentFile(b"a different logo"))
    assert other != stored and storage.open(other).read() == b"a different logo"


def test_a_new_name_costs_one_check_and_one_upload(
    name_reuse_settings: Any, server: AppwriteTestServer
) -> None:
    storage = AppWriteStorage()
    storage.save("uploads/warm.txt", ContentFile(b"the bucket exists now"))
    server.clear_log()
    assert storage.save("uploads/new.txt", ContentFile(b"new")) == "uploads/new.txt"
    calls = [(r.method, r.status) for r in server.requests]
    assert calls == [("GET", 404), ("POST", 201)], calls
    # The remembered miss served that save only: the name exists now.
    assert storage.inner.exists("uploads/new.txt")


def test_a_same_content_file_the_index_does_not_know_is_reused_and_counted(
    name_reuse_settings: Any, server: AppwriteTestServer, sdk: SDKStorage
) -> None:
    # Uploaded before the site switched to dedupstore (django-cloud-storages, by hand).
    sdk.create_bucket("uploads", "uploads")
    sdk.create_file("uploads", "logo.png", InputFile.from_bytes(PNG, "logo.png"))
    storage = AppWriteStorage()
    server.clear_log()
    assert storage.save("uploads/logo.png", SimpleUploadedFile("logo.png", PNG)) == (
        "uploads/logo.png"
    )
    assert uploads(server) == []
    # The old row and the new one: deleting the new one keeps the file for the old one.
    assert storage.references("uploads/logo.png") == 2
    storage.delete("uploads/logo.png")
    assert storage.exists("uploads/logo.png")
    # Once recorded, a duplicate is an ordinary hit: one request, its existence check.
    server.clear_log()
    assert storage.save("uploads/logo.png", ContentFile(PNG)) == "uploads/logo.png"
    assert uploads(server) == [] and server.request_count == 1


def test_an_untracked_file_with_other_content_gets_a_new_name(
    name_reuse_settings: Any, server: AppwriteTestServer, sdk: SDKStorage
) -> None:
    sdk.create_bucket("uploads", "uploads")
    sdk.create_file("uploads", "logo.png", InputFile.from_bytes(b"old logo", "logo.png"))
    storage = AppWriteStorage()
    stored = storage.save("uploads/logo.png", ContentFile(PNG))
    assert stored != "uploads/logo.png" and stored.startswith("uploads/logo_")
    assert storage.open("uploads/logo.png").read() == b"old logo"
    assert storage.open(stored).read() == PNG


def test_a_matching_signature_alone_never_reuses_other_bytes(
    name_reuse_settings: Any, server: AppwriteTestServer, sdk: SDKStorage
) -> None:
    import hashlib

    # Same size and an MD5 made to match (as a collision would): the bytes decide.
    impostor = bytes(reversed(PNG))
    sdk.create_bucket("uploads", "uploads")
    sdk.create_file("uploads", "logo.png", InputFile.from_bytes(impostor, "logo.png"))
    with server._state_lock:
        held = server._buckets["uploads"].files["logo.png"]
        held.signature = hashlib.md5(PNG, usedforsecurity=False).hexdigest()
    storage = AppWriteStorage()
    stored = storage.save("uploads/logo.png", ContentFile(PNG))
    assert stored != "uploads/logo.png"
    assert storage.open(stored).read() == PNG
    assert storage.references("uploads/logo.png") == 0


def test_dedupstorage_over_appwrite_compares_the_stored_name(
    server: AppwriteTestServer, dedup_over_appwrite: Callable[..., DedupStorage]
) -> None:
    storage = dedup_over_appwrite(reuse="name")
    stored = storage.save("a/b/media/report.txt", ContentFile(b"report"))
    assert stored == "media/report.txt"
    server.clear_log()
    assert storage.save("a/b/media/report.txt", ContentFile(b"report")) == stored
    assert uploads(server) == [] and server.request_count == 1  # the hit's exists()


def test_the_stored_name_hook_names_bucket_and_file_id(server: AppwriteTestServer) -> None:
    storage = AppwriteStorage(**server.storage_options(bucket_id="default"))
    assert storage.dedupstore_stored_name("uploads/logo.png") == "uploads/logo.png"
    assert storage.dedupstore_stored_name("x/y/media/a.txt") == "media/a.txt"
    assert storage.dedupstore_stored_name("top.txt") == "default/top.txt"
    odd = storage.dedupstore_stored_name("uploads/My Logo.png")
    assert odd.startswith("uploads/My_Logo-") and odd.endswith(".png")
