"""Uploads hashed while Django receives them: a later hit needs no hashing pass."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3
from django.core.files.uploadedfile import SimpleUploadedFile, UploadedFile
from django.test import Client

from dedupstore import DedupStorage
from dedupstore.hashing import PRECOMPUTED_ATTRIBUTE, ContentHasher, resolve_hash_key
from dedupstore.uploadhandler import (
    HashingMemoryFileUploadHandler,
    HashingTemporaryFileUploadHandler,
)
from tests.helpers import InnerCalls

HANDLERS = [
    "dedupstore.uploadhandler.HashingMemoryFileUploadHandler",
    "dedupstore.uploadhandler.HashingTemporaryFileUploadHandler",
]
Make = Callable[..., DedupStorage]


def receive(handler_class: type, payload: bytes, chunk: int = 64 * 1024) -> UploadedFile:
    """Drive an upload handler the way Django's multipart parser does."""
    handler = handler_class()
    handler.handle_raw_input(None, {}, len(payload), "boundary")
    try:
        handler.new_file("file", "up.bin", "application/octet-stream", len(payload))
    except Exception as exc:  # StopFutureHandlers: the memory handler took the file
        assert type(exc).__name__ == "StopFutureHandlers"
    for start in range(0, len(payload), chunk):
        assert handler.receive_data_chunk(payload[start : start + chunk], start) is None
    upload = handler.file_complete(len(payload))
    assert upload is not None
    return upload


def expected_digest(payload: bytes) -> str:
    key = resolve_hash_key(None)
    return blake3(payload, key=key).hexdigest()


@pytest.mark.parametrize(
    "handler_class", [HashingTemporaryFileUploadHandler, HashingMemoryFileUploadHandler]
)
def test_the_digest_is_computed_while_receiving(handler_class: type) -> None:
    payload = os.urandom(300 * 1024)
    upload = receive(handler_class, payload)
    assert getattr(upload, PRECOMPUTED_ATTRIBUTE).digest == expected_digest(payload)
    assert ContentHasher(key=resolve_hash_key(None)).hash(upload).digest == expected_digest(payload)


def test_a_hit_on_a_received_upload_does_not_hash_again(
    make_fs_dedup: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = make_fs_dedup(verify_hits=False)  # else one exists() confirms the hit
    payload = os.urandom(512 * 1024)
    received = receive(HashingTemporaryFileUploadHandler, payload)
    first = storage.save("a.bin", received)
    received.close()  # as Django does after the request; the file was moved
    upload = receive(HashingTemporaryFileUploadHandler, payload)
    calls = InnerCalls(storage.inner)
    hashing: list[int] = []
    original_new = ContentHasher.new
    monkeypatch.setattr(
        ContentHasher, "new", lambda self, **kw: hashing.append(1) or original_new(self, **kw)
    )
    assert storage.save("b.bin", upload) == first
    assert hashing == [] and calls.total == 0
    upload.close()


def test_a_temporary_file_changed_after_receiving_is_hashed_again() -> None:
    payload = os.urandom(256 * 1024)
    upload = receive(HashingTemporaryFileUploadHandler, payload)
    time.sleep(0.02)  # past the file system's timestamp granularity
    changed = bytes(reversed(payload))  # same size, other bytes
    Path(upload.temporary_file_path()).write_bytes(changed)
    hasher = ContentHasher(key=resolve_hash_key(None))
    assert hasher.hash(upload).digest == expected_digest(changed)
    upload.close()


def test_an_in_memory_upload_written_to_after_receiving_is_hashed_again() -> None:
    upload = receive(HashingMemoryFileUploadHandler, b"original bytes")
    upload.file.seek(0)
    upload.file.write(b"ORIGINAL")
    hasher = ContentHasher(key=resolve_hash_key(None))
    assert hasher.hash(upload).digest == expected_digest(b"ORIGINAL bytes")


def test_a_storage_with_another_key_hashes_again() -> None:
    upload = receive(HashingMemoryFileUploadHandler, b"keyed")
    other = ContentHasher(key=None)
    assert other.hash(upload).digest == blake3(b"keyed").hexdigest()


@pytest.mark.django_db
def test_uploads_through_the_test_client(settings: Any, redis_url: str, tmp_path: Path) -> None:
    settings.FILE_UPLOAD_HANDLERS = HANDLERS
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    settings.MEDIA_ROOT = str(tmp_path)
    settings.DEDUPSTORE_INNER = "plain"
    settings.DEDUPSTORE_INDEX = redis_url
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "dedupstore.DedupStorage"},
        "plain": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    }
    client = Client()
    for size in (1024, 200 * 1024):  # in memory, then a temporary file
        payload = os.urandom(size)
        first = client.post("/upload/", {"file": SimpleUploadedFile("x.bin", payload)}).json()
        second = client.post("/upload/", {"file": SimpleUploadedFile("y.bin", payload)}).json()
        assert first["name"] == second["name"]
        assert Path(tmp_path, first["name"]).read_bytes() == payload
