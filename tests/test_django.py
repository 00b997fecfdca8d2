"""DedupStorage inside Django: STORAGES, per-field storages, uploads, migrations, checks."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db.migrations.writer import MigrationWriter
from django.test import Client

from dedupstore import DedupStorage
from dedupstore.checks import check_storages
from tests.testapp.models import Attachment, Document, Picture

# Every database: the delete guard asks each one whether rows still hold a name.
pytestmark = pytest.mark.django_db(databases="__all__")


@pytest.fixture
def dedup_settings(settings: Any, redis_url: str, tmp_path: Path) -> Any:
    """Point STORAGES at a real Redis index and a private media directory."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    plain = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    # The default alias takes its options from the DEDUPSTORE_* settings: under
    # override_settings, Django 4.2 rebuilds STORAGES["default"] from the backend path
    # alone (via DEFAULT_FILE_STORAGE) and drops its OPTIONS.
    settings.DEDUPSTORE_INNER = "plain"
    settings.DEDUPSTORE_INDEX = redis_url
    settings.STORAGES = {
        "default": {"BACKEND": "dedupstore.DedupStorage"},
        "plain": plain,
        "dedup": {
            "BACKEND": "dedupstore.DedupStorage",
            "OPTIONS": {"inner": "plain", "index": redis_url, "reuse": "content"},
        },
        # The live-set models' storage: migration states build their fields again.
        "live": {
            "BACKEND": "dedupstore.DedupStorage",
            "OPTIONS": {"inner": "plain", "index": redis_url, "namespace": "tests-live"},
        },
        # The manage.py dedupstore models' storage (Reel, Clip), likewise.
        "ops": {
            "BACKEND": "dedupstore.DedupStorage",
            "OPTIONS": {"inner": "plain", "index": redis_url, "namespace": "tests-ops"},
        },
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    return settings


def media_files(settings: Any) -> list[str]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_default_storage_deduplicates_model_files(
    dedup_settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    first = Document.objects.create(file=ContentFile(b"report", name="report.pdf"))
    second = Document.objects.create(file=ContentFile(b"report", name="copy.pdf"))
    assert isinstance(storages["default"], DedupStorage)
    assert first.file.name == second.file.name == "docs/report.pdf"
    assert media_files(dedup_settings) == ["docs/report.pdf"]
    with django_capture_on_commit_callbacks(execute=True):
        first.file.delete()
    assert media_files(dedup_settings) == ["docs/report.pdf"]
    # FieldFile.delete() asks the storage while its own row still holds the name: the
    # object stays for that row, and goes once the row, saved, forgot it (on commit).
    with django_capture_on_commit_callbacks(execute=True):
        second.file.delete()
    assert media_files(dedup_settings) == []


def test_a_field_file_delete_without_saving_keeps_the_object_the_row_still_holds(
    dedup_settings: Any,
) -> None:
    row = Document.objects.create(file=ContentFile(b"kept", name="kept.pdf"))
    row.file.delete(save=False)  # the row in the database still names the file
    assert media_files(dedup_settings) == ["docs/kept.pdf"]


def test_image_field_through_a_callable_storage(dedup_settings: Any) -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (3, 2), "red").save(buffer, format="PNG")
    one = Picture.objects.create(image=ContentFile(buffer.getvalue(), name="red.png"))
    two = Picture.objects.create(image=ContentFile(buffer.getvalue(), name="again.png"))
    assert one.image.name == two.image.name
    assert (one.image.width, one.image.height) == (3, 2)
    field = Picture._meta.get_field("image")
    # Django calls the callable once, when the field is built, and migrations keep the
    # callable itself rather than the storage it returned.
    assert isinstance(field.storage, DedupStorage)
    assert field.deconstruct()[3]["storage"].__name__ == "dedup_storage"
    assert field.storage.references(one.image.name) == 2


def test_per_field_instance(dedup_settings: Any) -> None:
    first = Attachment.objects.create(file=ContentFile(b"attached", name="a.txt"))
    second = Attachment.objects.create(file=ContentFile(b"attached", name="b.txt"))
    assert first.file.name == second.file.name == "attachments/a.txt"
    assert Attachment._meta.get_field("file").storage.references(first.file.name) == 2


def test_uploads_through_the_test_client_move_temporary_files(dedup_settings: Any) -> None:
    dedup_settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024  # force TemporaryUploadedFile
    payload = os.urandom(64 * 1024)
    client = Client()
    first = client.post("/upload/", {"file": SimpleUploadedFile("up.bin", payload)}).json()
    second = client.post("/upload/", {"file": SimpleUploadedFile("other.bin", payload)}).json()
    assert first["temporary_path"] and second["temporary_path"]
    # The miss handed the TemporaryUploadedFile itself to FileSystemStorage, which moved it.
    assert not os.path.exists(first["temporary_path"])
    assert first["name"] == second["name"] == "docs/up.bin"
    assert media_files(dedup_settings) == ["docs/up.bin"]
    assert Path(dedup_settings.MEDIA_ROOT, "docs/up.bin").read_bytes() == payload


def test_migrations_are_stable_and_hold_no_secret(dedup_settings: Any) -> None:
    call_command("makemigrations", "testapp", "--check", "--dry-run", verbosity=0)
    storage = DedupStorage(
        inner={"BACKEND": "some.Storage", "OPTIONS": {"api_key": "k-123", "bucket": "b"}},
        index="redis://:pa55@cache:6379/1",
        hash_key="very-secret",
    )
    serialized, imports = MigrationWriter.serialize(storage)
    for secret in ("k-123", "pa55", "very-secret"):
        assert secret not in serialized
    assert "'bucket': 'b'" in serialized and "import dedupstore" in imports
    # Deconstructing what the migration holds gives the same thing again (no churn).
    namespace: dict[str, Any] = {}
    exec("\n".join(imports) + f"\nrebuilt = {serialized}", namespace)
    assert MigrationWriter.serialize(namespace["rebuilt"])[0] == serialized


def test_pickles_without_its_clients(dedup_settings: Any) -> None:
    storage = storages["default"]
    name = storage.save("p.txt", ContentFile(b"pickled"))
    # A STORAGES alias pickles as its alias: unpickled, it is that alias's storage.
    assert pickle.loads(pickle.dumps(storage)) is storage
    clone = pickle.loads(pickle.dumps(DedupStorage()))
    assert clone._index is None and clone._inner is None
    assert clone.save("q.txt", ContentFile(b"pickled")) == name


def test_system_checks(dedup_settings: Any) -> None:
    assert check_storages() == []
    dedup_settings.STORAGES = {
        **dedup_settings.STORAGES,
        "broken": {"BACKEND": "dedupstore.DedupStorage", "OPTIONS": {"inner": "nope"}},
        "typo": {
            "BACKEND": "dedupstore.DedupStorage",
            "OPTIONS": {"inner": "plain", "reuse": "maybe"},
        },
        "local": {
            "BACKEND": "dedupstore.DedupStorage",
            "OPTIONS": {"inner": "overwriting", "index": "locmem://"},
        },
        "overwriting": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    dedup_settings.DEBUG = False
    found = {(m.obj, m.id) for m in check_storages()}
    assert ("STORAGES['broken']", "dedupstore.E001") in found
    assert ("STORAGES['typo']", "dedupstore.E001") in found
    assert ("STORAGES['local']", "dedupstore.W001") in found
