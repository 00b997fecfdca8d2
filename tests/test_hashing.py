"""Every content kind hashes to the same digest, once, without reading it twice."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from blake3 import blake3
from django.core.files.base import ContentFile, File
from django.core.files.uploadedfile import (
    InMemoryUploadedFile,
    SimpleUploadedFile,
    TemporaryUploadedFile,
)

from dedupstore.hashing import ContentHasher, derive_hash_key
from tests.contract import NonSeekable

PAYLOAD = os.urandom(3 * 1024 * 1024 + 123)
KEY = derive_hash_key("secret")
EXPECTED = blake3(PAYLOAD, key=KEY).hexdigest()


@pytest.fixture
def hasher() -> ContentHasher:
    return ContentHasher(key=KEY, chunk_size=64 * 1024, spool_max_size=1024 * 1024)


def test_content_file(hasher: ContentHasher) -> None:
    content = ContentFile(PAYLOAD)
    content.read(10)
    hashed = hasher.hash(content)
    assert (hashed.digest, hashed.size) == (EXPECTED, len(PAYLOAD))
    assert hashed.content is content and content.tell() == 0


def test_text_content_file_hashes_its_utf8_bytes(hasher: ContentHasher) -> None:
    assert hasher.hash(ContentFile("héllo")).digest == hasher.hash_bytes("héllo".encode())


def test_temporary_uploaded_file_is_hashed_from_its_path(hasher: ContentHasher) -> None:
    upload = TemporaryUploadedFile("x.bin", None, 0, None)
    upload.write(PAYLOAD)
    upload.write(b"tail still in the write buffer")
    hashed = hasher.hash(upload)
    expected = blake3(PAYLOAD + b"tail still in the write buffer", key=KEY).hexdigest()
    assert hashed.digest == expected and hashed.content is upload and not hashed.spooled
    upload.close()


def test_file_over_a_real_file(hasher: ContentHasher, tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(PAYLOAD)
    with path.open("rb") as handle:
        assert hasher.hash(File(handle)).digest == EXPECTED


def test_uploaded_files_in_memory(hasher: ContentHasher) -> None:
    assert hasher.hash(SimpleUploadedFile("a", PAYLOAD)).digest == EXPECTED
    upload = InMemoryUploadedFile(io.BytesIO(PAYLOAD), "f", "a", None, len(PAYLOAD), None)
    assert hasher.hash(upload).digest == EXPECTED


class NoFileno(io.BufferedIOBase):
    """A seekable stream with no file descriptor and no readinto (generic path)."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def read(self, size: int | None = -1) -> bytes:
        return self._inner.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._inner.seek(offset, whence)

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._inner.tell()


def test_generic_seekable_stream(hasher: ContentHasher) -> None:
    assert hasher.hash(File(NoFileno(PAYLOAD))).digest == EXPECTED


def test_non_seekable_stream_is_spooled_to_a_temporary_upload(hasher: ContentHasher) -> None:
    hashed = hasher.hash(File(NonSeekable(PAYLOAD), name="pipe.bin"))
    assert hashed.digest == EXPECTED and hashed.spooled
    assert isinstance(hashed.content, TemporaryUploadedFile)
    assert hashed.content.read() == PAYLOAD
    hashed.content.close()


def test_small_non_seekable_stream_stays_in_memory(hasher: ContentHasher) -> None:
    hashed = hasher.hash(File(NonSeekable(b"tiny"), name="pipe.bin"))
    assert hashed.spooled and not isinstance(hashed.content, TemporaryUploadedFile)
    assert hashed.content.read() == b"tiny"


def test_plain_blake3_without_a_key() -> None:
    assert ContentHasher(key=None).hash(ContentFile(PAYLOAD)).digest == blake3(PAYLOAD).hexdigest()


def test_bad_hasher_arguments() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        ContentHasher(key=b"short")
    with pytest.raises(ValueError, match="chunk_size"):
        ContentHasher(key=None, chunk_size=0)


def test_files_larger_than_the_mmap_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dedupstore.hashing

    monkeypatch.setattr(dedupstore.hashing, "MMAP_WINDOW", 64 * 1024)  # many windows
    hasher = ContentHasher(key=KEY)
    path = tmp_path / "big.bin"
    path.write_bytes(PAYLOAD)
    with path.open("rb") as handle:
        assert hasher.hash(File(handle)).digest == EXPECTED
    upload = TemporaryUploadedFile("x.bin", None, 0, None)
    upload.write(PAYLOAD)
    assert hasher.hash(upload).digest == EXPECTED
    upload.close()
