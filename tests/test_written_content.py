"""What the inner storage writes is what was hashed, or nothing is recorded and it is removed."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile, File
from django.core.files.storage import FileSystemStorage, InMemoryStorage
from django.core.files.uploadedfile import TemporaryUploadedFile

from dedupstore import ContentChangedError, DedupStorage

HASHED = b"the bytes that were hashed" * 100
WRITTEN = b"other bytes, written later" * 100


class ChangingStream(io.RawIOBase):
    """A seekable stream that returns other bytes once it was read to the end once."""

    def __init__(self) -> None:
        self.passes = 0
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_END:
            offset += len(HASHED)
        elif whence == io.SEEK_CUR:
            offset += self.position
        self.position = offset
        return offset

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: Any) -> int:
        data = (HASHED if self.passes == 0 else WRITTEN)[self.position :][: len(buffer)]
        if not data:
            self.passes += 1
            return 0
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


class RewritingStorage(FileSystemStorage):
    """A FileSystemStorage whose write starts after someone rewrote the source file."""

    source: Path | None = None

    def _save(self, name: str, content: Any) -> str:
        if RewritingStorage.source is not None:
            with open(RewritingStorage.source, "r+b") as handle:  # same size, new bytes
                handle.write(WRITTEN)
        return super()._save(name, content)


def _storage(index_url: str, tmp_path: Path, backend: str | None = None) -> DedupStorage:
    inner = {
        "BACKEND": backend or "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "media")},
    }
    return DedupStorage(inner=inner, index=index_url, namespace=f"w-{uuid.uuid4().hex}")


def _stored_files(tmp_path: Path) -> list[Path]:
    media = tmp_path / "media"
    return sorted(path for path in media.rglob("*") if path.is_file()) if media.exists() else []


def test_a_stream_that_reads_other_bytes_the_second_time_is_not_recorded(
    index_url: str, tmp_path: Path
) -> None:
    storage = _storage(index_url, tmp_path)
    with pytest.raises(ContentChangedError, match="differ from the bytes hashed") as caught:
        storage.save("changing.bin", File(io.BufferedReader(ChangingStream()), "changing.bin"))
    assert caught.value.removed
    assert _stored_files(tmp_path) == []
    assert storage.references("changing.bin") == 0
    # The bytes that were hashed were never stored: an upload of them is a miss.
    name = storage.save("hashed.bin", ContentFile(HASHED))
    assert Path(storage.path(name)).read_bytes() == HASHED


@pytest.fixture
def rewriting(tmp_path: Path) -> Any:
    source = tmp_path / "source.bin"
    source.write_bytes(HASHED)
    RewritingStorage.source = source
    yield source
    RewritingStorage.source = None


def test_a_file_rewritten_during_the_save_is_not_recorded(
    index_url: str, tmp_path: Path, rewriting: Path
) -> None:
    storage = _storage(index_url, tmp_path, f"{__name__}.RewritingStorage")
    with open(rewriting, "rb") as handle, pytest.raises(ContentChangedError):
        storage.save("rewritten.bin", File(handle))
    assert _stored_files(tmp_path) == []
    assert storage.references("rewritten.bin") == 0


def test_a_temporary_file_changed_before_it_is_moved_is_not_recorded(
    index_url: str, tmp_path: Path
) -> None:
    upload = TemporaryUploadedFile("up.bin", "application/octet-stream", len(HASHED), None)
    upload.write(HASHED)
    upload.flush()
    RewritingStorage.source = Path(upload.temporary_file_path())
    try:
        storage = _storage(index_url, tmp_path, f"{__name__}.RewritingStorage")
        with pytest.raises(ContentChangedError, match="changed while it was saved"):
            storage.save("moved.bin", upload)
    finally:
        RewritingStorage.source = None
        upload.close()
    assert _stored_files(tmp_path) == []
    assert storage.references("moved.bin") == 0


def test_content_that_does_not_change_is_written_and_recorded(
    index_url: str, tmp_path: Path
) -> None:
    storage = _storage(index_url, tmp_path)
    upload = TemporaryUploadedFile("up.bin", "application/octet-stream", len(HASHED), None)
    upload.write(HASHED)
    upload.flush()
    moved = storage.save("moved.bin", upload)
    upload.close()
    streamed = storage.save("streamed.bin", File(io.BytesIO(WRITTEN), "streamed.bin"))
    assert Path(storage.path(moved)).read_bytes() == HASHED
    assert Path(storage.path(streamed)).read_bytes() == WRITTEN
    assert storage.references(moved) == storage.references(streamed) == 1


class TruthTestingStorage(InMemoryStorage):
    """An inner storage that tests ``if content:``, as some third-party storages do."""

    def _save(self, name: str, content: Any) -> str:
        if not content:
            raise ValueError("no content")
        return super()._save(name, content)


def test_an_inner_storage_testing_the_contents_truth_gets_the_content(index_url: str) -> None:
    storage = DedupStorage(
        inner={"BACKEND": f"{__name__}.TruthTestingStorage"},
        index=index_url,
        namespace=f"truth-{uuid.uuid4().hex}",
    )
    name = storage.save("nameless.bin", ContentFile(b"no name of its own"))
    assert storage.open(name).read() == b"no name of its own"
