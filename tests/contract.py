"""The storage contract every ``DedupStorage`` configuration must keep, whatever its inner.

A test module subclasses ``DedupContract`` and provides a ``storage`` fixture returning a
fresh ``DedupStorage`` (real index, real inner storage). IPFS and Appwrite reuse it.
"""

from __future__ import annotations

import io
import os
import threading

import pytest
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile, File
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile

from dedupstore import DedupStorage
from tests.helpers import InnerCalls


class NonSeekable(io.RawIOBase):
    """A stream that can only be read forward, like a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), len(self._data) - self._pos)
        buffer[:count] = self._data[self._pos : self._pos + count]
        self._pos += count
        return count


def read_all(storage: DedupStorage, name: str) -> bytes:
    with storage.open(name, "rb") as handle:
        return handle.read()


class DedupContract:
    """Behaviour shared by every inner storage."""

    #: A well-formed name that the inner storage does not hold.
    missing_name = "nothing/here-at-all.txt"

    def test_save_then_read_back(self, storage: DedupStorage) -> None:
        name = storage.save("docs/hello.txt", ContentFile(b"hello world"))
        assert read_all(storage, name) == b"hello world"
        assert storage.exists(name)
        assert storage.size(name) == 11
        assert isinstance(storage.url(name), str)

    def test_identical_content_returns_the_stored_name(self, storage: DedupStorage) -> None:
        # Other directories, one last directory: an Appwrite bucket bounds reuse.
        first = storage.save("a/same/one.bin", ContentFile(b"same bytes"))
        second = storage.save("b/same/two.bin", ContentFile(b"same bytes"))
        assert second == first
        assert storage.references(first) == 2

    def test_a_hit_makes_zero_inner_calls(self, storage: DedupStorage) -> None:
        storage.verify_hits = False  # the default confirms a hit with one exists()
        first = storage.save("x/hits/hit.bin", ContentFile(b"hit me"))
        calls = InnerCalls(storage.inner)
        try:
            assert storage.save("y/hits/hit.bin", ContentFile(b"hit me")) == first
            assert calls.total == 0, calls.counts
        finally:
            calls.undo()

    def test_different_content_gets_its_own_object(self, storage: DedupStorage) -> None:
        first = storage.save("d/file.txt", ContentFile(b"one"))
        second = storage.save("d/file.txt", ContentFile(b"two"))
        assert first != second
        assert read_all(storage, first) == b"one"
        assert read_all(storage, second) == b"two"

    def test_shared_object_survives_until_the_last_delete(self, storage: DedupStorage) -> None:
        name = storage.save("s/shared.txt", ContentFile(b"shared"))
        assert storage.save("s/other.txt", ContentFile(b"shared")) == name
        storage.delete(name)
        assert storage.exists(name)
        assert read_all(storage, name) == b"shared"
        storage.delete(name)
        assert not storage.exists(name)
        storage.delete(name)  # a second delete is harmless
        assert not storage.exists(name)

    def test_saving_again_after_deletion_stores_again(self, storage: DedupStorage) -> None:
        name = storage.save("r/again.txt", ContentFile(b"again"))
        storage.delete(name)
        again = storage.save("r/again.txt", ContentFile(b"again"))
        assert read_all(storage, again) == b"again"
        assert storage.references(again) == 1

    def test_temporary_uploaded_file(self, storage: DedupStorage) -> None:
        upload = TemporaryUploadedFile("big.bin", "application/octet-stream", 0, None)
        payload = os.urandom(3 * 1024 * 1024 + 17)
        upload.write(payload)
        upload.flush()
        upload.seek(0)
        try:
            name = storage.save("u/big.bin", upload)
        finally:
            upload.close()  # as Django's upload handler does after the request
        assert read_all(storage, name) == payload
        assert storage.save("u/again.bin", ContentFile(payload)) == name

    def test_non_seekable_content(self, storage: DedupStorage) -> None:
        payload = os.urandom(2 * 1024 * 1024 + 5)
        name = storage.save("p/pipe.bin", File(NonSeekable(payload), name="pipe.bin"))
        assert read_all(storage, name) == payload
        assert storage.save("p/pipe2.bin", ContentFile(payload)) == name

    def test_in_memory_upload(self, storage: DedupStorage) -> None:
        name = storage.save("m/up.txt", SimpleUploadedFile("up.txt", b"uploaded"))
        assert read_all(storage, name) == b"uploaded"

    def test_threads_saving_the_same_new_content_write_once(self, storage: DedupStorage) -> None:
        payload = os.urandom(256 * 1024)
        calls = InnerCalls(storage.inner)
        names: list[str] = []
        barrier = threading.Barrier(8)

        def save() -> None:
            barrier.wait()
            names.append(storage.save("t/same.bin", ContentFile(payload)))

        threads = [threading.Thread(target=save) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        calls.undo()
        assert len(set(names)) == 1 and len(names) == 8
        # One write: through save(), or straight through the _save() hook (which a
        # save() also runs, so the larger count is the number of writes).
        assert max(calls.counts["save"], calls.counts["_save"]) == 1
        assert storage.references(names[0]) == 8
        assert read_all(storage, names[0]) == payload

    def test_path_traversal_is_rejected(self, storage: DedupStorage) -> None:
        for bad in ("../escape.txt", "a/../../escape.txt", "/etc/passwd"):
            with pytest.raises(SuspiciousFileOperation):
                storage.save(bad, ContentFile(b"x"))
            with pytest.raises(SuspiciousFileOperation):
                storage.open(bad)
            with pytest.raises(SuspiciousFileOperation):
                storage.delete(bad)

    def test_empty_content_is_stored_once_and_reads_back_empty(self, storage: DedupStorage) -> None:
        first = storage.save("e/empties/empty.txt", ContentFile(b""))
        assert read_all(storage, first) == b""
        assert storage.size(first) == 0
        if storage.reuse == "content":
            assert storage.save("f/empties/empty.txt", ContentFile(b"")) == first
            assert storage.references(first) == 2

    def test_str_content_is_rejected(self, storage: DedupStorage) -> None:
        with pytest.raises(TypeError, match="ContentFile"):
            storage.save("e/text.txt", "not a file")  # type: ignore[arg-type]

    def test_missing_name_raises_file_not_found(self, storage: DedupStorage) -> None:
        with pytest.raises(FileNotFoundError):
            storage.open(self.missing_name).read()
        assert not storage.exists(self.missing_name)
